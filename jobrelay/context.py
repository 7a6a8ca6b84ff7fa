"""What a job handler sees: its `JobContext` (who it is, progress, log, cancellation, secrets).

This is the job author's side of jobrelay, kept apart from the engine that runs deliveries
(`jobrelay.runtime`), as Temporal's SDK keeps `activity` apart from its worker. The runner hands a
context an `Output` buffer and a cancellation event it owns; the handler writes to the buffer and
reads the event, and the runner drains the one and sets the other. Nothing here imports the runner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from jobrelay.errors import JobCancelled
from jobrelay.models import Job, Progress


class Platform(Protocol):
    """What jobrelay's own housekeeping jobs (`jobrelay.builtin`) may ask of the process they run in."""

    def maintenance(self, env: str) -> dict[str, Any]: ...

    def cleanup(self, env: str) -> dict[str, Any]: ...

    def operation(self, env: str, operation_id: str, ctx: JobContext) -> dict[str, Any]: ...


class Output:
    """A handler's progress and log lines since the runner last wrote them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._dirty = False
        self._lines: list[str] = []

    def progress(self, value: Progress) -> None:
        with self._lock:
            self._progress, self._dirty = value, True

    def line(self, text: str) -> None:
        with self._lock:
            self._lines.append(text)

    def drain(self) -> tuple[Progress | None, list[str]]:
        """What changed since the last drain: new progress (or None) and new lines."""
        with self._lock:
            progress = self._progress if self._dirty else None
            lines, self._lines = self._lines, []
            self._dirty = False
            return progress, lines

    def last_progress(self) -> Progress | None:
        with self._lock:
            return self._progress


class JobContext:
    """What a handler gets besides its payload: who it is, progress, cancellation, secrets, a logger."""

    def __init__(
        self,
        *,
        env: str,
        project: str,
        job: Job,
        secrets: Mapping[str, str],
        cancel: threading.Event | None = None,
        output: Output | None = None,
        platform: Platform | None = None,
    ) -> None:
        self.env = env
        self.project = project
        self.job_id = job.id
        self.type = job.type
        self.job_class = job.job_class
        self.attempt = job.attempt
        self.labels = dict(job.labels)
        self.secrets: Mapping[str, str] = secrets
        # The hosting process's services, for jobrelay's own housekeeping jobs only.
        self.platform = platform
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"jobs.{job.type}"),
            {
                "labels": {
                    "env": env,
                    "job_id": job.id,
                    "type": job.type,
                    "class": job.job_class,
                    "attempt": job.attempt,
                }
            },
        )
        self._cancel = cancel if cancel is not None else threading.Event()
        self._output = output if output is not None else Output()

    def firestore(self) -> Any:
        """The Firestore client of this job's own env (server SDK: security rules do not apply)."""
        from jobrelay import clients

        return clients.firestore_client(self.project)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled (or timed out, or the worker is handing it back)."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job should stop now."""
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.job_id} was asked to stop")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on cancel; True when cancelled."""
        return self._cancel.wait(seconds)

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; written to the job document at most about once a second."""
        self._output.progress(Progress(done=done, total=total, message=message))

    def log(self, line: str) -> None:
        """Append a line to the job's log tail (shown with the job) and to the logs."""
        self.logger.info(line)
        self._output.line(line)
