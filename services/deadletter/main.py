"""The dead-letter service: Pub/Sub pushes dead jobs here; each is recorded in `dead_letters`.

`POST /v1/push`       the env's dead-letter topic (jobs the worker gave up on)
`POST /v1/push/pool`  the pool subscription's dead-letter topic (poison messages Pub/Sub gave up on)

A push that can never be processed (garbage body, unknown env) is logged and acknowledged, so
Pub/Sub does not retry it forever. In the cloud each push carries a Google OIDC token of the push
service account, verified here; the Pub/Sub emulator cannot sign one, so the local stack skips it.
"""

from __future__ import annotations

import logging

from jobrelay import clients, deadletters, tracing
from jobrelay import logging as jlog
from jobrelay.deployment import Deployment
from jobrelay.errors import Refused
from jobrelay.wsgi import App, Request, Response, error_response, json_response, not_found

jlog.setup("deadletter")
log = logging.getLogger("jobrelay.deadletter")
deployment = Deployment.from_env(job_types=False)
tracing.setup("deadletter", deployment.settings.trace_export)


def _verify(request: Request, env: str) -> None:
    if deployment.settings.mode == "local":
        return
    from jobrelay.auth import bearer

    deployment.auth.verify_google(
        bearer(request.header("Authorization")),
        audience=deployment.settings.deadletter_url,
        allowed=(deployment.infra.env(env).service_accounts.pubsub_push,),
    )


def deadletter(request: Request) -> Response:
    if request.path == "/healthz":
        return json_response(200, {"status": "ok"})
    if request.method != "POST" or request.path not in ("/v1/push", "/v1/push/pool"):
        return not_found(request)
    body = request.body
    try:
        if request.path == "/v1/push":
            msg, message_id = deadletters.parse_push(body)
        else:
            msg, message_id = deadletters.parse_pool_push(body)
    except ValueError as exc:
        log.error("acknowledged an unusable push (%d bytes): %s", len(body), exc)
        return json_response(200, {"outcome": "malformed", "detail": str(exc)})
    if msg.env not in deployment.stores:
        log.error("acknowledged a dead letter for env %r, which this deployment does not serve", msg.env)
        return json_response(200, {"outcome": "wrong_env", "detail": msg.env})
    try:
        _verify(request, msg.env)
    except Refused as exc:
        log.warning("refused push: %s", exc.message)
        return error_response(exc)
    env = deployment.infra.env(msg.env)
    with (
        tracing.span(
            "jobrelay.dead_letter",
            project=env.project,
            trace_id=msg.trace_id,
            attributes={"jobrelay.job_id": msg.job_id},
        ),
        jlog.labels(env=msg.env, job_id=msg.job_id, type=msg.type),
    ):
        if msg.source == "pool":
            dead = deadletters.poison(deployment.stores[msg.env], msg, env.retention_days)
            if dead is None:
                return json_response(200, {"outcome": "ignored", "job_id": msg.job_id})
            msg, job = dead
            if job is not None:
                deployment.flow.ended(msg.env, job)  # its dependents and schedule learn it is dead
        new = deadletters.record(clients.firestore_client(env.project), msg, message_id=message_id)
        fingerprint = msg.error.fingerprint if msg.error else "unknown"
        log.warning(
            "dead letter %s job %s (%s), fingerprint %s",
            "recorded" if new else "already recorded",
            msg.job_id,
            msg.type,
            fingerprint,
        )
    return json_response(200, {"outcome": "recorded" if new else "duplicate", "job_id": msg.job_id})


app = App(deadletter)
