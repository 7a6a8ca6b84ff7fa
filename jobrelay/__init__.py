"""jobrelay: batch jobs for Firebase apps on Google Cloud.

What job authors and apps use is exported here; everything else is internal. The names load
lazily, so `import jobrelay.settings` (the emulator, the CLI) does not pay for the Google clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobrelay.client import ClientError, JobrelayClient
    from jobrelay.context import JobContext
    from jobrelay.errors import Fatal, JobCancelled, JobError, Retry
    from jobrelay.models import Job, JobSpec, Progress, Status
    from jobrelay.registry import JobType, job_type

_WHERE = {
    "ClientError": "jobrelay.client",
    "JobrelayClient": "jobrelay.client",
    "Fatal": "jobrelay.errors",
    "JobCancelled": "jobrelay.errors",
    "JobError": "jobrelay.errors",
    "Retry": "jobrelay.errors",
    "Job": "jobrelay.models",
    "JobSpec": "jobrelay.models",
    "Progress": "jobrelay.models",
    "Status": "jobrelay.models",
    "JobType": "jobrelay.registry",
    "job_type": "jobrelay.registry",
    "JobContext": "jobrelay.context",
}

__all__ = [
    "ClientError",
    "Fatal",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobSpec",
    "JobType",
    "JobrelayClient",
    "Progress",
    "Retry",
    "Status",
    "job_type",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'jobrelay' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
