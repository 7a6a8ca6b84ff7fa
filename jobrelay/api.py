"""The HTTP API without a web framework: a request in, a response out.

`functions/main.py` adapts functions-framework's Flask request to `Request` and back; tests call
`Api.handle` directly. The routes are `jobrelay.routes.ROUTES` (the OpenAPI document is built from the
same table). Each handler reads the request, checks the caller, makes one call into a service
(`JobService`, `Operator`, `Cron`) and shapes the answer; a refusal becomes its HTTP status in
`jobrelay.wsgi.error_response`. CORS is answered for the app origins listed in `infra/environments.yaml`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from jobrelay import access, pipeline_doc, tracing
from jobrelay.appcheck import AppCheckVerifier
from jobrelay.auth import Caller, bearer
from jobrelay.deployment import Deployment
from jobrelay.errors import BadRequest, NotFound, PayloadTooLarge, PermissionDenied, Refused, Unprocessable
from jobrelay.lifecycle import Cancel
from jobrelay.pipeline_models import steps_named_twice
from jobrelay.routes import CONSOLE_ROUTES, ROUTES
from jobrelay.wsgi import Request, Response, error_response, status_of

log = logging.getLogger("jobrelay.api")

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"
CORS_HEADERS = "Authorization, Content-Type, X-Cloud-Trace-Context, traceparent, X-Firebase-AppCheck"
CORS_METHODS = "GET, POST, OPTIONS"
ENV_IN_PATH = re.compile(r"/v1/envs/([a-z]+)/")

Handler = Callable[[Request, dict[str, str]], Response]

_STILL_RUNNING = (
    "the job is running: it stops at its handler's next cancellation check, and if the handler finishes "
    "first the job still ends succeeded (or failed); watch the job for its final status"
)
# What the `cancel` member of a cancel answer says, by outcome (200 cancelled, 202 otherwise).
CANCEL_MESSAGES: dict[Cancel, str] = {
    Cancel.CANCELLED: "cancelled before it ran; it will not run",
    Cancel.REQUESTED: f"cancel requested: {_STILL_RUNNING}",
    Cancel.ALREADY: f"cancel was already requested: {_STILL_RUNNING}",
}


def trace_of(req: Request) -> tuple[str, str]:
    """The caller's trace and span (W3C traceparent or X-Cloud-Trace-Context), or a new trace."""
    tp = req.header("traceparent")
    if tp:
        parts = tp.split("-")
        if len(parts) >= 3 and re.fullmatch(r"[0-9a-f]{32}", parts[1]) and parts[1] != "0" * 32:
            return parts[1], parts[2]
    xc = req.header("x-cloud-trace-context")
    if xc:
        m = re.match(r"([0-9a-fA-F]{32})(?:/(\d+))?", xc)
        if m:
            return m.group(1).lower(), format(int(m.group(2) or "0"), "016x")
    return secrets.token_hex(16), ""


def _int(req: Request, name: str, default: int) -> int:
    try:
        return int(req.query.get(name, str(default)))
    except ValueError as exc:
        raise BadRequest(f"{name} must be a whole number", {"field": name}) from exc


