"""Conversions between Cloud Tasks v2 protobuf messages and the engine's records.

We work on the raw protobuf classes behind the proto-plus types (`Type.pb()`): same wire format,
faster field access, and field presence for durations and timestamps. Validation of what a caller
sends (targets, deadlines, sizes, update masks) lives here, with the real API's error codes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from google.cloud.tasks_v2.types import cloudtasks, queue, target, task

from jobrelay.local.cloudtasks import errors
from jobrelay.local.cloudtasks.config import QueueSettings, RetryPolicy, make_rate_limits, make_retry
from jobrelay.local.cloudtasks.dispatch import USER_AGENT, HttpTarget
from jobrelay.local.cloudtasks.engine import QueueState, QueueView, Task

QueuePb: Any = queue.Queue.pb()
TaskPb: Any = task.Task.pb()
Requests: dict[str, Any] = {
    name: getattr(cloudtasks, name).pb()
    for name in (
        "ListQueuesRequest", "GetQueueRequest", "CreateQueueRequest", "UpdateQueueRequest",
        "DeleteQueueRequest", "PurgeQueueRequest", "PauseQueueRequest", "ResumeQueueRequest",
        "ListTasksRequest", "GetTaskRequest", "CreateTaskRequest", "DeleteTaskRequest", "RunTaskRequest",
        "ListQueuesResponse", "ListTasksResponse",
    )
}  # fmt: skip

BASIC = int(task.Task.View.BASIC)
FULL = int(task.Task.View.FULL)
_METHOD_NAMES = {int(value): name for name, value in target.HttpMethod.__members__.items()}
_METHOD_VALUES = {name: value for value, name in _METHOD_NAMES.items()}
MAX_TASK_BYTES = 100 * 1024
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600.0
DEFAULT_DEADLINE = 600.0
MIN_DEADLINE, MAX_DEADLINE = 15.0, 1800.0
_BODY_METHODS = {"POST", "PUT", "PATCH"}

# UpdateQueue mask paths. Output-only ones are accepted and ignored, as the API documents.
_RATE_PATHS = {
    "rate_limits",
    "rate_limits.max_dispatches_per_second",
    "rate_limits.max_concurrent_dispatches",
}
_RETRY_FIELDS = ("max_attempts", "max_retry_duration", "min_backoff", "max_backoff", "max_doublings")
_RETRY_PATHS = {"retry_config", *(f"retry_config.{f}" for f in _RETRY_FIELDS)}
_LOGGING_PATHS = {"stackdriver_logging_config", "stackdriver_logging_config.sampling_ratio"}
_ROUTING_FIELDS = ("service", "version", "instance", "host")
_ROUTING_PATHS = {
    "app_engine_routing_override",
    *(f"app_engine_routing_override.{f}" for f in _ROUTING_FIELDS),
}
_IGNORED_PATHS = {"name", "state", "purge_time", "rate_limits.max_burst_size"}
_CAMEL = re.compile(r"([A-Z])")
_STATE_VALUES = {
    QueueState.RUNNING: int(queue.Queue.State.RUNNING),
    QueueState.PAUSED: int(queue.Queue.State.PAUSED),
}


def _seconds(message: Any, field: str) -> float | None:
    """A Duration or Timestamp field as float seconds, None when unset."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    return float(value.seconds) + float(value.nanos) / 1e9


def _whole_seconds(message: Any, field: str) -> float | None:
    value = _seconds(message, field)
    return None if value is None else float(math.floor(value))


def _set_time(message: Any, seconds: float) -> None:
    # Microseconds, as the real service keeps them (a float's digits below that are noise).
    micros = round(seconds * 1e6)
    message.seconds = micros // 1_000_000
    message.nanos = (micros % 1_000_000) * 1000


def _retry_from_pb(rc: Any) -> RetryPolicy:
    return make_retry(
        max_attempts=rc.max_attempts or None,
        max_retry_duration=_whole_seconds(rc, "max_retry_duration"),
        min_backoff=_whole_seconds(rc, "min_backoff"),
        max_backoff=_whole_seconds(rc, "max_backoff"),
        max_doublings=rc.max_doublings or None,
    )


# -- queues ---------------------------------------------------------------------------------------


