"""Turning a handler's exception into the error a person reads on the job and groups dead letters by.

The fingerprint groups failures with the same cause: job type, exception type, the message with
numbers, ids and quoted values blanked, and the innermost frame of the handler's own code. Secret
values never reach the document: they are masked in the message and the stack.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from jobrelay.errors import Fatal, JobCancelled, JobError, JobTimeout, Retry
from jobrelay.models import ErrorInfo

_OWN_DIR = str(Path(__file__).resolve().parent) + "/"
MAX_MESSAGE = 2000
MAX_STACK = 4000
_VOLATILE = re.compile(
    r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27,}|\b[0-9a-f]{12,}\b|\d+(\.\d+)?|'[^']*'|\"[^\"]*\""
)
MASK = "***"


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value (of 4+ characters) in `text`."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def normalise(message: str) -> str:
    return _VOLATILE.sub("#", message)[:300]


def fingerprint(job_type: str, exc_type: str, message: str, frame: str = "") -> str:
    """A short stable id for failures of the same cause."""
    key = "|".join((job_type, exc_type, normalise(message), frame))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def retryable(exc: BaseException) -> bool:
    """Fatal and bad payloads stop at once; Retry, timeouts and anything else may try again."""
    if isinstance(exc, JobError):
        return exc.retryable
    return not isinstance(exc, JobCancelled)


def _innermost_own_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if "/site-packages/" not in fr.filename and not fr.filename.startswith(_OWN_DIR):
            return f"{fr.filename.rsplit('/', 1)[-1]}:{fr.name}"
    return frames[-1].name if frames else ""


def describe(
    exc: BaseException,
    *,
    job_type: str,
    attempt: int,
    at: datetime,
    secrets: Iterable[str] = (),
) -> ErrorInfo:
    """The ErrorInfo kept on the job for this failed attempt."""
    secrets = list(secrets)
    exc_type = type(exc).__name__
    message = mask(str(exc) or exc_type, secrets)[:MAX_MESSAGE]
    stack = (
        ""
        if isinstance(exc, Retry | Fatal | JobTimeout) and exc.__cause__ is None
        else "".join(traceback.format_exception(exc))
    )
    stack = mask(stack, secrets)
    if len(stack) > MAX_STACK:
        stack = "...\n" + stack[-MAX_STACK:]
    return ErrorInfo(
        type=exc_type,
        message=message,
        stack=stack,
        retryable=retryable(exc),
        fingerprint=fingerprint(job_type, exc_type, message, _innermost_own_frame(exc)),
        attempt=attempt,
        at=at,
    )
