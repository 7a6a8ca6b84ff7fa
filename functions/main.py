"""The jobrelay HTTP API as a functions-framework function (target `api`).

Run: `functions-framework --target=api --source=functions/main.py` (Cloud Run sets PORT).
Everything but the Flask adaptation lives in `jobrelay.api`.
"""

from __future__ import annotations

import gc

import flask
import functions_framework

from jobrelay import logging as jlog
from jobrelay import tracing
from jobrelay.api import Api, Request
from jobrelay.deployment import Deployment
from jobrelay.wsgi import read_body

jlog.setup("api")
_deployment = Deployment.from_env(schedules=True)
tracing.setup("api", _deployment.settings.trace_export)
_api = Api(_deployment)
# Loaded once for the process's life: out of the garbage collector's full walks (jobrelay.serve.settle).
gc.freeze()


def to_request(request: flask.Request) -> Request:
    # Never more than the limit in memory: a body announced larger is not read, a chunked one is cut
    # off as soon as it passes the limit; the API answers 413 for both.
    body, over_limit = read_body(request.stream, request.content_length)
    return Request(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=request.args.to_dict(),
        body=body,
        over_limit=over_limit,
    )


def _unrouted(error: Exception) -> flask.Response:
    """Flask's own 404/405 (a path its router cannot take, one with a newline say): answered by the API,
    so every answer is the API's JSON error naming the problem, never an HTML page."""
    return api(flask.request)


if flask.has_app_context():  # functions-framework runs this module inside its app's context
    for _status in (404, 405):
        flask.current_app.register_error_handler(_status, _unrouted)


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    req = to_request(request)
    resp = _api.handle(req)
    data = resp.data()
    if req.over_limit:
        # functions-framework reads whatever is left of a body after a plain response (to spare the
        # client a reset); a streamed one it leaves alone, so a refused body stays unread.
        return flask.Response(
            iter([data]), status=resp.status, headers={**resp.headers, "Content-Length": str(len(data))}
        )
    return flask.Response(data, status=resp.status, headers=resp.headers)
