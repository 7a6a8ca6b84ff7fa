"""HTTP without a web framework: the request and response every jobrelay endpoint handles, and a WSGI app.

`jobrelay.api` answers `Request` -> `Response` (functions-framework adapts Flask's request for it). The
worker and the dead-letter service serve a handful of fixed routes to one caller each (Cloud Tasks,
Pub/Sub push) as a plain WSGI `App` under gunicorn: Flask and functions-framework cost them 40-60 ms of
cold start for nothing they use (docs/adr/0013-plain-wsgi-for-internal-services.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from jobrelay.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Refused,
    Unauthenticated,
    Unavailable,
    Unprocessable,
)
from jobrelay.models import depth_over

log = logging.getLogger("jobrelay.wsgi")

# Larger than any legitimate body: Cloud Tasks bodies are at most 1 MB, Pub/Sub push envelopes ~10 MB.
MAX_BODY_BYTES = 10 * 1024 * 1024
# Deeper than any body the API takes ({"jobs": [spec]} holds payloads of at most 20 levels); a 10,000-deep
# body is refused here instead of exhausting the parser's or a validator's recursion.
MAX_JSON_DEPTH = 32
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # The body was over MAX_BODY_BYTES and was not read (in full): reading it is a 413.
    over_limit: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        if self.over_limit or len(self.body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is over the limit of {MAX_BODY_BYTES} bytes")
        if not self.body.strip():
            raise BadRequest("request body is empty; send a JSON object")
        too_deep = BadRequest(f"request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep")
        try:
            value = json.loads(self.body)
        except UnicodeDecodeError as exc:
            raise BadRequest("request body is not UTF-8 text") from exc
        except json.JSONDecodeError as exc:
            raise BadRequest(
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                {"line": exc.lineno, "column": exc.colno},
            ) from exc
        except RecursionError as exc:  # nested past the parser's own limit (about 1,000 levels)
            raise too_deep from exc
        if depth_over(value, MAX_JSON_DEPTH):
            raise too_deep
        return value


def read_body(stream: Any, length: int | None) -> tuple[bytes, bool]:
    """Read a request body without holding more than MAX_BODY_BYTES; returns (body, over_limit).

    `length` is the Content-Length: over the limit, nothing is read. None (a chunked body the server
    de-chunks) reads to the end but stops as soon as the limit is passed.
    """
    if length is not None:
        if length > MAX_BODY_BYTES:
            return b"", True
        return (stream.read(length) if length > 0 else b""), False
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks), False
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True
        chunks.append(chunk)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    # Bytes sent as they are instead of the JSON of `body` (the console's static files, jobrelay.console).
    raw: bytes | None = None

    def data(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body, default=str).encode()


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, body, dict(headers or {}))


# The one place a refusal becomes an HTTP status.
HTTP_STATUS: Mapping[type[Refused], int] = {
    BadRequest: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unprocessable: 422,
    RateLimited: 429,
    Unavailable: 503,
}


def status_of(exc: Refused) -> int:
    """The HTTP status of a refusal (its nearest class in HTTP_STATUS; 500 for none)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(exc: Refused) -> Response:
    """A refusal as the answer a caller gets: status, error body, and Retry-After when there is one."""
    resp = Response(status_of(exc), exc.body())
    if isinstance(exc, RateLimited | Unavailable):
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def not_found(request: Request) -> Response:
    return Response(404, {"error": {"code": "not_found", "message": f"no route {request.method} {request.path}"}})


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class App:
    """A WSGI callable that hands each request to `handler(Request) -> Response` and writes its JSON back."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body, over_limit = read_body(environ["wsgi.input"], _content_length(environ))
        if over_limit:
            message = f"request body is over the limit of {MAX_BODY_BYTES} bytes"
            return _write(start_response, Response(413, {"error": {"code": "payload_too_large", "message": message}}))
        request = Request(
            method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
            path=environ.get("PATH_INFO") or "/",
            headers=_headers(environ),
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""))),
            body=body,
        )
        try:
            response = self.handler(request)
        except Exception:  # the caller retries on 5xx; the details go to the log, not the answer
            log.exception("unhandled error serving %s %s", request.method, request.path)
            response = Response(500, {"error": {"code": "internal", "message": "internal error"}})
        return _write(start_response, response)


def _content_length(environ: Mapping[str, Any]) -> int | None:
    """The body's length; None for a chunked body, which only a server that ends the stream may hand on."""
    raw = environ.get("CONTENT_LENGTH")
    if not raw:
        # gunicorn de-chunks `Transfer-Encoding: chunked` and says so with wsgi.input_terminated; without it,
        # reading a body of no stated length could block, so there is none (PEP 3333).
        return None if environ.get("wsgi.input_terminated") else 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _write(start_response: StartResponse, response: Response) -> list[bytes]:
    data = response.data()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *response.headers.items()]
    start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
    return [data]
