"""The Firebase Auth emulator of the local stack, and signing users in through it.

The emulator is the real one, from the Firebase CLI (firebase-tools 14.x: 15.x refuses Java 17),
installed by `tools/firebase/install.sh` into the repo's own `tools/firebase/node_modules`. It needs
no download of its own. One emulator serves every local project: admin calls name the project in
their path (firebase-admin does that), sign-ins name it in `targetProjectId`. A browser or Node app
signing in with the Firebase JS SDK (an API key, no project) lands in the emulator's default project,
the one it was started with: the stack starts it with dev's (see `default_project`).

The emulator's ID tokens are unsigned (alg "none"); firebase-admin accepts them only while
FIREBASE_AUTH_EMULATOR_HOST is set, and a deployed process refuses to start with it set
(`jobrelay.auth.assert_deployable`), so these tokens open nothing but the local stack.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from jobrelay.local import procs

log = logging.getLogger("jobrelay.local.authemu")

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "firebase"
INSTALL_HINT = "run `make firebase-tools` (tools/firebase/install.sh: `npm ci` of firebase-tools 14.x)"
# Every local user's password: the web example signs in with it. Only the emulator knows it.
LOCAL_PASSWORD = "jobrelay-local"  # noqa: S105 - the local emulator's, by design known to all
# The emulator accepts this as an admin's OAuth token (firebase-admin sends it in emulator mode).
OWNER = {"Authorization": "Bearer owner"}
_install_lock = threading.Lock()


def firebase_cli() -> Path:
    """The Firebase CLI: JOBRELAY_FIREBASE_CLI, else the project-local install."""
    override = os.environ.get("JOBRELAY_FIREBASE_CLI")
    return Path(override) if override else TOOLS / "node_modules" / ".bin" / "firebase"


def ensure_installed() -> Path:
    """The CLI's path; installs it first (tools/firebase/install.sh, npm ci) when it is missing."""
    cli = firebase_cli()
    with _install_lock:
        if cli.exists() or os.environ.get("JOBRELAY_FIREBASE_CLI"):
            if not cli.exists():
                raise RuntimeError(f"JOBRELAY_FIREBASE_CLI={cli} does not exist; unset it or {INSTALL_HINT}")
            return cli
        log.warning("the Firebase CLI is not installed yet: installing it once (%s)", TOOLS / "install.sh")
        done = subprocess.run(
            ["bash", str(TOOLS / "install.sh")], capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0 or not cli.exists():
            raise RuntimeError(
                f"cannot install the Firebase CLI for the Auth emulator ({done.returncode}); {INSTALL_HINT}\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        return cli


@dataclass(frozen=True)
class Ports:
    """The emulator's own port and the two the Firebase CLI reserves beside it (hub, logging)."""

    auth: int
    hub: int
    logging: int


def config(ports: Ports) -> dict[str, Any]:
    """firebase.json for an Auth-only emulator suite on 127.0.0.1, on the ports given."""
    return {
        "emulators": {
            "auth": {"host": "127.0.0.1", "port": ports.auth},
            # The hub and the logging emulator always start; left alone they take 4400 and 4500,
            # which a second stack on this machine (another worktree, a test) would collide on.
            "hub": {"host": "127.0.0.1", "port": ports.hub},
            "logging": {"host": "127.0.0.1", "port": ports.logging},
            "ui": {"enabled": False},
            # One emulator for the three local projects, without a warning per request.
            "singleProjectMode": False,
        }
    }


def launch(ports: Ports, *, project: str, state_dir: Path, log_path: Path | None = None) -> procs.Proc:
    """Start the emulator (not waiting for it: it takes seconds; see `wait_ready`)."""
    cli = ensure_installed()
    home = state_dir / "firebase"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    path = home / "firebase.json"
    path.write_text(json.dumps(config(ports), indent=2))
    argv = [str(cli), "emulators:start", "--only", "auth", "--project", project, "--config", str(path)]
    env = {
        # The hub writes a locator file per project id into the temp dir: keep each stack's apart.
        "TMPDIR": str(home / "tmp"),
        "NO_UPDATE_NOTIFIER": "1",
        "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "true",
        "CI": "true",  # never prompt
    }
    # cwd: the CLI writes firebase-debug.log where it runs.
    return procs.start("auth", argv, env=env, log_path=log_path, cwd=home)


def wait_ready(proc: procs.Proc, port: int, timeout: float = 120) -> None:
    """Block until the emulator answers; stop it before failing, so nothing is left behind."""

    def ready() -> bool:
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=1)
        return r.ok and bool(r.json().get("authEmulator", {}).get("ready"))

    try:
        procs.wait_until(ready, timeout=timeout, what="Firebase Auth emulator", proc=proc)
    except BaseException:
        proc.stop()
        raise


# -- users and sign-in -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """What a sign-in through the emulator gives back."""

    id_token: str
    refresh_token: str
    uid: str
    email: str
    expires_at: float  # time.time() at which the ID token expires


class AuthEmulatorError(RuntimeError):
    """The Auth emulator refused or could not be reached."""


def _base(host: str) -> str:
    return f"http://{host}/identitytoolkit.googleapis.com/v1"


def _call(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> dict[str, Any]:
    try:
        r = requests.request(method, url, json=body, headers=OWNER, timeout=timeout)
    except requests.RequestException as exc:
        raise AuthEmulatorError(
            f"the Auth emulator at {url.split('/')[2]} cannot be reached ({exc.__class__.__name__}); "
            "is the local stack running (`jobrelay dev up`)?"
        ) from exc
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        raise AuthEmulatorError(f"the Auth emulator refused {url.rsplit('/', 1)[-1]}: {r.status_code} {message}")
    data = r.json()
    return data if isinstance(data, dict) else {}


def default_email(uid: str) -> str:
    return f"{uid}@example.com"


def claims_for(admin: bool = False, roles: Iterable[str] = ()) -> dict[str, Any]:
    """jobrelay's custom claims: `admin: true` for operators, `roles: [...]`."""
    claims: dict[str, Any] = {}
    if admin:
        claims["admin"] = True
    roles = sorted(set(roles))
    if roles:
        claims["roles"] = roles
    return claims


def ensure_user(
    host: str, project: str, uid: str, *, email: str | None = None, claims: dict[str, Any] | None = None
) -> str:
    """Create `uid` in `project` if it is missing (verified email, the local password); set its claims.

    The same calls firebase-admin makes (projects/{project}/accounts...), as the emulator's owner.
    `claims=None` leaves the user's claims as they are. Returns the user's email.
    """
    base = f"{_base(host)}/projects/{project}"
    found = _call("POST", f"{base}/accounts:lookup", {"localId": [uid]}).get("users") or []
    if found:
        user_email = str(found[0].get("email") or "")
        update: dict[str, Any] = {"localId": uid}
        if not user_email:
            user_email = email or default_email(uid)
            update.update(email=user_email, emailVerified=True, password=LOCAL_PASSWORD)
        if claims is not None:
            update["customAttributes"] = json.dumps(claims)
        if len(update) > 1:
            _call("POST", f"{base}/accounts:update", update)
        return user_email
    user_email = email or default_email(uid)
    _call(
        "POST",
        f"{base}/accounts",
        {"localId": uid, "email": user_email, "emailVerified": True, "password": LOCAL_PASSWORD},
    )
    if claims:
        _call("POST", f"{base}/accounts:update", {"localId": uid, "customAttributes": json.dumps(claims)})
    return user_email


def sign_in(
    host: str,
    project: str,
    uid: str,
    *,
    admin: bool = False,
    roles: Iterable[str] = (),
    email: str | None = None,
    keep_claims: bool = False,
) -> SignedIn:
    """Sign `uid` in to `project` through the emulator, with exactly these claims (unless `keep_claims`).

    The user is created if missing; then its custom claims are set (as `jobrelay access grant` or a
    firebase-admin script would) and it signs in with its email and password, as an app does. The
    ID token therefore carries what the emulator holds, claims included.
    """
    claims = None if keep_claims else claims_for(admin, roles)
    user_email = ensure_user(host, project, uid, email=email, claims=claims)
    return sign_in_with_password(host, project, user_email)


def sign_in_with_password(host: str, project: str, email: str, password: str = LOCAL_PASSWORD) -> SignedIn:
    body = {"targetProjectId": project, "email": email, "password": password, "returnSecureToken": True}
    data = _call("POST", f"{_base(host)}/accounts:signInWithPassword", body)
    return SignedIn(
        id_token=str(data["idToken"]),
        refresh_token=str(data.get("refreshToken", "")),
        uid=str(data["localId"]),
        email=str(data.get("email", email)),
        expires_at=time.time() + float(data.get("expiresIn", 3600)),
    )
