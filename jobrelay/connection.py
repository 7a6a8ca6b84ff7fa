"""Where the API is and who calls it: the CLI's connection settings and its token sources.

`Connection` holds what every CLI command is told (`--api`, `--env`, `--token`, `--local-user`,
`--impersonate`, ...), finds the local stack in `.jobrelay/local.json`, and builds a `JobrelayClient`
with a token source: a user signed in through the local stack's Auth emulator, or a Google ID token
in the cloud (optionally impersonating an operator service account). The public client
(`jobrelay.client`) knows nothing of either.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jobrelay.client import ClientError, JobrelayClient, TokenSource

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class ConfigError(Exception):
    """No API URL, or an unreadable local.json: says what to set."""


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Connection:
    """Where the API is and who calls it, as the CLI's flags and `JOBRELAY_*` variables say.

    The API URL is `api`, else the "api" of `{state_dir}/local.json` (written by the local stack).
    Credentials, first found wins: `token` (a Firebase ID token); `local_user` (signed in through the
    local stack's Auth emulator, in the env's project); Google credentials for the API URL as audience.
    """

    env: str = "dev"
    api: str | None = None
    state_dir: Path = Path(".jobrelay")
    token: str | None = None
    local_user: str | None = None
    admin: bool = False
    roles: tuple[str, ...] = ()
    impersonate: str | None = None
    timeout: float = 30.0

    def local_state(self) -> dict[str, Any] | None:
        path = self.state_dir / "local.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}; remove it or pass --api") from exc
        return data if isinstance(data, dict) else None

    def client(self) -> JobrelayClient:
        state = self.local_state() if self.api is None or self.local_user else None
        api = str(self.api or (state or {}).get("api") or "").rstrip("/")
        if not api:
            raise ConfigError(
                "no API URL: pass --api or set JOBRELAY_API (e.g. https://jobrelay-api-....run.app), "
                f"or start the local stack (`jobrelay dev up` writes {self.state_dir / 'local.json'})"
            )
        # The URL is also the audience of a Google ID token: it must match the deployment's JOBRELAY_API_URL.
        return JobrelayClient(api, self.env, self.credentials(api, state), timeout=self.timeout)

    def credentials(self, api: str, state: dict[str, Any] | None = None) -> TokenSource:
        token, uid = self.token, self.local_user
        if token:
            return lambda: token
        if uid:
            project = ((state or {}).get("envs", {}).get(self.env) or {}).get("project")
            if not project:
                # The settings loader pulls in pydantic and YAML: only this path needs it.
                from jobrelay.infra_files import load_infra

                project = load_infra(os.environ.get("JOBRELAY_INFRA_DIR") or None).env(self.env).project
            auth = (state or {}).get("auth") or {}
            host = auth.get("host") if isinstance(auth, dict) else None
            host = host or os.environ.get("FIREBASE_AUTH_EMULATOR_HOST")
            if not host:
                raise ConfigError(
                    "--local-user signs in through the local stack's Auth emulator, and none is known: start "
                    f"the stack (`jobrelay dev up` writes {self.state_dir / 'local.json'}) "
                    "or set FIREBASE_AUTH_EMULATOR_HOST"
                )
            return emulator_token_source(str(host), str(project), uid, admin=self.admin, roles=self.roles)
        if urlparse(api).hostname in LOOPBACK:

            def refuse() -> str:
                raise ClientError(
                    401,
                    "no_credentials",
                    f"{api} is a local stack: sign in with --local-user UID (JOBRELAY_LOCAL_USER; "
                    "--admin for operator commands) or --token (JOBRELAY_TOKEN)",
                )

            return refuse
        return google_id_token_source(api, impersonate=self.impersonate)


# -- token sources ---------------------------------------------------------------------------


def emulator_token_source(
    host: str, project: str, uid: str, *, admin: bool = False, roles: Sequence[str] = ()
) -> TokenSource:
    """ID tokens of `uid` in `project`, signed in through the Auth emulator at `host` with these claims.

    The user is created in the emulator if missing; a new sign-in happens when the token is about to
    expire. The emulator's tokens are accepted only by a stack running with FIREBASE_AUTH_EMULATOR_HOST.
    """
    from jobrelay.local import authemu

    state: dict[str, Any] = {"token": "", "expires": 0.0}

    def source() -> str:
        if time.time() > state["expires"] - 60:
            try:
                signed = authemu.sign_in(host, project, uid, admin=admin, roles=roles)
            except authemu.AuthEmulatorError as exc:
                raise ClientError(0, "unreachable", str(exc)) from exc
            state["token"], state["expires"] = signed.id_token, signed.expires_at
        return str(state["token"])

    return source


def google_id_token_source(audience: str, *, impersonate: str | None = None) -> TokenSource:
    """Google-signed ID tokens for `audience` (the API URL), refreshed when they expire.

    Without `impersonate`: the environment's own credentials (GOOGLE_APPLICATION_CREDENTIALS naming a
    service account key, or the metadata server on GCE/Cloud Run), as `google.oauth2.id_token` finds
    them. With `impersonate`: Application Default Credentials (e.g. `gcloud auth application-default
    login`) impersonate that service account, which needs roles/iam.serviceAccountTokenCreator on it.
    The API accepts the token when its email is one of the env's `access.operators`.
    """
    # Only the cloud path needs google-auth's credential machinery: keep it out of the CLI's start-up.
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.auth import impersonated_credentials
    from google.oauth2 import id_token

    request = google.auth.transport.requests.Request()
    holder: dict[str, Any] = {}

    def credentials() -> Any:
        if "creds" not in holder:
            if impersonate:
                source, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
                target = impersonated_credentials.Credentials(
                    source_credentials=source, target_principal=impersonate, target_scopes=[CLOUD_PLATFORM_SCOPE]
                )
                holder["creds"] = impersonated_credentials.IDTokenCredentials(
                    target, target_audience=audience, include_email=True
                )
            else:
                holder["creds"] = id_token.fetch_id_token_credentials(audience, request=request)
        return holder["creds"]

    def source() -> str:
        try:
            creds = credentials()
            if not creds.valid:
                creds.refresh(request)
        except google.auth.exceptions.GoogleAuthError as exc:
            how = (
                f"impersonating {impersonate}"
                if impersonate
                else "from GOOGLE_APPLICATION_CREDENTIALS or the metadata server"
            )
            raise ClientError(
                401,
                "no_credentials",
                f"cannot get a Google ID token for {audience} {how}: {exc}; "
                "set JOBRELAY_TOKEN, or JOBRELAY_IMPERSONATE_SA with Application Default "
                "Credentials (gcloud auth application-default login)",
            ) from exc
        return str(creds.token)

    return source
