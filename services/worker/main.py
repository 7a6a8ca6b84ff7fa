"""The Cloud Run worker: Cloud Tasks delivers `POST /v1/run` here, one task per job dispatch.

Each delivery carries a Google OIDC token of the env's tasks service account (checked here as well
as by Cloud Run IAM). The answer steers Cloud Tasks: 2xx ends the task (success, final failure,
duplicate), anything else asks for a retry with the queue's backoff.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from jobrelay import logging as jlog
from jobrelay import tracing
from jobrelay.deployment import Deployment
from jobrelay.dispatch import TaskMessage
from jobrelay.errors import Refused
from jobrelay.wsgi import App, Request, Response, error_response, json_response, not_found

jlog.setup("worker")
log = logging.getLogger("jobrelay.worker")
deployment = Deployment.from_env()
tracing.setup("worker", deployment.settings.trace_export)
runner = deployment.runner()


def _message(request: Request) -> TaskMessage:
    try:
        return TaskMessage.model_validate_json(request.body)
    except ValidationError as exc:
        raise ValueError(f"task body is not a jobrelay task: {exc.errors()[0]['msg']}") from exc


def worker(request: Request) -> Response:
    if request.path == "/healthz":
        state = "draining" if runner.stopping.is_set() else "ok"
        return json_response(200, {"status": state, "worker": runner.worker})
    if request.method != "POST" or request.path not in ("/v1/run", "/v1/handoff"):
        return not_found(request)
    try:
        msg = _message(request)
    except ValueError as exc:
        # A malformed task can never succeed: acknowledge it so it is not retried forever.
        log.error("dropped malformed task %s: %s", request.header("X-CloudTasks-TaskName"), exc)
        return json_response(200, {"outcome": "malformed", "detail": str(exc)})
    if msg.env not in deployment.infra.environments:
        log.error("dropped task for unknown env %r", msg.env)
        return json_response(200, {"outcome": "unknown_env", "detail": msg.env})
    env = deployment.infra.env(msg.env)
    try:
        deployment.auth.verify_google(
            _bearer(request),
            audience=deployment.settings.worker_audience or deployment.settings.worker_url,
            allowed=(env.service_accounts.tasks_invoker,),
        )
    except Refused as exc:
        log.warning("refused delivery of job %s: %s", msg.job_id, exc.message)
        # 503 with Retry-After when the token could not be checked (keys unreachable): Cloud Tasks retries.
        return error_response(exc)
    project = env.project
    with (
        tracing.span(
            "jobrelay.run" if request.path == "/v1/run" else "jobrelay.handoff",
            project=project,
            trace_id=msg.trace_id,
            parent_span_id=msg.span_id,
            attributes={"jobrelay.env": msg.env, "jobrelay.job_id": msg.job_id},
        ),
        jlog.labels(env=msg.env, job_id=msg.job_id),
    ):
        if request.path == "/v1/handoff":
            return _handoff(msg)
        answer = runner.deliver(msg.env, msg.job_id, retries=_retries(request), dispatch=msg.dispatch, check=msg.check)
        headers = {"Retry-After": str(int(answer.retry_after))} if answer.retry_after else None
        if answer.ack:
            return json_response(200, answer.body(), headers)
        status = 503 if answer.outcome.come_back_later else 500
        return json_response(status, answer.body(), headers)


def _retries(request: Request) -> int:
    """How often Cloud Tasks tried this task before (0 on the first delivery)."""
    raw = request.header("X-CloudTasks-TaskRetryCount") or "0"
    return int(raw) if raw.isdigit() else 0


def _bearer(request: Request) -> str:
    from jobrelay.auth import bearer

    return bearer(request.header("Authorization"))


def _handoff(msg: TaskMessage) -> Response:
    """A delayed heavy job fell due: hand it to the Elastic Muscle pool (Cloud Tasks did the waiting)."""
    job = deployment.stores[msg.env].get(msg.job_id)
    message_id = deployment.dispatchers[msg.env].hand_off(deployment.infra.env(msg.env), job, msg.dispatch)
    if message_id is None:
        return json_response(200, {"outcome": "nothing_to_do", "job_id": msg.job_id})
    log.info("job %s handed to the Elastic Muscle pool (message %s)", msg.job_id, message_id)
    return json_response(200, {"outcome": "handed_off", "job_id": msg.job_id, "message_id": message_id})


app = App(worker)
