"""A job's secrets, from its own env only.

Backends (`JOBRELAY_SECRETS_BACKEND`):
- `file`: `{JOBRELAY_SECRETS_DIR}/{env}.json`, a flat JSON object (the local stack).
- `secretmanager`: every secret labelled `jobrelay=true` in the env's own project, latest version
  (needs the `cloud` extra; the process's service account reads only its env's project).
- `doppler`: the Doppler config of the env, read with the service token in `DOPPLER_TOKEN_<ENV>`.
- `none`: no secrets.
Values are cached for a minute. They never reach a job document: errors mask them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import Infra

CACHE_SECONDS = 60.0
DOPPLER_URL = "https://api.doppler.com/v3/configs/config/secrets/download?format=json"


class SecretSource:
    """Loads the secrets of one env at a time, never another's."""

    def __init__(self, settings: RuntimeSettings, infra: Infra) -> None:
        self.settings = settings
        self.infra = infra
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def for_env(self, env: str) -> Mapping[str, str]:
        with self._lock:
            hit = self._cache.get(env)
            if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1]
        values = self._load(env)
        with self._lock:
            self._cache[env] = (time.monotonic(), values)
        return values

    def _load(self, env: str) -> dict[str, str]:
        backend = self.settings.secrets_backend
        if backend == "none":
            return {}
        if backend == "file":
            return self._from_file(env)
        if backend == "secretmanager":
            return self._from_secret_manager(env)
        return self._from_doppler(env)

    def _from_file(self, env: str) -> dict[str, str]:
        if self.settings.secrets_dir is None:
            raise RuntimeError("JOBRELAY_SECRETS_BACKEND=file needs JOBRELAY_SECRETS_DIR")
        path = self.settings.secrets_dir / f"{env}.json"
        if not path.exists():
            return {}
        data: Any = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise RuntimeError(f"{path}: secrets must be a flat JSON object")
        return {str(k): str(v) for k, v in data.items()}

    def _from_secret_manager(self, env: str) -> dict[str, str]:
        try:
            from google.cloud import secretmanager
        except ImportError as exc:  # optional dependency
            raise RuntimeError("the secretmanager backend needs: pip install 'jobrelay[cloud]'") from exc
        project = self.infra.env(env).project
        client = secretmanager.SecretManagerServiceClient()
        out: dict[str, str] = {}
        for secret in client.list_secrets(request={"parent": f"projects/{project}", "filter": "labels.jobrelay=true"}):
            name = secret.name.rsplit("/", 1)[-1]
            version = client.access_secret_version(name=f"{secret.name}/versions/latest")
            out[name.upper().replace("-", "_")] = version.payload.data.decode()
        return out

    def _from_doppler(self, env: str) -> dict[str, str]:
        import requests

        token = os.environ.get(f"DOPPLER_TOKEN_{env.upper()}")
        if not token:
            raise RuntimeError(f"the doppler backend needs DOPPLER_TOKEN_{env.upper()} (a service token of env {env})")
        resp = requests.get(DOPPLER_URL, auth=(token, ""), timeout=10)
        resp.raise_for_status()
        data = resp.json()
        return {str(k): str(v) for k, v in data.items()}
