"""A small typed client of the jobrelay HTTP API, for the CLI, apps and tests.

`JobrelayClient(api_url, env, token)` calls `/v1/envs/{env}/...` with `Authorization: Bearer <token>`,
where `token` is a string or a `TokenSource` (a callable asked before each request, so long watches
outlive a token). Every failure raises `ClientError(status, code, message, details)`: the API's own
error body when it answered, status 0 with code `unreachable` when it could not be reached.

Token sources: `emulator_token_source` (the local stack's Auth emulator) and `google_id_token_source`
(Google credentials in the cloud: an ID token for the API URL as audience, optionally by
impersonating an operator service account).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import requests

JobJson = dict[str, Any]
TokenSource = Callable[[], str]

FINAL_STATUSES = frozenset({"succeeded", "dead_lettered", "cancelled", "skipped"})
MAX_PAGE_SIZE = 200  # the API's limit
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
TRANSIENT_RETRIES = 5


class ClientError(Exception):
    """The API refused a request (its `{"error": {...}}` body), or could not be reached (status 0)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}" if status == 0 else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def auth(self) -> bool:
        """True for 401/403: the caller is not signed in, or not allowed."""
        return self.status in (401, 403)

    @property
    def transient(self) -> bool:
        """True when trying again later may work: unreachable, 429 or 5xx."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class WaitTimeout(TimeoutError):
    """`JobrelayClient.wait` gave up before the job finished; `job` is the last state seen."""

    def __init__(self, job: JobJson, timeout: float) -> None:
        super().__init__(f"job {job.get('id')} still {job.get('status')} after {timeout:g}s")
        self.job = job
        self.timeout = timeout


@dataclass(frozen=True)
class Submitted:
    """A submitted job; `created` is False when the idempotency key matched an earlier job."""

    job: JobJson
    created: bool

    @property
    def id(self) -> str:
        return str(self.job["id"])


class JobrelayClient:
    """The API of one env: submit, read, cancel jobs; dead letters, stats and queues for operators."""

    def __init__(
        self,
        api_url: str,
        env: str,
        token: str | TokenSource,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.env = env
        self._token: TokenSource = (lambda: token) if isinstance(token, str) else token
        self.timeout = timeout
        self.session = session or requests.Session()

    # -- plumbing ----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.api_url}/v1/envs/{self.env}{path}"

    def request(
        self, method: str, url: str, *, body: Any = None, params: Mapping[str, str] | None = None, auth: bool = True
    ) -> requests.Response:
        """One call; raises ClientError unless the answer is 2xx."""
        headers = {"Authorization": f"Bearer {self._token()}"} if auth else {}
        try:
            resp = self.session.request(method, url, json=body, params=params, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ClientError(0, "unreachable", f"cannot reach {url}: {_reason(exc)}") from exc
        if resp.ok:
            return resp
        raise _error_of(resp)

    def _json(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None) -> JobJson:
        resp = self.request(method, self.url(path), body=body, params=params)
        return _body(resp)

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any]) -> Submitted:
        """Submit one job spec; a repeat of an idempotency key returns the first job."""
        resp = self.request("POST", self.url("/jobs"), body=dict(spec))
        return Submitted(_body(resp), created=resp.status_code == 202)

    def batch(self, specs: Sequence[Mapping[str, Any]]) -> list[JobJson]:
        """Submit several specs in one call; the jobs come back in the same order."""
        body = self._json("POST", "/jobs:batch", body={"jobs": [dict(s) for s in specs]})
        return list(body["jobs"])

    def get(self, job_id: str) -> JobJson:
        return self._json("GET", f"/jobs/{_seg(job_id)}")

    def list(
        self,
        *,
        status: str | None = None,
        job_type: str | None = None,
        owner: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> tuple[list[JobJson], str | None]:
        """One page of jobs, newest first, and the token of the next page (None at the end)."""
        params = {"page_size": str(page_size)}
        for key, value in (("status", status), ("type", job_type), ("owner", owner), ("page_token", page_token)):
            if value:
                params[key] = value
        body = self._json("GET", "/jobs", params=params)
        return list(body["jobs"]), body.get("next_page_token") or None

    def iter_jobs(
        self,
        *,
        status: str | None = None,
        job_type: str | None = None,
        owner: str | None = None,
        limit: int | None = None,
        page_size: int = 50,
    ) -> Iterator[JobJson]:
        """Jobs newest first across pages, following next_page_token, up to `limit` (None: all)."""
        token: str | None = None
        seen = 0
        while limit is None or seen < limit:
            size = min(page_size, MAX_PAGE_SIZE) if limit is None else min(page_size, MAX_PAGE_SIZE, limit - seen)
            jobs, token = self.list(status=status, job_type=job_type, owner=owner, page_size=size, page_token=token)
            for job in jobs[: None if limit is None else limit - seen]:
                seen += 1
                yield job
            if token is None:
                return

    def cancel(self, job_id: str) -> JobJson:
        """Cancel a waiting job, or ask a running one to stop (`cancel_requested` in the answer)."""
        return self._json("POST", f"/jobs/{_seg(job_id)}:cancel")

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        interval: float = 0.5,
        on_update: Callable[[JobJson], None] | None = None,
    ) -> JobJson:
        """Poll until the job is final and return it; `on_update` sees every poll.

        Raises WaitTimeout (carrying the last state) when `timeout` seconds pass first. A network
        blip, a 5xx or a 429 is retried (up to `TRANSIENT_RETRIES` in a row), so a long watch
        outlives a restarting API; any other error is raised at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        job: JobJson = {"id": job_id, "status": "unknown"}
        while True:
            try:
                job = self.get(job_id)
            except ClientError as exc:
                failures += 1
                if not exc.transient or failures > TRANSIENT_RETRIES:
                    raise
                pause = min(interval * 2**failures, 5.0)
            else:
                failures = 0
                if on_update is not None:
                    on_update(job)
                if job.get("status") in FINAL_STATUSES:
                    return job
                pause = interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(job, timeout or 0)
                pause = min(pause, left)
            time.sleep(pause)

    # -- operators ---------------------------------------------------------------------------

    def dead_letters(self, fingerprint: str | None = None) -> JobJson:
        """Open dead letters: {"groups": [...], "dead_letters": [...], "total": n}."""
        return self._json("GET", "/dead-letters", params={"fingerprint": fingerprint} if fingerprint else None)

    def dead_letter(self, job_id: str) -> JobJson:
        """One dead letter with its job under "job"."""
        return self._json("GET", f"/dead-letters/{_seg(job_id)}")

    def redrive(
        self,
        *,
        job_ids: Iterable[str] | None = None,
        fingerprint: str | None = None,
        all: bool = False,
        dry_run: bool = False,
    ) -> JobJson:
        """Redrive dead jobs chosen by exactly one selector; `dry_run` only says what would happen."""
        body: dict[str, Any] = {"dry_run": dry_run}
        if job_ids is not None:
            body["job_ids"] = list(job_ids)
        if fingerprint is not None:
            body["fingerprint"] = fingerprint
        if all:
            body["all"] = True
        return self._json("POST", "/dead-letters:redrive", body=body)

    def stats(self, window_seconds: int = 3600) -> JobJson:
        return self._json("GET", "/stats", params={"window_seconds": str(window_seconds)})

    def queues(self) -> JobJson:
        return self._json("GET", "/queues")

    def access_change(self, action: str, email: str, *, admin: bool = False, roles: Iterable[str] = ()) -> JobJson:
        """Grant or revoke (`action`) the admin claim and/or roles of the user with `email`."""
        body = {"email": email, "admin": admin, "roles": list(roles)}
        return self._json("POST", f"/access:{action}", body=body)

    def access_users(self) -> Iterator[JobJson]:
        """Every user of the env's project holding a jobrelay claim, page by page."""
        token: str | None = None
        while True:
            page = self._json("GET", "/access", params={"page_token": token} if token else None)
            yield from page.get("users", [])
            token = page.get("next_page_token")
            if not token:
                return

    def access_log(self, limit: int = 50) -> Sequence[JobJson]:
        return list(self._json("GET", "/access/log", params={"limit": str(limit)}).get("entries", []))

    # -- not env-scoped ----------------------------------------------------------------------

    def schedules(self) -> JobJson:
        """Health of every schedule; answered even when one is unhealthy (the API says 503 then)."""
        url = f"{self.api_url}/v1/schedules"
        try:
            return _body(self.request("GET", url, auth=False))
        except ClientError as exc:
            if exc.status == 503 and isinstance(exc.details, dict) and "schedules" in exc.details:
                return exc.details
            raise

    def healthz(self) -> JobJson:
        return _body(self.request("GET", f"{self.api_url}/healthz", auth=False))


