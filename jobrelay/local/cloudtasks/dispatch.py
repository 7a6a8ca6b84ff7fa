"""HTTP delivery of task attempts: the request Cloud Tasks sends and how its outcome is judged.

One attempt is one `Delivery` (built by the engine under its lock) sent by `HttpDispatcher.deliver`
on a pooled keep-alive connection. The outcome: any 2xx is success; any other status, a refused or
dropped connection, or no full answer within the dispatch deadline is a failure. The handler is not
stopped when the deadline passes; we only stop waiting for it.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from jobrelay.local.oidc import LocalSigner

USER_AGENT = "Google-Cloud-Tasks"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Headers the service computes or reserves; a creator's values for them never reach the target.
_RESERVED = ("host", "content-length", "user-agent", "x-cloudtasks-", "x-google-", "x-appengine-")
_TOKEN_REUSE_MARGIN = 300
# google.rpc.Code numbers, and the code an HTTP answer stands for (Google's usual mapping).
RPC_CODES = {"OK": 0, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
             "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
             "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}  # fmt: skip
_HTTP_TO_RPC = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """A task's http_request, validated, with the URL split once for every attempt."""

    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    oidc_email: str | None = None
    oidc_audience: str | None = None

    @property
    def content_type(self) -> str | None:
        for key, value in self.headers:
            if key.lower() == "content-type":
                return value
        return None


def is_reserved_header(key: str) -> bool:
    return key.lower().startswith(_RESERVED)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt, ready to send: the target plus the X-CloudTasks-* headers of this attempt."""

    queue: str
    task_id: str
    attempt: int
    target: HttpTarget
    service_headers: tuple[tuple[str, str], ...]
    deadline: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt got: an HTTP status, or a gRPC code name for no answer (timeout, refused)."""

    status: int | None
    error: str | None
    detail: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None

    @property
    def rpc_code(self) -> str:
        """The gRPC code this outcome stands for: the attempt's response_status and next retry reason."""
        if self.error is not None:
            return self.error
        if self.ok:
            return "OK"
        status = self.status or 0
        fallback = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION" if status >= 400 else "UNKNOWN"
        return _HTTP_TO_RPC.get(status, fallback)

    @property
    def rpc_number(self) -> int:
        return RPC_CODES.get(self.rpc_code, RPC_CODES["UNKNOWN"])


def service_headers(
    *,
    queue_id: str,
    task_id: str,
    retry_count: int,
    execution_count: int,
    eta: float,
    previous_status: int | None,
    retry_reason: str | None,
) -> tuple[tuple[str, str], ...]:
    """The X-CloudTasks-* headers of one attempt; the previous-response pair only on retries."""
    headers = [
        ("X-CloudTasks-QueueName", queue_id),
        ("X-CloudTasks-TaskName", task_id),
        ("X-CloudTasks-TaskRetryCount", str(retry_count)),
        ("X-CloudTasks-TaskExecutionCount", str(execution_count)),
        ("X-CloudTasks-TaskETA", f"{eta:.6f}"),
    ]
    if retry_count > 0:
        if previous_status is not None:
            headers.append(("X-CloudTasks-TaskPreviousResponse", str(previous_status)))
        if retry_reason is not None:
            headers.append(("X-CloudTasks-TaskRetryReason", retry_reason))
    return tuple(headers)


# Servers close idle keep-alive connections (gunicorn after 2 s): older ones are not reused.
MAX_IDLE_SECONDS = 1.0


class _Connections:
    """Idle keep-alive connections per (scheme, host, port), newest last."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context()

    def take(self, key: tuple[str, str, int], timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = None
        stale: list[http.client.HTTPConnection] = []
        with self._lock:
            idle = self._idle.get(key, [])  # oldest first: give_back appends
            if idle and idle[-1][0] >= time.monotonic() - MAX_IDLE_SECONDS:
                conn = idle.pop()[1]
            elif idle:  # the newest is too old, so all are
                stale = [c for _, c in idle]
                idle.clear()
        for old in stale:
            old.close()
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls), False
        return http.client.HTTPConnection(host, port, timeout=timeout), False

    def give_back(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append((time.monotonic(), conn))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, conn in conns:
                conn.close()


class HttpDispatcher:
    """Sends attempts; thread-safe, one instance shared by every dispatch thread."""

    def __init__(self, signer: LocalSigner) -> None:
        self._signer = signer
        self._connections = _Connections()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._tokens_lock = threading.Lock()

    def deliver(self, delivery: Delivery) -> Outcome:
        target = delivery.target
        parts = urlsplit(target.url)
        secure = parts.scheme == "https"
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if secure else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = self._headers(delivery)
        started = time.monotonic()
        for first_try in (True, False):
            conn, reused = self._connections.take(key, delivery.deadline)
            try:
                status = _exchange(conn, target, path, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused and first_try:
                    continue  # the target closed an idle keep-alive connection: resend on a fresh one
                return Outcome(None, "UNAVAILABLE", f"connection dropped: {exc}", time.monotonic() - started)
            except TimeoutError:
                conn.close()
                return _deadline_missed(delivery.deadline, started)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and first_try:
                    continue  # a pooled connection went bad while idle: resend on a fresh one
                return Outcome(None, "UNAVAILABLE", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
            elapsed = time.monotonic() - started
            if status.will_close:
                conn.close()
            else:
                self._connections.give_back(key, conn)
            if elapsed > delivery.deadline:
                return _deadline_missed(delivery.deadline, started)
            return Outcome(status.status, None, f"HTTP {status.status}", elapsed)
        raise AssertionError("unreachable: the second try always returns")

    def close(self) -> None:
        self._connections.close()

    def _headers(self, delivery: Delivery) -> list[tuple[str, str]]:
        target = delivery.target
        headers = [(k, v) for k, v in target.headers if not is_reserved_header(k)]
        headers.append(("User-Agent", USER_AGENT))
        headers.extend(delivery.service_headers)
        if target.oidc_email is not None:
            audience = target.oidc_audience or target.url
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
            headers.append(("Authorization", f"Bearer {self._token(audience, target.oidc_email)}"))
        if target.body or target.method in _BODY_METHODS:
            headers.append(("Content-Length", str(len(target.body))))
        return headers

    def _token(self, audience: str, email: str) -> str:
        """An ID token for (audience, email), reused until five minutes before it expires."""
        now = time.time()
        with self._tokens_lock:
            cached = self._tokens.get((audience, email))
            if cached is not None and cached[1] - _TOKEN_REUSE_MARGIN > now:
                return cached[0]
        token = self._signer.mint(audience, email, lifetime_seconds=3600)
        with self._tokens_lock:
            self._tokens[(audience, email)] = (token, now + 3600)
        return token


@dataclass(frozen=True, slots=True)
class _Status:
    status: int
    will_close: bool


def _exchange(
    conn: http.client.HTTPConnection, target: HttpTarget, path: str, headers: list[tuple[str, str]]
) -> _Status:
    conn.putrequest(target.method, path, skip_accept_encoding=True)
    for key, value in headers:
        conn.putheader(key, value)
    conn.endheaders(target.body or None)
    response = conn.getresponse()
    response.read()
    return _Status(response.status, bool(response.will_close))


def _deadline_missed(deadline: float, started: float) -> Outcome:
    return Outcome(None, "DEADLINE_EXCEEDED", f"no answer within {deadline:g}s", time.monotonic() - started)