class Api:
    """Routes requests to the services."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (r.method, r.pattern(), getattr(self, r.handler)) for r in (*ROUTES, *CONSOLE_ROUTES)
        ]
        self._app_check: AppCheckVerifier | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        trace_id, span_id = trace_of(req)
        with tracing.span(
            f"{req.method} {req.path}",
            project=self._trace_project(req.path),
            trace_id=trace_id,
            parent_span_id=span_id,
            attributes={"http.method": req.method, "http.route": req.path},
        ):
            try:
                resp = self._route(req, trace_id)
            except Refused as exc:
                resp = error_response(exc)
                log.info("%s %s -> %d %s", req.method, req.path, status_of(exc), exc.message)
            except Exception:
                log.exception("%s %s failed", req.method, req.path)
                body = {
                    "code": "internal",
                    "message": "internal error; see the logs",
                    "details": {"trace_id": trace_id},
                }
                resp = Response(500, {"error": body})
        resp.headers.update(self._cors(req))
        resp.headers.setdefault("Content-Type", "application/json")
        resp.headers["X-Trace-Id"] = trace_id
        return resp

    def _route(self, req: Request, trace_id: str) -> Response:
        if req.method == "OPTIONS":
            return Response(204, None)
        allowed: set[str] = set()
        for method, pattern, handler in self.routes:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            if method != req.method:
                allowed.add(method)
                continue
            return handler(req, {**m.groupdict(), "trace_id": trace_id})
        if allowed:
            methods = ", ".join(sorted(allowed))
            message = f"{req.method} is not allowed on {req.path}; use {methods}"
            return Response(405, {"error": {"code": "method_not_allowed", "message": message}}, {"Allow": methods})
        raise NotFound(f"no route {req.method} {req.path}; see /v1/openapi.json")

    def _trace_project(self, path: str) -> str:
        m = ENV_IN_PATH.match(path)
        name = m.group(1) if m and m.group(1) in self.d.infra.environments else self.d.env_names[0]
        return self.d.infra.env(name).project

    def _cors(self, req: Request) -> dict[str, str]:
        origin = req.header("origin")
        if not origin:
            return {}
        m = ENV_IN_PATH.match(req.path)
        names = [m.group(1)] if m and m.group(1) in self.d.env_names else list(self.d.env_names)
        if not any(origin in self.d.infra.env(n).app_origins for n in names):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Access-Control-Expose-Headers": "X-Trace-Id, Retry-After",
            "Access-Control-Max-Age": "3600",
        }

    def caller(self, req: Request, env: str) -> Caller:
        env_settings = self.d.service.env(env)
        return self.d.auth.caller(env_settings, req.header("authorization"))

    def operator(self, req: Request, env: str) -> Caller:
        caller = self.caller(req, env)
        if not caller.admin:
            raise PermissionDenied(f"{caller.uid} is not an operator of env {env}: the admin claim is needed")
        return caller

    def check_app(self, req: Request, env: str, caller: Caller) -> None:
        """Where the env requires App Check, an app's submit must carry a valid token (jobrelay.appcheck)."""
        if self._app_check is None:
            self._app_check = AppCheckVerifier(self.d.settings)
        self._app_check.check(self.d.service.env(env), caller, req.header("x-firebase-appcheck"))

    # -- routes (jobrelay.routes.ROUTES names them) ------------------------------------------------

    def healthz(self, req: Request, p: dict[str, str]) -> Response:
        return Response(200, {"status": "ok", "envs": list(self.d.env_names)})

    def openapi(self, req: Request, p: dict[str, str]) -> Response:
        return Response(200, json.loads(OPENAPI_PATH.read_text()))

    def submit(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        self.check_app(req, p["env"], caller)
        job, created = self.d.service.submit(p["env"], caller, req.json(), trace_id=p["trace_id"])
        log.info(
            "job %s %s by %s",
            job.id,
            "submitted" if created else "repeated",
            caller.uid,
            extra={"labels": {"env": job.env, "job_id": job.id, "type": job.type, "class": job.job_class}},
        )
        return Response(202 if created else 200, job.public(), {"Location": f"/v1/envs/{job.env}/jobs/{job.id}"})

    def submit_batch(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        self.check_app(req, p["env"], caller)
        results = self.d.service.submit_batch(p["env"], caller, req.json(), trace_id=p["trace_id"])
        created = sum(1 for _, c in results if c)
        log.info("batch of %d jobs (%d new) by %s in %s", len(results), created, caller.uid, p["env"])
        return Response(202 if created else 200, {"jobs": [j.public() for j, _ in results]})

    def get_job(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        return Response(200, self.d.service.get(p["env"], caller, p["job_id"]).public())

    def list_jobs(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        jobs, token = self.d.service.list(
            p["env"],
            caller,
            status=req.query.get("status"),  # given but empty is refused, never "any"
            job_type=req.query.get("type"),
            page_size=_int(req, "page_size", 50),
            page_token=req.query.get("page_token") or None,  # empty: the first page
            owner=req.query.get("owner"),
        )
        return Response(200, {"jobs": [j.public() for j in jobs], "next_page_token": token})

    def cancel(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        job, outcome = self.d.service.cancel(p["env"], caller, p["job_id"])
        cancel = {"outcome": outcome.value, "message": CANCEL_MESSAGES[outcome]}
        return Response(200 if outcome == Cancel.CANCELLED else 202, {**job.public(), "cancel": cancel})

    def dead_letters(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        return Response(200, self.d.operator.dead_letters(p["env"], req.query.get("fingerprint")))

    def dead_letter(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        return Response(200, self.d.operator.dead_letter(p["env"], p["job_id"]))

    def redrive(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        return Response(200, self.d.operator.redrive(p["env"], caller, req.json()))

    def stats(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        return Response(200, self.d.operator.stats(p["env"], _int(req, "window_seconds", 3600)))

    def queues(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        return Response(200, self.d.operator.queues(p["env"]))

    def cron_tick(self, req: Request, p: dict[str, str]) -> Response:
        """Cloud Scheduler's call; the caller is checked before anything about the schedules or envs is said."""
        schedulers = {self.d.infra.env(e).service_accounts.scheduler: e for e in self.d.env_names}
        email = self.d.auth.verify_google(
            bearer(req.header("authorization")), audience=self.d.settings.api_url, allowed=tuple(schedulers)
        )
        env_name = req.query.get("env")
        if env_name is None:
            if len(self.d.env_names) != 1:
                raise BadRequest(f"this deployment serves {', '.join(self.d.env_names)}: say which with ?env=")
            env_name = self.d.env_names[0]
        self.d.service.env(env_name)
        if schedulers[email] != env_name:
            raise PermissionDenied(f"{email} is the scheduler of env {schedulers[email]}, not of env {env_name}")
        caller = Caller(uid=email, kind="service", admin=True, roles=frozenset({"jobrelay-system"}), email=email)
        body, created = self.d.cron.fire(
            p["name"], env_name, req.header("x-cloudscheduler-scheduletime"), caller, trace_id=p["trace_id"]
        )
        return Response(202 if created else 200, body)

    def job_request_event(self, req: Request, p: dict[str, str]) -> Response:
        """Eventarc's call for a new job request (docs/job-requests.md); the caller is checked first."""
        from jobrelay import cloudevents  # only this route reads protobuf: not part of the API's cold start

        accounts = {self.d.infra.env(e).service_accounts.eventarc: e for e in self.d.env_names}
        api_url = self.d.settings.api_url.rstrip("/")
        # Eventarc's token is for the destination: the service URL, or the URL with its path.
        email = self.d.auth.verify_google(
            bearer(req.header("authorization")), audience=[api_url, api_url + req.path], allowed=tuple(accounts)
        )
        if req.over_limit:
            raise PayloadTooLarge("the event is larger than any Firestore document")
        event = cloudevents.parse(req.headers, req.body)
        outcome = self.d.intake.handle_event(event, env=accounts[email], trace_id=p["trace_id"])
        return Response(200, outcome.body())

    def schedules(self, req: Request, p: dict[str, str]) -> Response:
        """Health of every schedule in every served env; 503 when one is unhealthy (for load balancers)."""
        body = self.d.cron.health(self.d.env_names)
        return Response(200 if body["healthy"] else 503, body)

    # -- pipelines (jobrelay.pipelines, docs/pipelines.md) -----------------------------------------

    def submit_pipeline(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        self.check_app(req, p["env"], caller)
        body = req.json()
        twice = steps_named_twice(req.body)
        if twice:  # JSON parsers keep the last of a repeated key: a step would vanish unseen
            raise Unprocessable(
                f"steps: step {twice[0][:60]!r} is given twice; each step needs its own name",
                [{"field": f"steps.{t[:60]}", "problem": "duplicate step name"} for t in twice],
            )
        pipeline, created = self.d.pipelines.submit(p["env"], caller, body, trace_id=p["trace_id"])
        location = {"Location": f"/v1/envs/{p['env']}/pipelines/{pipeline['id']}"}
        return Response(202 if created else 200, pipeline_doc.public(pipeline), location)

    def list_pipelines(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        pipelines, token = self.d.pipelines.list(
            p["env"],
            caller,
            status=req.query.get("status"),
            page_size=_int(req, "page_size", 50),
            page_token=req.query.get("page_token") or None,
            owner=req.query.get("owner"),
        )
        return Response(200, {"pipelines": [pipeline_doc.public(x) for x in pipelines], "next_page_token": token})

    def get_pipeline(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        return Response(200, pipeline_doc.public(self.d.pipelines.get(p["env"], caller, p["pipeline_id"])))

    def cancel_pipeline(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        pipeline = self.d.pipelines.cancel(p["env"], caller, p["pipeline_id"])
        return Response(200 if pipeline["status"] == "cancelled" else 202, pipeline_doc.public(pipeline))

    def retry_pipeline(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        return Response(200, pipeline_doc.public(self.d.pipelines.retry(p["env"], caller, p["pipeline_id"])))

    # -- access management (jobrelay.access, ADR 0016) ---------------------------------------------

    def access_grant(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        return Response(200, self.d.access(p["env"]).grant(caller, access.parse_change(req.json())).body())

    def access_revoke(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        return Response(200, self.d.access(p["env"]).revoke(caller, access.parse_change(req.json())).body())

    def access_list(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        manager = self.d.access(p["env"])
        users, token = manager.users(req.query.get("page_token") or None)
        body = {
            "users": users,
            "next_page_token": token,
            "known_roles": access.known_roles(manager.env, manager.registry),
        }
        return Response(200, body)

    def access_log(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        return Response(200, {"entries": self.d.access(p["env"]).log(_int(req, "limit", 50))})

    # -- flow control (jobrelay.flowcontrol) ---------------------------------------------------------

    def bulk_cancel(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        body = self.d.flow_control.bulk_cancel(p["env"], caller, req.json())
        return Response(202 if body.get("operation") else 200, body)

    def get_operation(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        return Response(200, self.d.flow_control.operation(p["env"], caller, p["operation_id"]))

    def pause(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        return Response(200, self.d.flow_control.pause(p["env"], caller, p["job_type"], req.json()))

    def resume(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        raw = req.json() if req.body.strip() or req.over_limit else None  # the body is optional
        return Response(200, self.d.flow_control.resume(p["env"], caller, p["job_type"], raw))

    # -- the per-type overview and promotion (jobrelay.promotion, ADR 0019) -------------------------

    def types(self, req: Request, p: dict[str, str]) -> Response:
        """Every type offered in the env: its pause and breaker, and how many of its jobs wait and run."""
        self.operator(req, p["env"])
        return Response(200, self.d.flow_control.types(p["env"]))

    def promotion_source(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        body = self.d.promotions.source(p["env"], caller, p["kind"], p["source_id"], req.query.get("to"))
        return Response(200, body)

    def promote(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        body, created = self.d.promotions.create(p["env"], caller, req.json(), p["trace_id"])
        log.warning("promotion into %s by %s: %s (%s)", p["env"], caller.uid, body.get("id"), body.get("promoted_from"))
        return Response(202 if created else 200, body)

    def promotion_record(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        return Response(200, self.d.promotions.record(p["env"], caller, p["kind"], p["source_id"], req.json()))

    # -- the operator console's files (jobrelay.console; not part of the OpenAPI document) -----------

    def console_home(self, req: Request, p: dict[str, str]) -> Response:
        return Response(308, None, {"Location": "/console/"})

    def console_config(self, req: Request, p: dict[str, str]) -> Response:
        return self.d.console.config_response()

    def console_asset(self, req: Request, p: dict[str, str]) -> Response:
        return self.d.console.asset(p["asset"])
