"""jobrelay.wsgi.App: the plain WSGI adapter the worker and the dead-letter service are served by."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from jobrelay.errors import BadRequest, PayloadTooLarge
from jobrelay.wsgi import MAX_BODY_BYTES, App, Request, Response, json_response, not_found


def call(
    app: App, method: str = "POST", path: str = "/v1/run", body: bytes = b"", **extra: Any
) -> tuple[str, dict[str, str], Any]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": extra.pop("query", ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **extra,
    }
    data = b"".join(app(environ, start_response))
    assert int(seen["headers"]["Content-Length"]) == len(data)
    return seen["status"], seen["headers"], json.loads(data)


def echo(request: Request) -> Response:
    return json_response(
        200,
        {
            "method": request.method,
            "path": request.path,
            "auth": request.header("Authorization"),
            "task": request.header("x-cloudtasks-taskname"),
            "type": request.header("Content-Type"),
            "query": dict(request.query),
            "body": request.body.decode(),
        },
        {"Retry-After": "3"},
    )


def test_the_handler_sees_method_path_headers_query_and_body() -> None:
    status, headers, body = call(
        App(echo),
        method="post",
        path="/v1/run",
        body=b'{"a": 1}',
        query="x=1&y=two",
        HTTP_AUTHORIZATION="Bearer t",
        HTTP_X_CLOUDTASKS_TASKNAME="job-1-0",
        CONTENT_TYPE="application/json",
    )
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert headers["Retry-After"] == "3"
    assert body == {
        "method": "POST",
        "path": "/v1/run",
        "auth": "Bearer t",
        "task": "job-1-0",
        "type": "application/json",
        "query": {"x": "1", "y": "two"},
        "body": '{"a": 1}',
    }


def test_an_oversize_body_is_refused_unread_with_413() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return json_response(200, {})

    environ_body = b"x"
    status, _, body = call(App(handler), body=environ_body, CONTENT_LENGTH=str(MAX_BODY_BYTES + 1))
    assert status == "413 Request Entity Too Large"
    assert body["error"]["code"] == "payload_too_large"
    assert str(MAX_BODY_BYTES) in body["error"]["message"]
    assert seen == []


def test_a_handler_that_raises_answers_500_without_details(caplog: Any) -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("secret detail")

    status, _, body = call(App(broken))
    assert status == "500 Internal Server Error"
    assert body == {"error": {"code": "internal", "message": "internal error"}}
    assert "secret detail" in caplog.text


def test_unknown_routes_are_named_in_the_404() -> None:
    status, _, body = call(App(not_found), method="GET", path="/nope")
    assert status == "404 Not Found"
    assert body["error"] == {"code": "not_found", "message": "no route GET /nope"}


def test_a_missing_or_garbage_content_length_reads_no_body() -> None:
    status, _, body = call(App(echo), body=b"ignored", CONTENT_LENGTH="abc")
    assert status == "200 OK"
    assert body["body"] == ""


class Endless(io.RawIOBase):
    """A body that never ends (a chunked upload that keeps coming); counts what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        n = 65536 if size is None or size < 0 else size
        self.read_bytes += n
        return b"x" * n


def test_a_chunked_body_is_read_only_up_to_the_limit_then_refused_with_413() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return json_response(200, {})

    stream = Endless()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/run", "wsgi.input": stream, "wsgi.input_terminated": True}
    got: dict[str, Any] = {}
    data = b"".join(App(handler)(environ, lambda status, headers: got.update(status=status)))
    assert got["status"] == "413 Request Entity Too Large"
    assert json.loads(data)["error"]["code"] == "payload_too_large"
    assert MAX_BODY_BYTES < stream.read_bytes <= MAX_BODY_BYTES + 65536
    assert seen == []


def test_a_chunked_body_under_the_limit_reaches_the_handler() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/run",
        "wsgi.input": io.BytesIO(b'{"a": 1}'),
        "wsgi.input_terminated": True,
    }
    got: dict[str, Any] = {}
    data = b"".join(App(echo)(environ, lambda status, headers: got.update(status=status)))
    assert got["status"] == "200 OK" and json.loads(data)["body"] == '{"a": 1}'


@pytest.mark.parametrize("depth", [33, 10_000, 1_000_000])
def test_json_nested_too_deep_is_a_400_naming_it(depth: int) -> None:
    with pytest.raises(BadRequest, match="nests objects and arrays more than 32 levels"):
        Request("POST", "/", {}, body=b"[" * depth + b"]" * depth).json()
    assert Request("POST", "/", {}, body=b"[" * 32 + b"]" * 32).json()


def test_a_body_over_the_limit_is_a_413_when_read() -> None:
    with pytest.raises(PayloadTooLarge):
        Request("POST", "/", {}, over_limit=True).json()


def test_a_settled_service_leaves_its_start_up_objects_out_of_the_collectors_walks() -> None:
    import gc

    from jobrelay import serve

    loaded = [object() for _ in range(10)]
    before = gc.get_freeze_count()
    try:
        serve.settle()
        assert gc.get_freeze_count() >= before + len(loaded)
        later: list[object] = []
        later.append(later)  # made after the start: the collector still looks after it
        assert gc.is_tracked(later)
    finally:
        gc.unfreeze()