def settings_from_pb(pb: Any, current: QueueSettings | None, paths: Sequence[str]) -> QueueSettings:
    """The settings a Create/UpdateQueue asks for; empty `paths` means every field, as in the API."""
    paths = [_CAMEL.sub(lambda m: "_" + m.group(1).lower(), p) for p in paths]
    unknown = [
        p for p in paths if p not in _RATE_PATHS | _RETRY_PATHS | _LOGGING_PATHS | _ROUTING_PATHS | _IGNORED_PATHS
    ]
    if any(p == "http_target" or p.startswith("http_target.") for p in unknown):
        raise errors.unimplemented("Queue-level http_target overrides are not emulated; set the target on each task.")
    if unknown:
        raise errors.invalid(f"Invalid update_mask path(s) for Queue: {', '.join(unknown)}.")
    if not paths and pb.HasField("http_target"):
        raise errors.unimplemented("Queue-level http_target overrides are not emulated; set the target on each task.")
    base = current or QueueSettings()
    everything = not paths
    rate = pb.rate_limits
    if everything or "rate_limits" in paths:
        rate_limits = make_rate_limits(rate.max_dispatches_per_second, rate.max_concurrent_dispatches)
    else:
        rate_limits = make_rate_limits(
            rate.max_dispatches_per_second
            if "rate_limits.max_dispatches_per_second" in paths
            else base.rate_limits.max_dispatches_per_second,
            rate.max_concurrent_dispatches
            if "rate_limits.max_concurrent_dispatches" in paths
            else base.rate_limits.max_concurrent_dispatches,
        )
    rc = pb.retry_config
    if everything or "retry_config" in paths:
        retry = _retry_from_pb(rc)
    else:
        old = base.retry
        named = {p.removeprefix("retry_config.") for p in paths if p.startswith("retry_config.")}
        retry = make_retry(
            max_attempts=(rc.max_attempts or None) if "max_attempts" in named else old.max_attempts,
            max_retry_duration=_whole_seconds(rc, "max_retry_duration")
            if "max_retry_duration" in named
            else old.max_retry_duration,
            min_backoff=_whole_seconds(rc, "min_backoff") if "min_backoff" in named else old.min_backoff,
            max_backoff=_whole_seconds(rc, "max_backoff") if "max_backoff" in named else old.max_backoff,
            max_doublings=rc.max_doublings if "max_doublings" in named else old.max_doublings,
        )
    ratio = base.logging_sampling_ratio
    if everything or _LOGGING_PATHS & set(paths):
        ratio = pb.stackdriver_logging_config.sampling_ratio if pb.HasField("stackdriver_logging_config") else None
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            raise errors.invalid("StackdriverLoggingConfig.samplingRatio must be between 0.0 and 1.0.")
    routing = base.app_engine_routing_override
    if everything or _ROUTING_PATHS & set(paths):
        present = pb.HasField("app_engine_routing_override")
        routing = pb.app_engine_routing_override.SerializeToString() if present else None
    return QueueSettings(rate_limits, retry, ratio, routing)


def queue_to_pb(view: QueueView) -> Any:
    pb = QueuePb(name=view.name, state=_STATE_VALUES[view.state])
    limits = view.settings.rate_limits
    pb.rate_limits.max_dispatches_per_second = limits.max_dispatches_per_second
    pb.rate_limits.max_burst_size = limits.max_burst_size
    pb.rate_limits.max_concurrent_dispatches = limits.max_concurrent_dispatches
    retry = view.settings.retry
    pb.retry_config.max_attempts = retry.max_attempts
    pb.retry_config.max_doublings = retry.max_doublings
    _set_time(pb.retry_config.min_backoff, retry.min_backoff)
    _set_time(pb.retry_config.max_backoff, retry.max_backoff)
    if retry.max_retry_duration > 0:
        _set_time(pb.retry_config.max_retry_duration, retry.max_retry_duration)
    if view.purge_time is not None:
        _set_time(pb.purge_time, view.purge_time)
    if view.settings.logging_sampling_ratio is not None:
        pb.stackdriver_logging_config.sampling_ratio = view.settings.logging_sampling_ratio
    if view.settings.app_engine_routing_override is not None:
        pb.app_engine_routing_override.MergeFromString(view.settings.app_engine_routing_override)
    return pb


# -- tasks ----------------------------------------------------------------------------------------


def check_task_size(pb: Any) -> None:
    if pb.ByteSize() > MAX_TASK_BYTES:
        raise errors.invalid("Task size too large")  # the real service's words; the limit is 100 KB


