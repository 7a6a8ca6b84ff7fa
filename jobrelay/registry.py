"""The job types a deployment offers, declared with a decorator next to their handlers.

    class ReportPayload(BaseModel):
        collection: str

    @job_type("report", payload=ReportPayload, job_class="B", roles=("analyst",))
    def report(payload: ReportPayload, ctx: JobContext) -> dict[str, int]:
        ...

The handler receives the validated payload and a `JobContext`; what it returns (JSON-serialisable,
or a pydantic model) becomes the job's result. `concurrency=("tenant:{tenant_id}", 2)` gives every job
of the type a concurrency key made from its payload's fields, with its limit; callers cannot set
their own (docs/flow-control.md).
"""

from __future__ import annotations

import importlib
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from jobrelay.context import JobContext
from jobrelay.models import MAX_CONCURRENCY_LIMIT

if TYPE_CHECKING:
    from jobrelay.settings import Infra

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[Any, JobContext], Any]
# jobrelay's own job types (the maintenance pass, the clean-up): never offered to callers.
INTERNAL_PREFIX = "jobrelay."


@dataclass(frozen=True)
class Needs:
    """Who may submit one particular payload of a job type (an allow-listed script, say).

    Admins always may; otherwise any caller when `anyone`, else a caller holding one of `roles`;
    no roles and not `anyone` means operators (admins) only.
    """

    what: str  # what the payload asks for, as the refusal names it: "script 'firestore-export'"
    roles: tuple[str, ...] = ()
    anyone: bool = False


# Given the validated payload and the settings, who may submit it (None: whoever may submit the type).
PayloadNeeds = Callable[[Any, "Infra"], Needs | None]


def template_fields(template: str, payload: type[BaseModel]) -> tuple[str, ...]:
    """The payload fields a concurrency key template names (`{field}` only); ValueError when it is not one."""
    names: list[str] = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"concurrency key template {template!r}: only {{field}} of the payload, got {{{name}}}")
        if name not in payload.model_fields:
            raise ValueError(f"concurrency key template {template!r}: the payload has no field {name!r}")
        names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class JobType:
    """One registered job type and its policy."""

    name: str
    handler: Handler
    payload: type[BaseModel]
    job_class: str = "B"
    timeout_seconds: int | None = None  # None: the class's timeout
    max_attempts: int | None = None  # None: the class's retry max_attempts
    roles: tuple[str, ...] = ()  # a submitter needs one of these roles; () = anyone allowed in the env
    test_only: bool = False  # offered only in envs with allow_test_jobs
    heavy: bool = False  # always runs on the Elastic Muscle pool
    description: str = ""
    needs: PayloadNeeds | None = None  # further access rules that depend on the payload
    concurrency: tuple[str, int] | None = None  # (key template from payload fields, limit): callers cannot override

    @property
    def internal(self) -> bool:
        return self.name.startswith(INTERNAL_PREFIX)


@dataclass
class Registry:
    """Job types by name."""

    types: dict[str, JobType] = field(default_factory=dict)

    def register(self, jt: JobType) -> JobType:
        existing = self.types.get(jt.name)
        if existing is not None and existing.handler is not jt.handler:
            raise ValueError(f"job type {jt.name!r} is registered twice")
        self.types[jt.name] = jt
        return jt

    def get(self, name: str) -> JobType | None:
        return self.types.get(name)

    def names(self) -> list[str]:
        return sorted(self.types)

    def job_type(
        self,
        name: str,
        *,
        payload: type[P],
        job_class: str = "B",
        timeout_seconds: int | None = None,
        max_attempts: int | None = None,
        roles: Iterable[str] = (),
        test_only: bool = False,
        heavy: bool = False,
        needs: Callable[[P, Infra], Needs | None] | None = None,
        concurrency: tuple[str, int] | None = None,
    ) -> Callable[[Callable[[P, JobContext], Any]], Callable[[P, JobContext], Any]]:
        """Decorator: register the function as the handler of job type `name`."""
        if concurrency is not None:
            template, limit = concurrency
            template_fields(template, payload)
            if not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
                raise ValueError(f"job type {name!r}: a concurrency limit is 1-{MAX_CONCURRENCY_LIMIT}, got {limit}")

        def register(fn: Callable[[P, JobContext], Any]) -> Callable[[P, JobContext], Any]:
            self.register(
                JobType(
                    name=name,
                    handler=fn,
                    payload=payload,
                    job_class=job_class,
                    timeout_seconds=timeout_seconds,
                    max_attempts=max_attempts,
                    roles=tuple(roles),
                    test_only=test_only,
                    heavy=heavy,
                    description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
                    needs=needs,
                    concurrency=concurrency,
                )
            )
            return fn

        return register


registry = Registry()
job_type = registry.job_type


def import_job_modules(modules: str | Iterable[str]) -> Registry:
    """Import the modules that declare job types (comma-separated or a list); returns the registry."""
    names = modules.split(",") if isinstance(modules, str) else list(modules)
    for mod in names:
        mod = mod.strip()
        if mod:
            importlib.import_module(mod)
    return registry
