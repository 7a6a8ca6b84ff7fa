"""The operator console's built files and its configuration, as the API serves them at `/console/`.

The console (`console/`, docs/console.md) is a static web app: locally the API serves its build
(`console/dist/console/`, or `JOBRELAY_CONSOLE_DIR`) at `/console/`, in the cloud Firebase Hosting
does, and either way `/console/config.json` comes from here: the envs (this deployment's and the
ones it promotes to), their Firebase web apps (`infra/console.yaml`) and, locally, the emulators.

A file is served only when every segment of its path is a plain name (letters, digits, `._-`, no
leading dot, so no `..` and no hidden file), its extension has a known content type, and the resolved
path still lies inside the build directory (a symbolic link out of it is refused). Anything else
answers 404 without saying anything about the file system.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from jobrelay.errors import NotFound, SettingsError
from jobrelay.indexes import SHARDS
from jobrelay.process_settings import RuntimeSettings
from jobrelay.promotion import ORDER, next_env
from jobrelay.settings import Infra
from jobrelay.wsgi import Response

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "console" / "dist" / "console"
SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}\Z")
MAX_SEGMENTS = 8
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
NOT_BUILT = "the console is not built here: run console/install.sh (npm ci, then the build)"


class _Firebase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    api_key: str = ""
    app_id: str = ""
    auth_domain: str | None = None


class _ConsoleEnv(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    origin: str | None = None
    firebase: _Firebase = _Firebase()


def load_console_settings(infra: Infra) -> dict[str, _ConsoleEnv]:
    """infra/console.yaml (optional: every value has a default from the env's project)."""
    path = infra.directory / "console.yaml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
        raw = data.get("environments") or {}
        if not isinstance(raw, dict):
            raise SettingsError(str(path), "environments", "must be a mapping")
        out = {}
        for name, body in raw.items():
            if name not in infra.environments:
                raise SettingsError(str(path), f"environments.{name}", "not an env of environments.yaml")
            out[name] = _ConsoleEnv.model_validate(body or {})
        return out
    except yaml.YAMLError as exc:
        raise SettingsError(str(path), "", f"not valid YAML: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SettingsError(str(path), ".".join(str(p) for p in err["loc"]), err["msg"]) from exc


def asset_path(root: Path, asset: str) -> Path | None:
    """The file `asset` names under `root`, or None when the name is not one the console serves."""
    parts = asset.split("/") if asset else ["index.html"]
    if parts[-1] == "":
        parts[-1] = "index.html"  # a directory URL: its index
    if len(parts) > MAX_SEGMENTS or not all(SEGMENT.match(p) for p in parts):
        return None
    if Path(parts[-1]).suffix not in CONTENT_TYPES:
        return None
    try:
        base = root.resolve(strict=True)
        path = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


class Console:
    """Serves the built console and its configuration for the envs of one deployment."""

    def __init__(self, settings: RuntimeSettings, infra: Infra, served: tuple[str, ...]) -> None:
        self.settings = settings
        self.infra = infra
        self.served = served
        self.root = Path(os.environ.get("JOBRELAY_CONSOLE_DIR") or DEFAULT_DIR)

    @cached_property
    def web(self) -> dict[str, _ConsoleEnv]:
        return load_console_settings(self.infra)

    def emulator(self) -> dict[str, str] | None:
        """The emulators a local console signs in and reads through (None in the cloud)."""
        if self.settings.mode != "local":
            return None
        auth, firestore = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"), os.environ.get("FIRESTORE_EMULATOR_HOST")
        if not auth or not firestore:
            return None
        # The project a Firebase JS SDK sign-in lands in (API key, no project): see jobrelay.local.authemu.
        default = "dev" if "dev" in self.served else self.served[0]
        project = os.environ.get("JOBRELAY_AUTH_EMULATOR_PROJECT") or self.infra.env(default).project
        return {"auth": auth, "firestore": firestore, "auth_project": project}

    def config(self) -> dict[str, Any]:
        """What the console needs: every env in promotion order, served ones first-class."""
        local = self.emulator() is not None
        envs = []
        for name in ORDER:
            if name not in self.infra.environments:
                continue
            env = self.infra.env(name)
            web = self.web.get(name, _ConsoleEnv())
            origin = (web.origin or f"https://{env.project}.web.app").rstrip("/")
            served = name in self.served
            envs.append(
                {
                    "name": name,
                    "project": env.project,
                    "served": served,
                    # "" = this origin (the API serving the console, or Hosting's /v1 rewrite to it).
                    "api": "" if served or local else origin,
                    "console": f"{origin}/console/",
                    "firebase": {
                        "projectId": env.project,
                        "apiKey": web.firebase.api_key or ("local-emulator" if local else ""),
                        "authDomain": web.firebase.auth_domain or f"{env.project}.firebaseapp.com",
                        "appId": web.firebase.app_id,
                    },
                    "muscle_concurrency": env.muscle_concurrency,
                    "promotes_to": next_env(name),
                }
            )
        return {
            "envs": envs,
            "emulator": self.emulator(),
            "muscle": {"total_slots": self.infra.muscle.total_slots, "project": self.infra.muscle.project},
            # Everyone's jobs are listed one query per index shard (jobrelay.indexes, docs/capacity.md).
            "index_shards": SHARDS,
        }

    def config_response(self) -> Response:
        return Response(200, self.config(), {"Cache-Control": "no-store"})

    def asset(self, asset: str) -> Response:
        if not (self.root / "index.html").is_file():
            raise NotFound(NOT_BUILT)
        path = asset_path(self.root, asset)
        if path is None:
            raise NotFound("no such file in the console")
        kind = CONTENT_TYPES[path.suffix]
        headers = {
            "Content-Type": kind,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # Built files keep their names across builds: revalidate rather than cache stale code.
            "Cache-Control": "no-cache",
        }
        if kind.startswith("text/html"):
            headers["Content-Security-Policy"] = self.csp()
            headers["X-Frame-Options"] = "DENY"
        return Response(200, None, headers, raw=path.read_bytes())

    def csp(self) -> str:
        """Scripts and styles from this origin only; network to the API, the emulators or Google."""
        emulator = self.emulator()
        if emulator:
            connect = f"'self' http://{emulator['auth']} http://{emulator['firestore']}"
        else:
            connect = "'self' https://*.googleapis.com https://*.web.app https://*.firebaseapp.com"
        return (
            f"default-src 'self'; script-src 'self' https://apis.google.com; style-src 'self'; "
            f"img-src 'self' data:; connect-src {connect}; frame-src https://*.firebaseapp.com; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
