"""The HTTP API without a web framework: a request in, a response out.

`functions/main.py` adapts functions-framework's Flask request to `Request` and back; tests can call
`Api.handle` directly. Errors answer `{"error": {"code", "message", "details"}}` with the status of
their `ApiError` class. CORS is answered for the app origins listed in `infra/environments.yaml`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from jobrelay import access, cron, deadletters, tracing
from jobrelay.appcheck import AppCheckVerifier
from jobrelay.auth import Caller, bearer
from jobrelay.deployment import Deployment
from jobrelay.errors import (
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unavailable,
    Unprocessable,
)
from jobrelay.models import is_job_id, now
from jobrelay.wsgi import Request, Response

log = logging.getLogger("jobrelay.api")

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"
CORS_HEADERS = "Authorization, Content-Type, X-Cloud-Trace-Context, traceparent, X-Firebase-AppCheck"
CORS_METHODS = "GET, POST, OPTIONS"


Handler = Callable[[Request, dict[str, str]], Response]

_STILL_RUNNING = (
    "the job is running: it stops at its handler's next cancellation check, and if the handler finishes "
    "first the job still ends succeeded (or failed); watch the job for its final status"
)
# What the `cancel` member of a cancel answer says, by outcome (200 cancelled, 202 otherwise).
CANCEL_MESSAGES = {
    "cancelled": "cancelled before it ran; it will not run",
    "requested": f"cancel requested: {_STILL_RUNNING}",
    "already": f"cancel was already requested: {_STILL_RUNNING}",
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


class Api:
    """Routes requests to the job service."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        env = r"(?P<env>[a-z]+)"
        job = r"(?P<job_id>[A-Za-z0-9_-]+)"
        self.add("GET", r"/healthz", self.healthz)
        self.add("GET", r"/v1/openapi.json", self.openapi)
        self.add("POST", rf"/v1/envs/{env}/jobs", self.submit)
        self.add("POST", rf"/v1/envs/{env}/jobs:batch", self.submit_batch)
        self.add("GET", rf"/v1/envs/{env}/jobs", self.list_jobs)
        self.add("GET", rf"/v1/envs/{env}/jobs/{job}", self.get_job)
        self.add("POST", rf"/v1/envs/{env}/jobs/{job}:cancel", self.cancel)
        self.add("GET", rf"/v1/envs/{env}/dead-letters", self.dead_letters)
        self.add("POST", rf"/v1/envs/{env}/dead-letters:redrive", self.redrive)
        self.add("GET", rf"/v1/envs/{env}/dead-letters/{job}", self.dead_letter)
        self.add("GET", rf"/v1/envs/{env}/stats", self.stats)
        self.add("GET", rf"/v1/envs/{env}/queues", self.queues)
        self.add("POST", r"/v1/cron/(?P<name>[a-z][a-z0-9-]*)", self.cron_tick)
        self.add("GET", r"/v1/schedules", self.schedules)
        self.add("GET", rf"/v1/envs/{env}/access", self.access_list)
        self.add("GET", rf"/v1/envs/{env}/access/log", self.access_log)
        self.add("POST", rf"/v1/envs/{env}/access:(?P<action>grant|revoke)", self.access_change)
        self._app_check: AppCheckVerifier | None = None
        self._access: dict[str, access.AccessManager] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        # Matched with fullmatch: `$` would let a path with a trailing newline through.
        self.routes.append((method, re.compile(pattern + r"/?"), handler))

    # -- plumbing ----------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        trace_id, span_id = trace_of(req)
        project = self._trace_project(req.path)
        with tracing.span(
            f"{req.method} {req.path}",
            project=project,
            trace_id=trace_id,
            parent_span_id=span_id,
            attributes={"http.method": req.method, "http.route": req.path},
        ):
            try:
                resp = self._route(req, trace_id)
            except ApiError as exc:
                resp = Response(exc.status, exc.body())
                if isinstance(exc, RateLimited | Unavailable):
                    resp.headers["Retry-After"] = str(exc.retry_after)
                log.info("%s %s -> %d %s", req.method, req.path, exc.status, exc.message)
            except Exception:
                log.exception("%s %s failed", req.method, req.path)
                resp = Response(
                    500,
                    {
                        "error": {
                            "code": "internal",
                            "message": "internal error; see the logs",
                            "details": {"trace_id": trace_id},
                        }
                    },
                )
        resp.headers.update(self._cors(req))
        resp.headers.setdefault("Content-Type", "application/json")
        resp.headers["X-Trace-Id"] = trace_id
        return resp

    def _route(self, req: Request, trace_id: str) -> Response:
        if req.method == "OPTIONS":
            return Response(204, None)
        allowed: list[str] = []
        for method, pattern, handler in self.routes:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            return handler(req, {**m.groupdict(), "trace_id": trace_id})
        if allowed:
            return Response(
                405,
                {
                    "error": {
                        "code": "method_not_allowed",
                        "message": f"{req.method} is not allowed on {req.path}; use {', '.join(sorted(set(allowed)))}",
                    }
                },
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise NotFound(f"no route {req.method} {req.path}; see /v1/openapi.json")

    def _trace_project(self, path: str) -> str:
        m = re.match(r"/v1/envs/([a-z]+)/", path)
        name = m.group(1) if m and m.group(1) in self.d.infra.environments else self.d.env_names[0]
        return self.d.infra.env(name).project

    def _cors(self, req: Request) -> dict[str, str]:
        origin = req.header("origin")
        if not origin:
            return {}
        m = re.match(r"/v1/envs/([a-z]+)/", req.path)
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

    # -- routes ------------------------------------------------------------------------------

    def healthz(self, req: Request, p: dict[str, str]) -> Response:
        return Response(200, {"status": "ok", "envs": list(self.d.env_names)})

    def openapi(self, req: Request, p: dict[str, str]) -> Response:
        return Response(200, json.loads(OPENAPI_PATH.read_text()))

    def submit(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        self.check_app(req, p["env"], caller)
        body = req.json()
        job, created = self.d.service.submit(p["env"], caller, body, trace_id=p["trace_id"])
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
        body = req.json()
        results = self.d.service.submit_batch(p["env"], caller, body, trace_id=p["trace_id"])
        created = sum(1 for _, c in results if c)
        log.info("batch of %d jobs (%d new) by %s in %s", len(results), created, caller.uid, p["env"])
        return Response(202 if created else 200, {"jobs": [j.public() for j, _ in results]})

    def get_job(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        return Response(200, self.d.service.get(p["env"], caller, p["job_id"]).public())

    def list_jobs(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        try:
            page_size = int(req.query.get("page_size", "50"))
        except ValueError as exc:
            raise BadRequest("page_size must be a whole number", {"field": "page_size"}) from exc
        jobs, token = self.d.service.list(
            p["env"],
            caller,
            status=req.query.get("status"),
            job_type=req.query.get("type"),
            page_size=page_size,
            page_token=req.query.get("page_token") or None,  # empty: the first page
            owner=req.query.get("owner"),
        )
        return Response(200, {"jobs": [j.public() for j in jobs], "next_page_token": token})

    def cancel(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.caller(req, p["env"])
        job, outcome = self.d.service.cancel(p["env"], caller, p["job_id"])
        cancel = {"outcome": outcome, "message": CANCEL_MESSAGES[outcome]}
        return Response(200 if outcome == "cancelled" else 202, {**job.public(), "cancel": cancel})

    def dead_letters(self, req: Request, p: dict[str, str]) -> Response:
        """Open dead letters, grouped by fingerprint; groups cover the newest 500, `total` counts all."""
        self.operator(req, p["env"])
        client = self.d.stores[p["env"]].client
        fingerprint = req.query.get("fingerprint")
        if fingerprint is not None and not deadletters.is_fingerprint(fingerprint):  # empty is not "all"
            raise Unprocessable(
                f"fingerprint: {deadletters.FINGERPRINT_RULE}",
                [{"field": "fingerprint", "problem": "not a fingerprint"}],
            )
        letters = deadletters.list_open(client, fingerprint=fingerprint)
        return Response(
            200,
            {
                "groups": deadletters.group(letters),
                "dead_letters": letters[:100],
                "total": deadletters.count_open(client, fingerprint=fingerprint),
            },
        )

    def dead_letter(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        letter = deadletters.get(self.d.stores[p["env"]].client, p["job_id"]) if is_job_id(p["job_id"]) else None
        if letter is None:
            raise NotFound(f"no dead letter for job {p['job_id']} in env {p['env']}", {"job_id": p["job_id"]})
        job = self.d.stores[p["env"]].get(p["job_id"])
        return Response(200, {**letter, "job": job.public() if job else None})

    def redrive(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        try:
            body = deadletters.RedriveRequest.model_validate(req.json())
        except ValidationError as exc:
            from jobrelay.service import validation_details

            details = validation_details(exc)
            raise Unprocessable(
                f"invalid redrive request: {details[0]['field']}: {details[0]['problem']}", details
            ) from exc
        if body.selectors() != 1:
            raise Unprocessable(
                'give exactly one of "job_ids", "fingerprint" or "all": true',
                [{"field": "body", "problem": "one selector needed"}],
            )
        store = self.d.stores[p["env"]]
        ids = deadletters.select(store.client, body)
        if body.fingerprint is not None and not ids:
            raise NotFound(
                f"no open dead letter has fingerprint {body.fingerprint!r} in env {p['env']}; "
                "`jobrelay dlq list` shows the open groups",
                {"fingerprint": body.fingerprint},
            )
        results = deadletters.redrive(
            store.client,
            store,
            ids,
            dry_run=body.dry_run,
            by=caller.uid,
            dispatch=lambda j: self.d.service.dispatch_job(p["env"], j),
        )
        log.warning("redrive by %s in %s: %d selected, dry_run=%s", caller.uid, p["env"], len(ids), body.dry_run)
        return Response(
            200,
            {
                "dry_run": body.dry_run,
                "count": len(results),
                "redriven": sum(1 for r in results if r.outcome == "redriven"),
                "results": [r.as_dict() for r in results],
            },
        )

    def cron_tick(self, req: Request, p: dict[str, str]) -> Response:
        """Cloud Scheduler's call: one tick of a schedule becomes one job, however often it is retried."""
        name = p["name"]
        # The caller first: only a scheduler account of a served env learns which schedules and envs exist.
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
        schedule = self.d.infra.schedules.get(name)
        if schedule is None:
            raise NotFound(f"no schedule {name!r}; schedules: {', '.join(sorted(self.d.infra.schedules))}")
        if env_name not in schedule.envs:
            raise NotFound(f"schedule {name!r} does not run in env {env_name}")
        if not schedule.enabled:
            raise Conflict(f"schedule {name!r} is disabled in infra/schedules.yaml")
        try:
            scheduled = cron.parse_schedule_time(req.header("x-cloudscheduler-scheduletime"), now())
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        spec: dict[str, object] = {
            "type": schedule.type,
            "payload": schedule.payload,
            "labels": {"schedule": name, "scheduled_for": scheduled.strftime("%Y%m%d%H%M")},
        }
        if schedule.job_class:
            spec["class"] = schedule.job_class
        caller = Caller(uid=email, kind="service", admin=True, roles=frozenset({"jobrelay-system"}), email=email)
        job, created = self.d.service.submit(
            env_name, caller, spec, trace_id=p["trace_id"], job_id=cron.job_id(name, scheduled)
        )
        if created:
            cron.record_tick(self.d.stores[env_name].client, schedule, scheduled, job)
        log.info(
            "cron %s in %s for %s: job %s (%s)",
            name,
            env_name,
            scheduled.isoformat(),
            job.id,
            "new" if created else "repeat",
        )
        return Response(202 if created else 200, job.public())

    def schedules(self, req: Request, p: dict[str, str]) -> Response:
        """Health of every schedule in every served env; 503 when one is unhealthy (for load balancers)."""
        at = now()
        out = []
        for env_name in self.d.env_names:
            store = self.d.stores[env_name]
            states = {s.id: s.to_dict() or {} for s in store.client.collection(cron.SCHEDULES).stream()}
            wanted = [s for s in self.d.infra.schedules.values() if env_name in s.envs]
            last_ids = [
                states[s.name]["last_job_id"] for s in wanted if s.name in states and states[s.name].get("last_job_id")
            ]
            jobs = store.get_many(last_ids) if last_ids else {}
            for s in wanted:
                state = states.get(s.name)
                last = jobs.get((state or {}).get("last_job_id", ""))
                out.append(cron.health(s, env_name, state, last, at).body)
        healthy = all(s["healthy"] for s in out)
        return Response(200 if healthy else 503, {"healthy": healthy, "checked_at": at.isoformat(), "schedules": out})

    def stats(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        try:
            window = int(req.query.get("window_seconds", "3600"))
        except ValueError as exc:
            raise BadRequest("window_seconds must be a whole number", {"field": "window_seconds"}) from exc
        if not 60 <= window <= 30 * 86400:
            raise Unprocessable(
                "window_seconds must be between 60 and 2592000",
                [{"field": "window_seconds", "problem": "range"}],
            )
        from datetime import timedelta

        from jobrelay.stats import env_stats

        body = env_stats(
            self.d.stores[p["env"]].client,
            env=p["env"],
            classes=sorted(self.d.infra.classes),
            window=timedelta(seconds=window),
        )
        return Response(200, body)

    def queues(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        from jobrelay import clients
        from jobrelay.stats import queue_depths

        env = self.d.infra.env(p["env"])
        rows = queue_depths(
            clients.tasks_client(self.d.identity(p["env"])),
            self.d.stores[p["env"]].client,
            project=env.project,
            region=env.region,
            classes=[(c.name, c.queue, c.route.value) for c in self.d.infra.classes.values()],
        )
        return Response(200, {"env": p["env"], "queues": rows})

    # -- access management (jobrelay.access, ADR 0016) ---------------------------------------------

    def access_manager(self, env: str) -> access.AccessManager:
        manager = self._access.get(env)
        if manager is None:
            manager = access.AccessManager(self.d.service.env(env), self.d.stores[env].client, self.d.registry)
            self._access[env] = manager
        return manager

    def access_change(self, req: Request, p: dict[str, str]) -> Response:
        caller = self.operator(req, p["env"])
        change = access.parse_change(req.json())
        manager = self.access_manager(p["env"])
        outcome = manager.grant(caller, change) if p["action"] == "grant" else manager.revoke(caller, change)
        return Response(200, outcome.body())

    def access_list(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        manager = self.access_manager(p["env"])
        users, token = manager.users(req.query.get("page_token") or None)
        return Response(
            200,
            {
                "users": users,
                "next_page_token": token,
                "known_roles": access.known_roles(manager.env, manager.registry),
            },
        )

    def access_log(self, req: Request, p: dict[str, str]) -> Response:
        self.operator(req, p["env"])
        try:
            limit = int(req.query.get("limit", "50"))
        except ValueError as exc:
            raise BadRequest("limit must be a whole number", {"field": "limit"}) from exc
        return Response(200, {"entries": self.access_manager(p["env"]).log(limit)})
