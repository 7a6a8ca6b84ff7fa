"""Every error jobrelay raises, in one tree.

    JobrelayError
    ├── SettingsError            a settings file is wrong: names the file, the key and the reason
    ├── ApiError                 the answer a caller gets: HTTP status, code, message, details
    │   ├── BadRequest           400  malformed JSON, wrong shape
    │   ├── Unauthenticated      401  missing, malformed, expired or foreign token
    │   ├── PermissionDenied     403  the caller may not use this env, job type or job
    │   ├── NotFound             404  no such env, job, schedule or dead letter
    │   ├── Conflict             409  the job is not in a state that allows this
    │   ├── PayloadTooLarge      413  the body or payload is over the limit
    │   ├── Unprocessable        422  valid JSON that fails validation (unknown type, bad payload)
    │   ├── RateLimited          429  the caller's quota is used up
    │   └── Unavailable          503  a dependency is down (token keys cannot be fetched): retry later
    ├── JobError                 raised by a job handler to steer its retries
    │   ├── Retry(delay=)        try again, not before `delay` seconds
    │   └── Fatal                stop now: no more attempts, dead-letter the job
    ├── JobCancelled             the job was cancelled while it ran (raised by ctx.check_cancelled())
    ├── JobTimeout               the handler ran past its timeout (counts as a retryable failure)
    └── TransitionRefused        a state change the job's current state does not allow

Any other exception from a handler follows the job type's retry policy.
"""

from __future__ import annotations

from typing import Any


class JobrelayError(Exception):
    """Base of every jobrelay error."""


class SettingsError(JobrelayError):
    """A settings file is missing, malformed or inconsistent."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file, self.key, self.reason = file, key, reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")


class ApiError(JobrelayError):
    """An error the API answers with `{"error": {"code", "message", "details"}}`."""

    status = 500
    code = "internal"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class PermissionDenied(ApiError):
    status, code = 403, "permission_denied"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class Unprocessable(ApiError):
    status, code = 422, "invalid"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """Something the answer depends on cannot be reached now; the caller should retry after `retry_after` s."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, retry_after: int = 5, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class JobError(JobrelayError):
    """Raised by a handler to steer what happens next."""

    retryable = True


class Retry(JobError):
    """Ask for another attempt, not before `delay` seconds (None: the queue's backoff decides)."""

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Fatal(JobError):
    """Stop now: the job fails for good and is dead-lettered."""

    retryable = False


class JobCancelled(JobrelayError):
    """The job was cancelled while it ran."""


class JobTimeout(JobrelayError):
    """The handler ran past its timeout."""


class TransitionRefused(JobrelayError):
    """A state change the job's current state does not allow."""

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        self.job_id, self.current, self.wanted = job_id, current, wanted
        super().__init__(f"job {job_id} is {current}; cannot move to {wanted}")
