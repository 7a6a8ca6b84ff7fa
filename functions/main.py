"""The jobrelay HTTP API as a functions-framework function (target `api`).

Run: `functions-framework --target=api --source=functions/main.py` (Cloud Run sets PORT).
Everything but the Flask adaptation lives in `jobrelay.api`.
"""

from __future__ import annotations

import flask
import functions_framework

from jobrelay import logging as jlog
from jobrelay import tracing
from jobrelay.api import Api, Request
from jobrelay.deployment import Deployment

jlog.setup("api")
_deployment = Deployment.from_env(schedules=True)
tracing.setup("api", _deployment.settings.trace_export)
_api = Api(_deployment)


def to_request(request: flask.Request) -> Request:
    return Request(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=request.args.to_dict(),
        body=request.get_data(cache=False),
    )


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    resp = _api.handle(to_request(request))
    return flask.Response(resp.data(), status=resp.status, headers=resp.headers)
