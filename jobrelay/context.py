"""What a job handler sees: its `JobContext` (who it is, progress, log, cancellation, secrets).

This is the job author's side of jobrelay, kept apart from the engine that runs deliveries
(`jobrelay.runtime`), as Temporal's SDK keeps `activity` apart from its worker. The runner hands a
context an `Output` buffer and a cancellation event it owns; the handler writes to the buffer and
reads the event, and the runner drains the one and sets the other. Nothing here imports the runner:
what `spawn()` and `results` need (creating child jobs, reading other jobs' results) comes in as a
`Spawner` and a `ResultSource`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from jobrelay.errors import JobCancelled
from jobrelay.models import Job, Progress


class Platform(Protocol):
    """What jobrelay's own housekeeping jobs (`jobrelay.builtin`) may ask of the process they run in."""

    def maintenance(self, env: str) -> dict[str, Any]: ...

    def cleanup(self, env: str) -> dict[str, Any]: ...

    def operation(self, env: str, operation_id: str, ctx: JobContext) -> dict[str, Any]: ...


class Spawner(Protocol):
    """Creates children `start`, `start + 1`, ... of a running job from job specs; returns their ids."""

    def __call__(
        self, parent: Job, specs: Sequence[Any], start: int, cancelled: Callable[[], bool] = ...
    ) -> list[str]: ...


class ResultSource(Protocol):
    """Reads what other jobs of the env returned: one job's result, a fan-out's children's results."""

    def result(self, job_id: str) -> Any: ...

    def children(self, parent_id: str) -> Iterator[tuple[str, str, Any]]: ...


class StepResults(Mapping[str, Any]):
    """`ctx.results`: the results of the steps this pipeline step comes after, read on first use.

    `ctx.results["export"]` is what that step's handler returned (a large one read from
    `job_results`); for a fan-out step it is `{"returned": ..., "children": {"total", "succeeded",
    "failed", "parent_id"}}`, and `ctx.results.children("export")` walks its children's
    (job id, status, result) in order, a page at a time. Only steps named in this step's `after`.
    """

    def __init__(self, upstream: Mapping[str, str], source: ResultSource | None = None) -> None:
        self._upstream = dict(upstream)
        self._source = source
        self._cache: dict[str, Any] = {}

    def job_id(self, step: str) -> str:
        """The job id of step `step` (one this step comes after)."""
        if step not in self._upstream:
            after = ", ".join(sorted(self._upstream)) or "none"
            raise KeyError(f"no results of step {step!r}: this step comes after {after}")
        return self._upstream[step]

    def __getitem__(self, step: str) -> Any:
        job_id = self.job_id(step)
        if step not in self._cache:
            if self._source is None:
                raise KeyError(f"results of step {step!r} cannot be read here (no result source)")
            self._cache[step] = self._source.result(job_id)
        return self._cache[step]

    def children(self, step: str) -> Iterator[tuple[str, str, Any]]:
        """(job id, status, result) of each child the fan-out step `step` spawned, in order."""
        job_id = self.job_id(step)
        if self._source is None:
            raise KeyError(f"children of step {step!r} cannot be read here (no result source)")
        return self._source.children(job_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._upstream)

    def __len__(self) -> int:
        return len(self._upstream)


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
        spawner: Spawner | None = None,
        results: ResultSource | None = None,
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
        self._job = job
        self._spawner = spawner
        # A pipeline step reads the results of the steps it comes after (by name) here.
        self.results = StepResults(job.upstream, results)
        # Children spawned by this run so far, and how many may fail for good (None: the job's own).
        self.spawned = 0
        self.allow_failed: int | None = None

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

    def spawn(self, specs: Sequence[Mapping[str, Any]], *, allow_failed: int | None = None) -> list[str]:
        """Create child jobs (job specs, as for a submit) of this job's env and owner; returns their ids.

        After the handler returns, the job waits (`waiting`, holding no request) until every child
        has ended, then succeeds with their counts, or fails when more than `allow_failed` of them
        failed for good (default: the step's `allow_failed_children`, else 0). Several calls add up,
        to at most 10,000 children. A later attempt of the job that spawns the same children again
        finds the ones it made (their ids come from the job and the child's index) and makes no
        duplicates. A spec the owner could not submit stops the job for good, naming the child.
        """
        if self._spawner is None:
            raise RuntimeError("spawn() needs the runner's spawner; jobrelay.testing.FakeContext records spawns")
        ids = self._spawner(self._job, list(specs), self.spawned, lambda: self._cancel.is_set())
        self.spawned += len(ids)
        if allow_failed is not None:
            if allow_failed < 0:
                raise ValueError("allow_failed must be 0 or more")
            self.allow_failed = allow_failed
        return ids