# -- where the API is and who calls it ----------------------------------------------------------


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
                from jobrelay.settings import load_infra

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


# -- helpers ---------------------------------------------------------------------------------


def _body(resp: requests.Response) -> JobJson:
    try:
        data = resp.json()
    except ValueError as exc:
        raise ClientError(
            resp.status_code,
            "bad_response",
            f"{resp.request.method} {resp.url} answered {resp.status_code} with a body that is "
            f"not JSON: {resp.text[:200]!r}",
        ) from exc
    if not isinstance(data, dict):
        raise ClientError(resp.status_code, "bad_response", f"{resp.url} answered JSON that is not an object")
    return data


def _error_of(resp: requests.Response) -> ClientError:
    """The API's error body as a ClientError; anything else (a proxy's HTML page) by its status."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and "message" in err:
        return ClientError(resp.status_code, str(err.get("code", "error")), str(err["message"]), err.get("details"))
    if isinstance(data, dict):
        # A non-error body on a non-2xx answer (GET /v1/schedules answers 503 with the health report).
        return ClientError(resp.status_code, "http_error", f"{resp.url} answered {resp.status_code}", data)
    text = " ".join(resp.text.split())[:200]
    return ClientError(
        resp.status_code,
        "http_error",
        f"{resp.url} answered {resp.status_code} {resp.reason}" + (f": {text}" if text else ""),
    )


def _seg(value: str) -> str:
    """One URL path segment: a job id typed by a person cannot reach another route."""
    return quote(value, safe="")


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (is the API running at this address?)"
    return str(exc) or type(exc).__name__
