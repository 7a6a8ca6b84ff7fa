"""Every route of the HTTP API, declared once: what `jobrelay.api` serves and `jobrelay.openapi` documents.

A route names its method, its path template, the `Api` method that answers it, who may call it, its
query parameters, its request body and its answers (status -> description and schema name, schemas
being components of the OpenAPI document). Path parameters are matched by the patterns in
`PATH_PARAMS`; the handlers validate their values further.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from jobrelay.graph import PipelineStatus
from jobrelay.models import Status
from jobrelay.validation import FINGERPRINT_PATTERN, MAX_OWNER_LENGTH, MAX_PAGE_TOKEN, MAX_TYPE_LENGTH

# What a path parameter matches before its handler looks at it.
PATH_PARAMS = {
    "env": r"[a-z]+",
    "job_id": r"[A-Za-z0-9_-]+",
    "name": r"[a-z][a-z0-9-]*",
    "kind": r"[a-z]+",
    "source_id": r"[A-Za-z0-9_-]+",
    "asset": r"[^\x00]*",  # the console's files: jobrelay.console checks every segment
    "pipeline_id": r"[A-Za-z0-9_-]+",
    "job_type": r"[A-Za-z0-9_.-]+",
    "operation_id": r"[A-Za-z0-9_-]+",
}

Who = Literal["anyone", "user", "operator", "scheduler", "eventarc"]


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    where: Literal["query", "header"] = "query"
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: Literal["GET", "POST"]
    path: str
    handler: str
    operation_id: str
    summary: str
    who: Who = "user"
    params: tuple[Param, ...] = ()
    body: str | None = None  # component schema of the request body
    answers: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # status -> (description, schema)
    description: str = ""
    errors: tuple[int, ...] = ()  # besides 503: any route that checks a token answers it when keys are unreachable
    body_required: bool = True

    def pattern(self) -> re.Pattern[str]:
        """The path as a regular expression with one named group per path parameter."""
        parts = re.split(r"\{(\w+)\}", self.path)  # literal, name, literal, name, ...
        regex = "".join(
            f"(?P<{part}>{PATH_PARAMS[part]})" if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        return re.compile(regex + r"/?\Z")

    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


_STATUS = Param("status", {"type": "string", "enum": [s.value for s in Status]})
_APP_CHECK = Param(
    "X-Firebase-AppCheck",
    {"type": "string"},
    where="header",
    description="the app's Firebase App Check token; required from apps where the env has app_check: required",
)
_PAGE = (
    Param("page_size", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    Param(
        "page_token",
        {"type": "string", "maxLength": MAX_PAGE_TOKEN},
        description="next_page_token of the page before; empty or left out: the first page",
    ),
)

_PIPELINE_STATUS = Param("status", {"type": "string", "enum": [s.value for s in PipelineStatus]})

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "healthz", "healthz", "liveness", "anyone", answers={200: ("ok", None)}),
    Route(
        "GET", "/v1/openapi.json", "openapi", "openapi", "this document", "anyone", answers={200: ("OpenAPI 3.1", None)}
    ),
    Route(
        "POST",
        "/v1/envs/{env}/jobs",
        "submit",
        "submitJob",
        "submit a job",
        params=(_APP_CHECK,),
        body="JobSpec",
        answers={202: ("new job", "Job"), 200: ("same idempotency key: the first job", "Job")},
        errors=(400, 401, 403, 404, 409, 413, 422, 429),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/jobs",
        "list_jobs",
        "listJobs",
        "list jobs, newest first",
        params=(
            _STATUS,
            Param("type", {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LENGTH}),
            Param(
                "owner",
                {"type": "string", "minLength": 1, "maxLength": MAX_OWNER_LENGTH},
                description="admins only: one user's jobs",
            ),
            *_PAGE,
        ),
        answers={200: ("a page", "JobListing")},
        errors=(400, 401, 403, 404, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/jobs:batch",
        "submit_batch",
        "submitBatch",
        "submit up to 500 jobs at once (all valid, or none written)",
        params=(_APP_CHECK,),
        body="BatchRequest",
        answers={202: ("jobs", "Jobs"), 200: ("all repeats", "Jobs")},
        errors=(400, 401, 403, 404, 409, 413, 422, 429),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/jobs/{job_id}",
        "get_job",
        "getJob",
        "one job (owner or admin; another user's job answers 404, as a missing one)",
        answers={200: ("the job", "Job")},
        errors=(401, 403, 404),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/jobs/{job_id}:cancel",
        "cancel",
        "cancelJob",
        "cancel a waiting job now, or ask a running one to stop",
        description=(
            "200: the job was waiting and is cancelled; it will not run. 202: the job is running and was asked "
            "to stop; it stops at its handler's next cancellation check, and if the handler finishes first the "
            "job still ends succeeded (or failed). Watch the job for its final status."
        ),
        answers={
            200: ("cancelled: it will not run", "CancelAnswer"),
            202: ("stop requested: the job may still end succeeded if its handler finishes first", "CancelAnswer"),
        },
        errors=(401, 403, 404, 409),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/dead-letters",
        "dead_letters",
        "deadLetters",
        "open dead letters, grouped by fingerprint (operators)",
        "operator",
        params=(Param("fingerprint", {"type": "string", "pattern": FINGERPRINT_PATTERN}),),
        answers={200: ("dead letters", "DeadLetters")},
        errors=(401, 403, 404, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/dead-letters:redrive",
        "redrive",
        "redrive",
        "redrive dead jobs as a new attempt each (dry_run first)",
        "operator",
        body="RedriveRequest",
        answers={200: ("what was (or would be) redriven", "RedriveResult")},
        errors=(400, 401, 403, 404, 413, 422),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/dead-letters/{job_id}",
        "dead_letter",
        "deadLetter",
        "one dead letter with its job (operators)",
        "operator",
        answers={200: ("dead letter", "DeadLetter")},
        errors=(401, 403, 404),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/stats",
        "stats",
        "stats",
        "counts, oldest waiting job, failure rate, p50/p95 (operators)",
        "operator",
        params=(Param("window_seconds", {"type": "integer", "minimum": 60, "default": 3600}),),
        answers={200: ("stats", "Stats")},
        errors=(400, 401, 403, 404, 422),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/queues",
        "queues",
        "queues",
        "depth and oldest task per class (operators)",
        "operator",
        answers={200: ("queues", "Queues")},
        errors=(401, 403, 404),
    ),
    Route(
        "POST",
        "/v1/cron/{name}",
        "cron_tick",
        "cronTick",
        "Cloud Scheduler's tick: one job per schedule and scheduled time",
        "scheduler",
        params=(
            Param("env", {"type": "string"}, description="needed when the deployment serves several envs"),
            Param("X-CloudScheduler-ScheduleTime", {"type": "string"}, where="header"),
        ),
        answers={202: ("new job", "Job"), 200: ("the tick's job already exists", "Job")},
        errors=(400, 401, 403, 404, 409),
    ),
    Route(
        "POST",
        "/v1/events/job-requests",
        "job_request_event",
        "jobRequestEvent",
        "Eventarc's document.created event of job_requests/{id}: the request becomes one job (or an error)",
        "eventarc",
        params=tuple(
            Param(h, {"type": "string", "maxLength": 2048}, where="header")
            for h in ("ce-id", "ce-source", "ce-specversion", "ce-type", "ce-subject", "ce-document")
        ),
        body="DocumentEventData",
        description=(
            "A CloudEvent in binary content mode, as Eventarc delivers Firestore events: attributes in ce-* "
            "headers, the body google.events.cloud.firestore.v1.DocumentEventData as protobuf "
            "(application/protobuf) or JSON (application/json). Only the env's Eventarc service account may "
            "call it. 200 with the request's outcome (also when it was decided before); 503 leaves it pending."
        ),
        answers={200: ("what became of the request", "RequestOutcome")},
        errors=(400, 401, 403, 404, 413),
    ),
    Route(
        "GET",
        "/v1/schedules",
        "schedules",
        "schedules",
        "schedule health (503 when one is unhealthy)",
        "anyone",
        answers={200: ("all healthy", "Schedules"), 503: ("some unhealthy", "Schedules")},
    ),
    # Pipelines (issue 16, docs/pipelines.md): a graph of steps submitted at once, watched as one.
    Route(
        "POST",
        "/v1/envs/{env}/pipelines",
        "submit_pipeline",
        "submitPipeline",
        "submit a pipeline: steps (job specs) with `after`, all valid or nothing written",
        params=(_APP_CHECK,),
        body="PipelineSpec",
        answers={202: ("new pipeline", "Pipeline"), 200: ("same idempotency key: the first pipeline", "Pipeline")},
        errors=(400, 401, 403, 404, 409, 413, 422, 429),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/pipelines",
        "list_pipelines",
        "listPipelines",
        "list pipelines, newest first (the caller's; all for admins)",
        params=(
            _PIPELINE_STATUS,
            Param(
                "owner",
                {"type": "string", "minLength": 1, "maxLength": MAX_OWNER_LENGTH},
                description="admins only: one user's pipelines",
            ),
            *_PAGE,
        ),
        answers={200: ("a page", "PipelineListing")},
        errors=(400, 401, 403, 404, 422),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/pipelines/{pipeline_id}",
        "get_pipeline",
        "getPipeline",
        "one pipeline with each step's job id and status (owner or admin; another user's answers 404)",
        answers={200: ("the pipeline", "Pipeline")},
        errors=(401, 403, 404),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/pipelines/{pipeline_id}:cancel",
        "cancel_pipeline",
        "cancelPipeline",
        "cancel every step that has not ended (running ones cooperatively, a fan-out with its children)",
        answers={
            200: ("cancelled: no step runs any more", "Pipeline"),
            202: ("a running step was asked to stop; the pipeline ends cancelled when it does", "Pipeline"),
        },
        errors=(401, 403, 404, 409),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/pipelines/{pipeline_id}:retry",
        "retry_pipeline",
        "retryPipeline",
        "run a failed pipeline's failed steps again and the steps skipped because of them",
        answers={200: ("running again", "Pipeline")},
        errors=(401, 403, 404, 409),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/access",
        "access_list",
        "accessList",
        "users holding jobrelay claims, one page of the project's users (operators)",
        "operator",
        params=(Param("page_token", {"type": "string"}),),
        answers={200: ("users with access", "AccessUsers")},
        errors=(400, 401, 403, 404),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/access/log",
        "access_log",
        "accessLog",
        "access changes, newest first (operators)",
        "operator",
        params=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),),
        answers={200: ("log entries", "AccessLog")},
        errors=(400, 401, 403, 404, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/access:grant",
        "access_grant",
        "accessGrant",
        "give a user the admin claim and/or roles (operators; audited in access_log)",
        "operator",
        body="AccessChange",
        answers={200: ("what changed (the token refresh brings it to the user)", "AccessOutcome")},
        errors=(400, 401, 403, 404, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/access:revoke",
        "access_revoke",
        "accessRevoke",
        "take the admin claim and/or roles from a user (operators; audited in access_log)",
        "operator",
        body="AccessChange",
        answers={200: ("what changed (the token refresh brings it to the user)", "AccessOutcome")},
        errors=(400, 401, 403, 404, 422),
    ),
    # -- flow control (jobrelay.flowcontrol, docs/flow-control.md) ---------------------------------
    Route(
        "POST",
        "/v1/envs/{env}/jobs:cancel",
        "bulk_cancel",
        "bulkCancel",
        "cancel every job a filter selects (dry_run first): owners their own, operators anyone's",
        body="BulkCancelRequest",
        description=(
            "The filter (type, status, labels, owner, created_before) must select something: an empty one is "
            "refused, never read as every job. dry_run answers the count (and a few ids). Otherwise a bulk "
            "operation starts (202) that cancels them a page at a time, waiting jobs at once and running ones "
            "asked to stop; GET .../operations/{operation_id} follows it. 200 when nothing matched."
        ),
        answers={
            200: ("dry run, or nothing matched", "BulkCancelAnswer"),
            202: ("the operation that cancels them started", "BulkCancelAnswer"),
        },
        errors=(400, 401, 403, 404, 413, 422),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/operations/{operation_id}",
        "get_operation",
        "getOperation",
        "a bulk operation as it goes (whoever started it, or operators)",
        answers={200: ("the operation", "Operation")},
        errors=(401, 403, 404),
    ),
    Route(
        "GET",
        "/v1/envs/{env}/types",
        "types",
        "jobTypes",
        "every job type offered in the env: paused or not (since when, by whom, why), its circuit breaker, how many "
        "of its jobs wait and run (operators)",
        "operator",
        answers={200: ("the types", "TypeStates")},
        errors=(401, 403, 404),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/types/{job_type}:pause",
        "pause",
        "pauseType",
        "pause a job type: submits are still accepted, its deliveries wait and use no attempt (operators)",
        "operator",
        body="PauseRequest",
        answers={200: ("paused (changed: false when it already was)", "PauseAnswer")},
        errors=(400, 401, 403, 404, 413, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/types/{job_type}:resume",
        "resume",
        "resumeType",
        "resume a paused job type; the jobs that waited are dispatched, oldest first (operators)",
        "operator",
        body="ResumeRequest",
        body_required=False,
        answers={200: ("resumed (changed: false when it was not paused)", "ResumeAnswer")},
        errors=(400, 401, 403, 404, 413, 422),
    ),
)

# Promotion between envs (jobrelay.promotion, docs/adr/0019).
ROUTES += (
    Route(
        "GET",
        "/v1/envs/{env}/promotions/{kind}/{source_id}",
        "promotion_source",
        "promotionSource",
        "step 1 of a promotion, in the source env: the spec a job, schedule or pipeline would promote (operators)",
        "operator",
        params=(Param("to", {"type": "string", "enum": ["dev", "stg", "prod"]}, description="the next env"),),
        answers={200: ("the spec and the promotions made before", "PromotionSource")},
        errors=(401, 403, 404, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/promotions",
        "promote",
        "promote",
        "step 2, in the target env: run a promoted spec as a new job (or pipeline) carrying promoted_from (operators)",
        "operator",
        body="PromotionRequest",
        answers={
            202: ("the promoted job or pipeline", "Promoted"),
            200: ("promoted before: the first one", "Promoted"),
        },
        errors=(400, 401, 403, 404, 409, 413, 422),
    ),
    Route(
        "POST",
        "/v1/envs/{env}/promotions/{kind}/{source_id}:record",
        "promotion_record",
        "promotionRecord",
        "step 3, in the source env: record promoted_to on the job, schedule or pipeline promoted (operators)",
        "operator",
        body="PromotionRecord",
        answers={200: ("the source's promotions", "PromotionLinks")},
        errors=(400, 401, 403, 404, 422),
    ),
)

# The operator console's files and configuration (jobrelay.console): served, not part of the JSON API
# nor of its OpenAPI document.
CONSOLE_ROUTES: tuple[Route, ...] = (
    Route("GET", "/console/config.json", "console_config", "consoleConfig", "the console's envs", "anyone"),
    Route("GET", "/console/{asset}", "console_asset", "consoleAsset", "the console's built files", "anyone"),
    # Last: its pattern (like every route's) also takes a trailing slash, which the one above answers.
    Route("GET", "/console", "console_home", "consoleHome", "to /console/", "anyone"),
)
