"""The composition root: settings, clients, stores and services of one process, built once.

Entry points (`functions/`, `services/`) call `Deployment.from_env()` at start-up and hand the pieces
to their request handlers; tests build one against the emulators the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from jobrelay import clients
from jobrelay.auth import Authenticator, assert_deployable
from jobrelay.infra_files import load_infra
from jobrelay.process_settings import RuntimeSettings
from jobrelay.registry import Registry, import_job_modules
from jobrelay.settings import Infra
from jobrelay.store import JobStore

# The parts a process may never use load on first use: the dead-letter service records documents
# and needs no runner, dispatcher or submit path; their imports are a third of its cold start.
if TYPE_CHECKING:
    from jobrelay.access import AccessManager
    from jobrelay.console import Console
    from jobrelay.context import JobContext
    from jobrelay.dispatch import Dispatcher
    from jobrelay.flow import Flow
    from jobrelay.flowcontrol import FlowControl
    from jobrelay.intake import Intake
    from jobrelay.operator import Operator
    from jobrelay.pipelines import PipelineService
    from jobrelay.promotion import Promotions
    from jobrelay.quotas import QuotaGuard
    from jobrelay.runtime import Runner
    from jobrelay.scheduling import Cron
    from jobrelay.secrets import SecretSource
    from jobrelay.service import JobService


@dataclass
class Deployment:
    """Everything one process needs, for the envs it serves."""

    settings: RuntimeSettings
    infra: Infra
    registry: Registry
    _access: dict[str, AccessManager] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, *, job_types: bool = True, schedules: bool = False, **overrides: Any) -> Deployment:
        """Read `JOBRELAY_*` and `infra/`, refuse an unsafe configuration, import the job types.

        `schedules=True` (the API, which Cloud Scheduler calls) also refuses to start when a schedule
        names an unknown job type or a payload its schema refuses. `job_types=False` is for a process
        that runs no jobs (the dead-letter service).
        """
        settings = RuntimeSettings(**overrides)
        assert_deployable(settings)
        infra = load_infra(settings.infra_dir)
        modules = ["jobrelay.builtin", *settings.job_modules.split(",")] if job_types or schedules else []
        registry = import_job_modules(modules)
        if schedules:
            from jobrelay.cron import check_schedules

            check_schedules(infra, registry)
        return cls(settings=settings, infra=infra, registry=registry)

    @property
    def env_names(self) -> tuple[str, ...]:
        return self.settings.env_names

    def identity(self, env: str) -> str | None:
        """The service account this process acts as in `env` (None: its own, one env per deployment)."""
        return self.infra.env(env).service_accounts.muscle if self.settings.impersonate else None

    @cached_property
    def stores(self) -> Mapping[str, JobStore]:
        return {
            name: JobStore(clients.firestore_client(self.infra.env(name).project, self.identity(name)), name)
            for name in self.env_names
        }

    @cached_property
    def dispatchers(self) -> Mapping[str, Dispatcher]:
        from jobrelay.dispatch import Dispatcher

        return {
            name: Dispatcher(
                self.infra,
                self.settings,
                clients.tasks_client(self.identity(name)),
                _LazyPublisher(self.identity(name)),
                published_hook=lambda env, job, n: self.stores[env.name].mark_published(job.id, n),
            )
            for name in self.env_names
        }

    @cached_property
    def auth(self) -> Authenticator:
        return Authenticator(self.settings)

    @cached_property
    def quotas(self) -> QuotaGuard:
        from jobrelay.models import Status
        from jobrelay.quotas import QuotaGuard

        def count_waiting(env: str, uid: str) -> int:
            from google.cloud import firestore

            q: Any = (
                self.stores[env]
                .jobs.where(filter=firestore.FieldFilter("owner", "==", uid))
                .where(filter=firestore.FieldFilter("status", "in", [Status.QUEUED.value, Status.RETRYING.value]))
            )
            result: Any = q.count().get()
            return int(result[0][0].value)

        return QuotaGuard(count_waiting=count_waiting)

    @cached_property
    def service(self) -> JobService:
        from jobrelay.service import JobService

        return JobService(
            self.infra,
            self.registry,
            self.stores,
            self.dispatchers,
            self.quotas,
            self.flow,
            overlap=self.settings.submit_overlap,
        )

    @cached_property
    def operator(self) -> Operator:
        from jobrelay.operator import Operator

        return Operator(
            self.infra,
            self.stores,
            self.flow,
            lambda env: clients.tasks_client(self.identity(env)),
            paused=lambda env: self.flow_control.paused(env),
        )

    @cached_property
    def cron(self) -> Cron:
        from jobrelay.scheduling import Cron

        return Cron(self.infra, self.stores, self.service, lambda: self.pipelines)

    @cached_property
    def pipelines(self) -> PipelineService:
        from jobrelay.pipelines import PipelineService

        return PipelineService(self.service, self.flow)

    @cached_property
    def intake(self) -> Intake:
        """Job requests (`job_requests/{id}`) into jobs: their events and the maintenance pass's sweep."""
        from datetime import timedelta

        from jobrelay.appcheck import AppCheckVerifier
        from jobrelay.intake import Intake, Owners

        return Intake(
            self.service,
            Owners(),
            AppCheckVerifier(self.settings),
            sweep_after=timedelta(seconds=self.settings.request_sweep_seconds),
        )

    @cached_property
    def promotions(self) -> Promotions:
        """Promotion of specs between envs (ADR 0019); pipelines join once the pipelines module exists."""
        from jobrelay.promotion import Promotions

        return Promotions(self.infra, self.service)

    @cached_property
    def console(self) -> Console:
        from jobrelay.console import Console

        return Console(self.settings, self.infra, self.env_names)

    def access(self, env: str) -> AccessManager:
        """Who may do what in `env`: the Firebase custom claims operators grant and revoke (ADR 0014)."""
        manager = self._access.get(env)
        if manager is None:
            from jobrelay.access import AccessManager

            manager = AccessManager(self.service.env(env), self.stores[env].client, self.registry)
            self._access[env] = manager
        return manager

    @cached_property
    def secrets(self) -> SecretSource:
        from jobrelay.secrets import SecretSource

        return SecretSource(self.settings, self.infra)

    @cached_property
    def flow(self) -> Flow:
        """What follows a job's end (dead letter, cron outcome, dependents), for every served env."""
        from jobrelay.flow import Flow

        return Flow(
            self.infra,
            self.stores,
            dispatch=lambda env, job: self.service.dispatch_job(env, job),
            publisher_for=lambda env: clients.publisher_client(self.identity(env)),
            schedule_check=lambda env, parent, bucket, when: self.dispatchers[env].dispatch_check(
                self.infra.env(env), parent, bucket, when
            ),
            withdraw=lambda env, job: self.dispatchers[env].delete(self.infra.env(env), job),
            release_waiting=lambda env, job_type, by: self.flow_control.start_release(env, job_type, by),
        )

    @cached_property
    def flow_control(self) -> FlowControl:
        """Pauses, breakers and bulk operations (jobrelay.flowcontrol)."""
        from jobrelay.flowcontrol import FlowControl

        return FlowControl(self.infra, self.registry, self.stores, self.flow, self.service, self.dispatchers)

    def runner(self) -> Runner:
        from jobrelay.fanin import JobResults
        from jobrelay.fanout import Spawner
        from jobrelay.runtime import Runner, RunnerSettings

        return Runner(
            infra=self.infra,
            registry=self.registry,
            stores=self.stores,
            flow=self.flow,
            secrets_for=self.secrets.for_env,
            settings=RunnerSettings(lease_seconds=self.settings.lease_seconds),
            platform=self,
            spawner=Spawner(lambda: self.service),
            results=lambda env: JobResults(self.stores[env]),
        )

    # -- the platform housekeeping jobs use (jobrelay.builtin.Platform) ---------------------------

    def maintenance(self, env: str) -> dict[str, Any]:
        from jobrelay.maintenance import maintenance_pass

        report = maintenance_pass(self.infra.env(env), self.stores[env], self.dispatchers[env], self.flow)
        # Job requests whose event was lost (the API was down): docs/job-requests.md.
        return {**report.as_dict(), "requests": self.intake.sweep(env).as_dict()}

    def cleanup(self, env: str) -> dict[str, Any]:
        from jobrelay.maintenance import cleanup

        return cleanup(self.infra.env(env), self.stores[env].client).as_dict()

    def operation(self, env: str, operation_id: str, ctx: JobContext) -> dict[str, Any]:
        return self.flow_control.run_operation(env, operation_id, ctx)


class _LazyPublisher:
    """The Pub/Sub publisher, created on first use so the API's cold start does not pay for it."""

    def __init__(self, impersonate: str | None) -> None:
        self._impersonate = impersonate

    def __getattr__(self, name: str) -> Any:
        return getattr(clients.publisher_client(self._impersonate), name)
