"""Test helpers for job authors: call a handler directly, or run jobs on the local stack.

    from jobrelay.testing import FakeContext, run_handler

    ctx = FakeContext(secrets={"API_KEY": "x"}, cancel_after=3)
    result = run_handler(my_handler, {"field": "value"}, ctx=ctx)
    assert ctx.progress_updates[-1].done == 10 and ctx.lines == ["..."]

`FakeContext` is a real `JobContext` (what the runner hands a handler) that records instead of
writing: every progress report (unthrottled), every log line, every look at cancellation, every
secret read, every spawned child spec (`spawned_specs`); `wait()` returns at once; `results` are the
ones given (`results={"export": {...}}`, as the steps it comes after returned them). It needs no
emulator; `firestore()` works only when given a client or when an emulator is configured (the
`jobrelay_stack` fixture of `jobrelay.testing.pytest`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from jobrelay.context import JobContext
from jobrelay.models import Job, Progress, Status, now
from jobrelay.registry import JobType, registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from jobrelay.client import JobrelayClient

__all__ = ["FakeContext", "LocalStack", "run_handler"]


class _RecordingSecrets(Mapping[str, str]):
    """The env's secrets as a handler sees them, noting which ones it read."""

    def __init__(self, values: Mapping[str, str], read: list[str]) -> None:
        self._values = dict(values)
        self._read = read

    def __getitem__(self, key: str) -> str:
        self._read.append(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _GivenResults:
    """`ctx.results` of a FakeContext: the values a test gave, by step job id (no children)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def result(self, job_id: str) -> Any:
        return self._values[job_id]

    def children(self, parent_id: str) -> Iterator[tuple[str, str, Any]]:
        return iter(())


class FakeContext(JobContext):
    """A `JobContext` for calling a handler in a test: it records, it does not write.

    `cancel_after=n` makes the n-th look at cancellation (`cancelled`, `check_cancelled()`,
    `wait()`) find the job cancelled; `cancel()` cancels it at once.
    """

    def __init__(
        self,
        *,
        env: str = "dev",
        project: str | None = None,
        job_type: str = "test",
        job_class: str = "B",
        job_id: str = "fake-job-000001",
        attempt: int = 1,
        max_attempts: int = 3,
        labels: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        cancel_after: int | None = None,
        firestore: Any = None,
        results: Mapping[str, Any] | None = None,
    ) -> None:
        job = Job.model_validate(
            {
                "id": job_id,
                "env": env,
                "type": job_type,
                "class": job_class,
                "status": Status.RUNNING,
                "owner": "test",
                "attempt": attempt,
                "max_attempts": max_attempts,
                "timeout_seconds": 60,
                "labels": dict(labels or {}),
                "created_at": now(),
                "upstream": {step: f"fake-step-{step}" for step in results or {}},
            }
        )
        self.secrets_read: list[str] = []
        self.spawned_specs: list[Any] = []
        given = dict(results or {})
        super().__init__(
            env=env,
            project=project or f"fake-{env}",
            job=job,
            secrets=_RecordingSecrets(secrets or {}, self.secrets_read),
            cancel=threading.Event(),
            spawner=self._record_spawn,
            results=_GivenResults({f"fake-step-{step}": value for step, value in given.items()}),
        )
        self.progress_updates: list[Progress] = []
        self.lines: list[str] = []
        self.cancel_checks = 0
        self.waits: list[float] = []
        self._cancel_after = cancel_after
        self._firestore = firestore

    # -- what the handler calls --------------------------------------------------------------

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        super().progress(done, total, message)
        self.progress_updates.append(Progress(done=done, total=total, message=message))

    def log(self, line: str) -> None:
        super().log(line)
        self.lines.append(line)

    def last_progress(self) -> Progress | None:
        """The progress the runner would write with the job's end (the last one reported)."""
        return self._output.last_progress()

    @property
    def cancelled(self) -> bool:
        self._looked()
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        self._looked()
        super().check_cancelled()

    def wait(self, seconds: float) -> bool:
        """Returns at once (a test does not sleep): True when the job is cancelled."""
        self.waits.append(seconds)
        self._looked()
        return self._cancel.is_set()

    def firestore(self) -> Any:
        if self._firestore is not None:
            return self._firestore
        if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            raise RuntimeError(
                "FakeContext.firestore(): no Firestore here; pass FakeContext(firestore=client), or use the "
                "jobrelay_stack fixture (jobrelay.testing.pytest), whose context() reaches the local emulator"
            )
        return super().firestore()

    def _record_spawn(self, parent: Job, specs: Any, start: int, cancelled: Any = None) -> list[str]:
        self.spawned_specs.extend(specs)
        return [f"fake-child-{start + i}" for i in range(len(specs))]

    # -- what the test calls -----------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the job now, as a user's cancel request would."""
        self._cancel.set()

    def _looked(self) -> None:
        self.cancel_checks += 1
        if self._cancel_after is not None and self.cancel_checks >= self._cancel_after:
            self._cancel.set()


def _job_type_of(handler: Callable[..., Any] | JobType | str) -> JobType | None:
    if isinstance(handler, JobType):
        return handler
    if isinstance(handler, str):
        found = registry.get(handler)
        if found is None:
            raise LookupError(f"no job type {handler!r} is registered (import the module that declares it)")
        return found
    return next((jt for jt in registry.types.values() if jt.handler is handler), None)


def run_handler(
    handler: Callable[..., Any] | JobType | str,
    payload: Mapping[str, Any] | BaseModel,
    *,
    ctx: FakeContext | None = None,
    infra: Any = None,
    **context: Any,
) -> Any:
    """Call a job type's handler as the runner would, and return its result as the job would store it.

    `handler` is the decorated function, its `JobType` or its name. A dict payload is validated by the
    type's payload model first (a bad one raises pydantic's ValidationError, as submit would refuse
    it); `infra` is handed to validators that need the settings (the built-in `script` type).
    Without `ctx`, a `FakeContext(**context)` is made. Whatever the handler raises (`Retry`, `Fatal`,
    `JobCancelled`, ...) is raised here. The result must be JSON, as it must be to be stored.
    """
    jt = _job_type_of(handler)
    if ctx is None:
        if jt is not None:
            context.setdefault("job_type", jt.name)
            context.setdefault("job_class", jt.job_class)
        ctx = FakeContext(**context)
    elif context:
        raise TypeError("give either ctx or FakeContext arguments, not both")
    if isinstance(payload, BaseModel):
        model = payload
    elif jt is not None:
        model = jt.payload.model_validate(dict(payload), context={"infra": infra, "env": ctx.env})
    else:
        raise TypeError(f"{handler!r} is not a registered job type: pass its payload as the model instance")
    fn = jt.handler if jt is not None else handler
    assert callable(fn)
    result = fn(model, ctx)
    stored = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    json.dumps(stored)  # raises TypeError as storing the job's result would
    return stored


@dataclass(frozen=True)
class LocalStack:
    """A running local stack, as a test sees it: API clients, each env's Firestore, contexts."""

    api: str
    projects: Mapping[str, str]
    state_dir: Path

    @classmethod
    def read(cls, state_dir: Path) -> LocalStack:
        """The stack whose `local.json` is in `state_dir` (a `jobrelay dev up`, or one a fixture started)."""
        data = json.loads((state_dir / "local.json").read_text())
        return cls(
            api=data["api"],
            projects={env: info["project"] for env, info in data["envs"].items()},
            state_dir=state_dir,
        )

    def emulator_env(self) -> dict[str, str]:
        """The variables that point Google clients at this stack's emulators."""
        data = json.loads((self.state_dir / "local.json").read_text())
        return {
            "FIRESTORE_EMULATOR_HOST": data["firestore"],
            "PUBSUB_EMULATOR_HOST": data["pubsub"],
            "CLOUD_TASKS_EMULATOR_HOST": data["cloudtasks"],
            "FIREBASE_AUTH_EMULATOR_HOST": data["auth"]["host"],
        }

    def client(
        self, env: str = "dev", uid: str = "tester", *, admin: bool = False, roles: tuple[str, ...] = ()
    ) -> JobrelayClient:
        """A `JobrelayClient` of the API, `uid` signed in through the stack's Auth emulator with these claims."""
        from jobrelay.client import JobrelayClient
        from jobrelay.connection import emulator_token_source

        host = json.loads((self.state_dir / "local.json").read_text())["auth"]["host"]
        source = emulator_token_source(host, self.projects[env], uid, admin=admin, roles=roles)
        return JobrelayClient(self.api, env, source)

    def firestore(self, env: str = "dev") -> Any:
        """The server-side Firestore client of `env`'s local project (no security rules)."""
        from google.cloud import firestore

        # The client takes the emulator's address when it is made; the variable is put back after.
        saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.emulator_env()["FIRESTORE_EMULATOR_HOST"]
        try:
            return firestore.Client(project=self.projects[env])
        finally:
            if saved is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST")
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = saved

    def context(self, env: str = "dev", **kwargs: Any) -> FakeContext:
        """A `FakeContext` whose `firestore()` is `env`'s Firestore on this stack."""
        return FakeContext(env=env, project=self.projects[env], firestore=self.firestore(env), **kwargs)
