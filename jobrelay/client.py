"""A small typed client of the jobrelay HTTP API, for the CLI, apps and tests.

`JobrelayClient(api_url, env, token)` calls `/v1/envs/{env}/...` with `Authorization: Bearer <token>`,
where `token` is a string or a `TokenSource` (a callable asked before each request, so long watches
outlive a token). Every failure raises `ClientError(status, code, message, details)`: the API's own
error body when it answered, status 0 with code `unreachable` when it could not be reached.

Token sources (a user of the local stack's Auth emulator, a Google ID token in the cloud) and the
CLI's connection settings are in `jobrelay.connection`; this module knows nothing of either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from jobrelay.models import FINAL

JobJson = dict[str, Any]
TokenSource = Callable[[], str]

FINAL_STATUSES = frozenset(s.value for s in FINAL)
PIPELINE_FINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_PAGE_SIZE = 200  # the API's limit
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
        return self._poll(lambda: self.get(job_id), FINAL_STATUSES, timeout, interval, on_update, job_id)

    def _poll(
        self,
        read: Callable[[], JobJson],
        final: frozenset[str],
        timeout: float | None,
        interval: float,
        on_update: Callable[[JobJson], None] | None,
        what: str = "",
    ) -> JobJson:
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        job: JobJson = {"id": what, "status": "unknown"}
        while True:
            try:
                job = read()
            except ClientError as exc:
                failures += 1
                if not exc.transient or failures > TRANSIENT_RETRIES:
                    raise
                pause = min(interval * 2**failures, 5.0)
            else:
                failures = 0
                if on_update is not None:
                    on_update(job)
                if job.get("status") in final:
                    return job
                pause = interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(job, timeout or 0)
                pause = min(pause, left)
            time.sleep(pause)

    # -- pipelines (docs/pipelines.md) ---------------------------------------------------------

    def submit_pipeline(self, spec: Mapping[str, Any]) -> Submitted:
        """Submit a pipeline (all valid or nothing written); a repeated idempotency key returns the first."""
        resp = self.request("POST", self.url("/pipelines"), body=dict(spec))
        return Submitted(_body(resp), created=resp.status_code == 202)

    def pipeline(self, pipeline_id: str) -> JobJson:
        return self._json("GET", f"/pipelines/{_seg(pipeline_id)}")

    def iter_pipelines(
        self, *, status: str | None = None, owner: str | None = None, limit: int | None = None
    ) -> Iterator[JobJson]:
        """Pipelines newest first across pages, up to `limit` (None: all)."""
        token: str | None = None
        seen = 0
        while limit is None or seen < limit:
            size = MAX_PAGE_SIZE if limit is None else min(MAX_PAGE_SIZE, limit - seen)
            params = {"page_size": str(size)}
            for key, value in (("status", status), ("owner", owner), ("page_token", token)):
                if value:
                    params[key] = value
            body = self._json("GET", "/pipelines", params=params)
            for item in body["pipelines"]:
                seen += 1
                yield item
            token = body.get("next_page_token") or None
            if token is None:
                return

    def cancel_pipeline(self, pipeline_id: str) -> JobJson:
        return self._json("POST", f"/pipelines/{_seg(pipeline_id)}:cancel")

    def retry_pipeline(self, pipeline_id: str) -> JobJson:
        return self._json("POST", f"/pipelines/{_seg(pipeline_id)}:retry")

    def wait_pipeline(
        self,
        pipeline_id: str,
        timeout: float | None = None,
        *,
        interval: float = 0.5,
        on_update: Callable[[JobJson], None] | None = None,
    ) -> JobJson:
        """Poll until the pipeline is succeeded, failed or cancelled (WaitTimeout first: its last state)."""
        return self._poll(lambda: self.pipeline(pipeline_id), PIPELINE_FINAL, timeout, interval, on_update)

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

    # -- promotion between envs (docs/adr/0019): step 1 and 3 on the source env, 2 on the target ----

    def promotion_source(self, kind: str, ident: str, to: str) -> JobJson:
        """What promoting this job, schedule or pipeline to `to` would run: {"from", "to", "spec", "promoted_to"}."""
        return self._json("GET", f"/promotions/{_seg(kind)}/{_seg(ident)}", params={"to": to})

    def promote(self, source: Mapping[str, Any], spec: Mapping[str, Any]) -> Submitted:
        """Run a promoted spec in this env; a promotion made before answers its first job."""
        resp = self.request("POST", self.url("/promotions"), body={"from": dict(source), "spec": dict(spec)})
        return Submitted(_body(resp), created=resp.status_code == 202)

    def record_promotion(self, kind: str, ident: str, to_env: str, new_id: str) -> JobJson:
        """Record on the source what a promotion made in `to_env`."""
        body = {"to": {"env": to_env, "id": new_id}}
        return self._json("POST", f"/promotions/{_seg(kind)}/{_seg(ident)}:record", body=body)

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

    # -- flow control (docs/flow-control.md) --------------------------------------------------

    def bulk_cancel(self, filter: Mapping[str, Any], *, dry_run: bool = False) -> JobJson:
        """Cancel every job `filter` selects (type, status, labels, owner, created_before); a dry run
        only counts them. Otherwise the answer's `operation` cancels them; `wait_operation` follows it."""
        return self._json("POST", "/jobs:cancel", body={"filter": dict(filter), "dry_run": dry_run})

    def operation(self, operation_id: str) -> JobJson:
        return self._json("GET", f"/operations/{_seg(operation_id)}")

    def wait_operation(
        self,
        operation_id: str,
        timeout: float | None = None,
        *,
        interval: float = 0.5,
        on_update: Callable[[JobJson], None] | None = None,
    ) -> JobJson:
        """Poll a bulk operation until it is no longer running; TimeoutError when `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            op = self.operation(operation_id)
            if on_update is not None:
                on_update(op)
            if op.get("status") != "running":
                return op
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"operation {operation_id} still running after {timeout:g}s")
            time.sleep(interval)

    def types(self) -> JobJson:
        """Every job type of the env: paused or not (since, by, reason), its circuit breaker. Operators."""
        return self._json("GET", "/types")

    def pause(self, job_type: str, reason: str) -> JobJson:
        """Pause a type: submits are accepted, deliveries wait (no attempt used) until it is resumed."""
        return self._json("POST", f"/types/{_seg(job_type)}:pause", body={"reason": reason})

    def resume(self, job_type: str) -> JobJson:
        """Resume a paused type; its waiting jobs are dispatched (the answer's `operation`)."""
        return self._json("POST", f"/types/{_seg(job_type)}:resume", body={})

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