def target_from_pb(pb: Any) -> HttpTarget:
    """The task's http_request, validated; App Engine targets are answered UNIMPLEMENTED."""
    kind = pb.WhichOneof("message_type")
    if kind == "app_engine_http_request":
        raise errors.unimplemented("App Engine targets are not emulated; this emulator dispatches http_request only.")
    if kind != "http_request":
        raise errors.invalid("Task.http_request is required.")
    hr = pb.http_request
    if not hr.url:
        raise errors.invalid("HttpRequest.url is required.")
    if not hr.url.startswith(("http://", "https://")):
        raise errors.invalid("HttpTarget.url must start with 'http://' or 'https://'.")
    if len(hr.url) > 2083:
        raise errors.invalid("HttpRequest.url must be at most 2083 characters.")
    method = _METHOD_NAMES.get(hr.http_method, "POST") if hr.http_method else "POST"
    if hr.body and method not in _BODY_METHODS:
        raise errors.invalid(f"HttpRequest.body is only allowed for POST, PUT and PATCH, not {method}.")
    email = audience = None
    auth = hr.WhichOneof("authorization_header")
    if auth == "oauth_token":
        raise errors.unimplemented("OAuth tokens (for *.googleapis.com targets) are not emulated; use oidc_token.")
    if auth == "oidc_token":
        if not hr.oidc_token.service_account_email:
            raise errors.invalid("OidcToken.serviceAccountEmail is required.")
        email = hr.oidc_token.service_account_email
        audience = hr.oidc_token.audience or None
    # The service stores its own User-Agent with the task, replacing the creator's.
    headers = [(k, v) for k, v in hr.headers.items() if k.lower() != "user-agent"]
    headers.append(("User-Agent", USER_AGENT))
    return HttpTarget(hr.url, method, tuple(headers), bytes(hr.body), email, audience)


def schedule_from_pb(pb: Any, now: float) -> float | None:
    when = _seconds(pb, "schedule_time")
    if when is not None and when > now + MAX_SCHEDULE_AHEAD:
        raise errors.invalid("Task.scheduleTime is too far in the future: at most 30 days ahead.")
    return when


def deadline_from_pb(pb: Any) -> float:
    deadline = _seconds(pb, "dispatch_deadline")
    if deadline is None:
        return DEFAULT_DEADLINE
    if not MIN_DEADLINE <= deadline <= MAX_DEADLINE:
        raise errors.invalid("Task.dispatchDeadline must be between 15 seconds and 30 minutes.")
    return deadline


def retry_from_pb(pb: Any) -> RetryPolicy | None:
    return _retry_from_pb(pb.retry_config) if pb.HasField("retry_config") else None


def task_to_pb(queue_name: str, record: Task, view: int) -> Any:
    """The task as the API shows it; BASIC leaves the body out."""
    view = view or BASIC
    pb = TaskPb(
        name=f"{queue_name}/tasks/{record.task_id}",
        dispatch_count=record.dispatch_count,
        response_count=record.response_count,
        view=view,
    )
    t = record.target
    hr = pb.http_request
    hr.url = t.url
    hr.http_method = _METHOD_VALUES[t.method]
    hr.headers.update(dict(t.headers))
    if view == FULL:
        hr.body = t.body
    if t.oidc_email is not None:
        hr.oidc_token.service_account_email = t.oidc_email
        hr.oidc_token.audience = t.oidc_audience or ""
    _set_time(pb.schedule_time, record.schedule_time)
    _set_time(pb.create_time, record.create_time)
    _set_time(pb.dispatch_deadline, record.dispatch_deadline)
    if record.first_dispatch_time is not None:
        _set_time(pb.first_attempt.dispatch_time, record.first_dispatch_time)
    attempt = record.last_attempt
    if attempt is not None:
        _set_time(pb.last_attempt.schedule_time, attempt.schedule_time)
        _set_time(pb.last_attempt.dispatch_time, attempt.dispatch_time)
        if attempt.response_time is not None:
            _set_time(pb.last_attempt.response_time, attempt.response_time)
            pb.last_attempt.response_status.code = attempt.status_code or 0
            pb.last_attempt.response_status.message = attempt.status_message
    if record.retry is not None:
        rc = pb.retry_config
        rc.max_attempts = record.retry.max_attempts
        rc.max_doublings = record.retry.max_doublings
        _set_time(rc.min_backoff, record.retry.min_backoff)
        _set_time(rc.max_backoff, record.retry.max_backoff)
        if record.retry.max_retry_duration > 0:
            _set_time(rc.max_retry_duration, record.retry.max_retry_duration)
    return pb
