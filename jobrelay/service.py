"""What the API does, without HTTP: submit, batch submit, get, list, cancel.

Every check happens before the first write, so a refused request changes nothing. A submitted job is
first recorded (the document is the source of truth), then dispatched; if the dispatch fails the job
stays `queued` and the maintenance pass dispatches it, so it is never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc

from jobrelay import debounce, dependencies, lifecycle, slots
from jobrelay.auth import Caller
from jobrelay.dispatch import Dispatcher
from jobrelay.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Refused,
    TransitionRefused,
    Unprocessable,
)
from jobrelay.flow import Flow
from jobrelay.lifecycle import Cancel
from jobrelay.models import JOB_ID_RULE, Job, Status, is_job_id, now
from jobrelay.prepare import Prepared, Preparer
from jobrelay.quotas import QuotaGuard
from jobrelay.registry import Registry
from jobrelay.settings import Environment, Infra, Route
from jobrelay.store import MAX_WRITES, Change, Fields, JobStore, SameCheck, to_job
from jobrelay.validation import MAX_OWNER_LENGTH, MAX_TYPE_LENGTH

log = logging.getLogger("jobrelay.service")

MAX_BATCH = 500


def _undispatched(job: Job, created: bool) -> bool:
    """Whether a submit (first or repeated) should dispatch the job: still waiting for its first
    delivery, and not a pool job whose message Pub/Sub already holds (it has no name to de-duplicate)."""
    if job.status != Status.QUEUED or job.waiting_on or job.dispatch_count != 0:
        return False
    if job.waiting_for is not None or (job.debounce is not None and not created):
        return False  # it waits for a slot (no task until one is handed to it), or its task exists
    return created or job.route == Route.TASKS.value or job.published_dispatch is None


class JobService:
    """Submit, read and cancel jobs of the envs this deployment serves."""

    def __init__(
        self,
        infra: Infra,
        registry: Registry,
        stores: Mapping[str, JobStore],
        dispatchers: Mapping[str, Dispatcher],
        quotas: QuotaGuard,
        flow: Flow,
        *,
        overlap: bool = False,
    ) -> None:
        self.infra = infra
        self.registry = registry
        self.stores = stores
        self.dispatchers = dispatchers
        self.quotas = quotas
        self.flow = flow  # what follows a cancelled job's end
        # Create a new job's document and its task at once (docs/adr/0012); the worker answers a
        # delivery that finds no document yet with "come back later".
        self.overlap = overlap
        self.preparer = Preparer(infra, registry)

    def env(self, name: str) -> Environment:
        if name not in self.stores:
            served = ", ".join(sorted(self.stores))
            raise NotFound(f"env {name!r} is not served here (served: {served})", {"env": name})
        return self.infra.env(name)

    def store(self, env: str) -> JobStore:
        self.env(env)
        return self.stores[env]

    # -- submit ---------------------------------------------------------------------------------

    def offered(self, env: Environment, caller: Caller) -> list[str]:
        """The job types `caller` may submit in `env` (jobrelay.prepare)."""
        return self.preparer.offered(env, caller)

    @staticmethod
    def _same(doc: Fields, existing: Job) -> None:
        """A stored job with the id of `doc` must be a repeat of the same request, or it is a 409."""
        if existing.spec_hash != doc["spec_hash"]:
            raise Conflict(
                f"idempotency key {doc['idempotency_key']!r} was already used for a different job "
                f"({existing.id}); use a new key for a new job",
                {"job_id": existing.id},
            )

    def submit(
        self,
        env_name: str,
        caller: Caller,
        raw: Any,
        *,
        trace_id: str | None = None,
        job_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """Record and dispatch one job; returns (job, created). A repeated key returns the first job.

        `extra`: fields recorded beside the spec's (a promotion's `promoted_from`)."""
        env = self.env(env_name)
        prepared = self.preparer.prepare(env, caller, raw, trace_id=trace_id, job_id=job_id)
        prepared.doc.update(extra or {})
        if job_id is None:
            self.quotas.check(env.name, caller.uid, env.quotas)
        store = self.stores[env.name]
        if self.overlap and job_id is None and self._surely_new(prepared):
            return self._create_and_dispatch(env, store, prepared), True
        if prepared.spec.debounce is not None:
            job, created = debounce.submit(store, prepared.doc, prepared.doc["created_at"])
        elif prepared.spec.depends_on:
            [(job, created)] = self._create_linked(store, env, caller, [prepared.doc])
        elif slots.takes_slot_at_submit(prepared.doc):  # a free slot now, or it waits without a task
            [(job, created)] = slots.create_all(store, [prepared.doc], self._same, prepared.doc["created_at"])
        else:
            job, created = store.create(prepared.doc)
            if not created:
                self._same(prepared.doc, job)
        if _undispatched(job, created):
            # A repeat of a still-queued job dispatches again: under the same task name, which Cloud
            # Tasks de-duplicates, or, on the pool route, only if no publish was ever recorded. So a
            # first submit whose dispatch failed, or whose process died before it, is healed at once.
            self._dispatch(env, job, prepared.due)
        return job, created

    @staticmethod
    def _surely_new(prepared: Prepared) -> bool:
        """A job whose random id no document can have yet, delivered by a Cloud Task of its own.

        A job with an idempotency key may exist already (a repeat must not create a task for it),
        one with dependencies waits, a debounced one may collapse into another, one with a
        concurrency key may wait for a slot, and a pool job's message is published only once recorded.
        """
        spec = prepared.spec
        return (
            spec.idempotency_key is None
            and not spec.depends_on
            and spec.debounce is None
            and prepared.doc.get("concurrency") is None
            and prepared.doc["route"] == Route.TASKS.value
        )

    def _create_and_dispatch(self, env: Environment, store: JobStore, prepared: Prepared) -> Job:
        """Create the document and the task concurrently: the submit waits for the longer of the two."""
        dispatcher = self.dispatchers[env.name]
        planned = to_job(prepared.doc)
        task = dispatcher.dispatch_soon(env, planned, n=0, when=prepared.due)
        try:
            job, _ = store.create(prepared.doc)
        except BaseException:
            # Not recorded, so it must not run: take the task back (or let its delivery find nothing).
            if task.exception() is None:
                dispatcher.delete(env, planned)
            raise
        error = task.exception()
        if isinstance(error, gexc.GoogleAPIError):
            # The job is recorded; the maintenance pass dispatches it. Say so loudly, lose nothing.
            log.error("job %s recorded but its dispatch failed (%s); maintenance will dispatch it", job.id, error)
        elif error is not None:
            raise error
        return job

    def submit_batch(
        self, env_name: str, caller: Caller, raw: Any, *, trace_id: str | None = None
    ) -> list[tuple[Job, bool]]:
        """Validate every spec first (all or nothing), then write and dispatch them concurrently."""
        env = self.env(env_name)
        if not isinstance(raw, dict) or not isinstance(raw.get("jobs"), list) or set(raw) - {"jobs"}:
            raise Unprocessable('a batch is {"jobs": [spec, ...]}', [{"field": "jobs", "problem": "missing"}])
        specs = raw["jobs"]
        if not specs:
            raise Unprocessable("a batch needs at least one job", [{"field": "jobs", "problem": "empty"}])
        if len(specs) > MAX_BATCH:
            raise PayloadTooLarge(
                f"a batch holds at most {MAX_BATCH} jobs; got {len(specs)}",
                {"field": "jobs", "count": len(specs), "limit": MAX_BATCH},
            )
        prepared: list[Prepared] = []
        for i, spec in enumerate(specs):
            try:
                prepared.append(
                    self.preparer.prepare(env, caller, spec, trace_id=trace_id, field_prefix=f"jobs.{i}.", batch=True)
                )
            except Refused as exc:
                exc.message = f"jobs[{i}]: {exc.message}"
                raise
        unique = self._distinct(prepared)
        plain = all(not p.spec.depends_on for p in unique.values())
        outside = {d for p in unique.values() for d in p.spec.depends_on if d not in unique}
        if len(unique) + len(outside) > MAX_WRITES:
            # One atomic write holds the new jobs and one link per dependency: past that, split the batch.
            raise PayloadTooLarge(
                f"a batch with depends_on writes {len(unique)} jobs and links {len(outside)} dependencies; "
                f"at most {MAX_WRITES} in all: split it",
                {"field": "jobs", "jobs": len(unique), "dependencies": len(outside), "limit": MAX_WRITES},
            )
        self.quotas.check(env.name, caller.uid, env.quotas, n=len(prepared))
        store = self.stores[env.name]
        docs = [p.doc for p in unique.values()]
        index = {p.doc["id"]: i for i, p in reversed(list(enumerate(prepared)))}

        def same(doc: Fields, existing: Job) -> None:
            try:
                self._same(doc, existing)
            except Refused as exc:
                exc.message = f"jobs[{index[doc['id']]}]: {exc.message}"
                raise

        # All or nothing, whatever refuses (a conflict found only at write time included): one atomic
        # batch of creates, or one transaction when dependencies are linked too.
        if plain and any(map(slots.takes_slot_at_submit, docs)) and slots.fits_one_transaction(docs):
            written = slots.create_all(store, docs, same, docs[0]["created_at"])  # keyed jobs take their slots
        elif plain:
            written = store.create_all(docs, same)
        else:
            where = {job_id: f"jobs[{i}]: " for job_id, i in index.items()}
            written = self._create_linked(store, env, caller, docs, same, where)
        results = {job.id: (job, created) for job, created in written}
        out: list[tuple[Job, bool]] = []
        for i, p in enumerate(prepared):
            job, created = results[p.doc["id"]]
            out.append((job, created and index[job.id] == i))  # a key repeated in the batch: its first spec
        to_dispatch = [(job, 0, unique[job.id].due) for job, created in written if _undispatched(job, created)]
        self.dispatchers[env.name].dispatch_many(env, to_dispatch)
        return out

    @staticmethod
    def _distinct(prepared: list[Prepared]) -> dict[str, Prepared]:
        """One spec per job id; an idempotency key given twice in a batch must mean the same job."""
        unique: dict[str, Prepared] = {}
        for i, p in enumerate(prepared):
            first = unique.get(p.doc["id"])
            if first is None:
                unique[p.doc["id"]] = p
            elif first.doc["spec_hash"] != p.doc["spec_hash"]:
                j = prepared.index(first)
                raise Conflict(
                    f"jobs[{i}]: idempotency key {p.spec.idempotency_key!r} is also the key of jobs[{j}], "
                    "for a different job; use a new key for a new job",
                    {"field": f"jobs.{i}.idempotency_key", "same_as": f"jobs.{j}"},
                )
        return unique

    def _create_linked(
        self,
        store: JobStore,
        env: Environment,
        caller: Caller,
        docs: list[Fields],
        same: SameCheck | None = None,
        where: dict[str, str] | None = None,
    ) -> list[tuple[Job, bool]]:
        """Create jobs, some depending on others, with their links, in one transaction."""
        return dependencies.create_linked(
            store,
            docs,
            owner=caller.uid,
            admin=caller.admin,
            retention_days=env.retention_days,
            same=same or self._same,
            where=where,
        )

    def _dispatch(self, env: Environment, job: Job, due: datetime | None) -> None:
        try:
            self.dispatchers[env.name].dispatch(env, job, n=job.dispatch_count, when=due)
        except gexc.GoogleAPIError as exc:
            # The job is recorded; the maintenance pass dispatches it. Say so loudly, lose nothing.
            log.error("job %s recorded but its dispatch failed (%s); maintenance will dispatch it", job.id, exc)

    def dispatch_job(self, env_name: str, job: Job) -> None:
        """Dispatch a job that is already recorded (dependency released, redrive, re-dispatch)."""
        self._dispatch(self.env(env_name), job, job.next_attempt_at if job.status == Status.RETRYING else job.run_at)

    # -- read -----------------------------------------------------------------------------------

    def get(self, env_name: str, caller: Caller, job_id: str) -> Job:
        """The job, if the caller may see it. Another user's job answers exactly as a missing one does."""
        store = self.store(env_name)
        if not is_job_id(job_id):  # no such document can exist, and Firestore would refuse the path
            raise NotFound(f"job {job_id[:100]!r} not found in env {env_name}: {JOB_ID_RULE}", {"job_id": job_id[:100]})
        job = store.get(job_id)
        if job is None or (job.owner != caller.uid and not caller.admin):
            raise NotFound(f"job {job_id} not found in env {env_name}", {"job_id": job_id})
        return job

    def list(
        self,
        env_name: str,
        caller: Caller,
        *,
        status: str | None,
        job_type: str | None,
        page_size: int,
        page_token: str | None,
        owner: str | None = None,
    ) -> tuple[list[Job], str | None]:
        for name, value in (("status", status), ("type", job_type), ("owner", owner)):
            if value is not None and not value.strip():  # given but empty is a mistake, never "any"
                raise Unprocessable(
                    f"{name} is empty; leave it out to list every {name}", [{"field": name, "problem": "empty"}]
                )
        if status is not None and status not in {s.value for s in Status}:
            raise Unprocessable(
                f"status {status!r} is not one of {', '.join(s.value for s in Status)}",
                [{"field": "status", "problem": "unknown status"}],
            )
        if not 1 <= page_size <= 200:
            raise Unprocessable("page_size must be between 1 and 200", [{"field": "page_size", "problem": "range"}])
        # Values that reach a Firestore query: bounded here, as Firestore refuses long ones with an error.
        for name, value, limit in (("type", job_type, MAX_TYPE_LENGTH), ("owner", owner, MAX_OWNER_LENGTH)):
            if value is not None and len(value) > limit:
                raise Unprocessable(
                    f"{name} is {len(value)} characters; at most {limit}", [{"field": name, "problem": "too long"}]
                )
        if caller.admin:
            who = owner  # admins see everyone's jobs, or one user's
        else:
            if owner not in (None, caller.uid):
                raise PermissionDenied("only admins may list another user's jobs")
            who = caller.uid
        return self.store(env_name).page(
            owner=who, status=status, job_type=job_type, page_size=page_size, page_token=page_token
        )

    # -- cancel ---------------------------------------------------------------------------------

    def cancel(self, env_name: str, caller: Caller, job_id: str) -> tuple[Job, Cancel]:
        """Cancel a waiting job now (its task deleted) or ask a running one to stop."""
        env = self.env(env_name)
        store = self.stores[env_name]
        self.get(env_name, caller, job_id)
        at = now()

        def decide(job: Job) -> Change[Cancel]:
            d = lifecycle.decide_cancel(job, at=at, by=caller.uid, expire_at=at + timedelta(days=env.retention_days))
            return Change(d.outcome, d.fields or None)

        try:
            written = store.transition(job_id, decide)
        except TransitionRefused as exc:
            raise Conflict(
                f"job {job_id} is {exc.current}; only queued, retrying or running jobs can be cancelled",
                {"job_id": job_id, "status": exc.current},
            ) from exc
        job = written.job
        if written.outcome == Cancel.CANCELLED:
            self.dispatchers[env.name].delete(env, job)
            self.flow.ended(env_name, job)
            log.info("job %s cancelled by %s before it ran", job_id, caller.uid)
        elif written.outcome == Cancel.REQUESTED:
            log.info("job %s: cancel requested by %s while running", job_id, caller.uid)
        return job, written.outcome
