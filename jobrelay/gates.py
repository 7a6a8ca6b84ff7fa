"""Why a job waits: the gates a delivery passes before its job runs, decided where the claim is.

In order, for a delivery whose job could be claimed (`lifecycle.decide_claim` says so):

    parked           the job already waits behind a gate: a stale delivery, acknowledged
    debounce         the job's due time moved later (more submits came): dispatched again for then
    type             paused by an operator, or its circuit breaker is open: the job waits (a breaker
                     past its cool-down makes this job its one probe and lets it through)
    concurrency key  every slot of its key is taken: the job waits; else it takes one with the claim

A job that waits is parked: `waiting_for` says why and since when, nothing is due, and its delivery
is acknowledged, so Cloud Tasks stops and no attempt is used or failure counted. What holds it
releases it (a freed slot, a resume, the breaker's close) and dispatches it again under its next
dispatch number. The type gate reads nothing per delivery (the process's copy of `type_states`,
jobrelay.typestates) unless that copy says the type is paused; then it decides in a transaction on
the type's document. `jobrelay.flow.Flow.admit` is the one entry: the runner asks it, for every
delivery, whether its job may run now, and if not, why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from jobrelay import lifecycle, slots, typestates
from jobrelay.lifecycle import Claim, ClaimDecision
from jobrelay.models import Job, Status
from jobrelay.namespace import CONCURRENCY_KEYS, TYPE_STATES
from jobrelay.store import CAS_RETRIES, Change, Fields, JobStore, Written, to_job
from jobrelay.transactions import StaleJob, Tx
from jobrelay.typestates import StateSource, Verdict

log = logging.getLogger("jobrelay.gates")

EARLY = timedelta(seconds=1)  # a delivery this much before its job's due time comes too early
Decide = Callable[[Job], Change[ClaimDecision]]
Redispatch = Callable[[str, Job], None]


def merged(job: Job, fields: Fields) -> Job:
    return to_job(job.model_dump(by_alias=True) | fields)


def why(job: Job) -> str:
    """What a parked job waits for, in words."""
    w = job.waiting_for
    if w is None:
        return "not waiting"
    if w.kind == "concurrency":
        return f"waits for a slot of concurrency key {w.key!r}"
    if w.kind == "breaker":
        return f"type {job.type} waits behind its open circuit breaker ({w.reason})"
    return f"type {job.type} is paused by {w.by}: {w.reason}"


class Gates:
    """The gates between a delivery and its claim (see the module's docstring)."""

    def __init__(self, states: StateSource, redispatch: Redispatch) -> None:
        self.states = states
        self.redispatch = redispatch

    def claim(
        self,
        store: JobStore,
        job: Job,
        update_time: datetime,
        decide: Decide,
        *,
        at: datetime,
        expire_at: datetime,
        dispatch: int | None = None,
    ) -> Written[ClaimDecision]:
        """Claim `job` (read at `update_time`) if every gate lets it through; else park or defer it."""

        first: tuple[Job, Change[ClaimDecision]] | None = None

        def plain(j: Job) -> Change[ClaimDecision]:
            if j.waiting_for is not None:  # parked by another delivery since it was read
                return Change(ClaimDecision(Claim.PARKED))
            # The job as read was decided already (decide is a pure function of the job).
            return first[1] if first is not None and first[0] is j else decide(j)

        for _ in range(CAS_RETRIES):
            first = (job, decide(job))
            d = first[1].outcome
            if d.outcome != Claim.CLAIMED:
                return store.transition(job.id, plain, base=(update_time, job))
            if job.waiting_for is not None:
                return Written(ClaimDecision(Claim.PARKED), job)
            try:
                gated = self._gated(store, job, update_time, d, at, expire_at, dispatch)
            except StaleJob:
                found = store.read(job.id)
                if found is None:
                    return Written(ClaimDecision(Claim.NOT_RUNNABLE), job)
                job, update_time = found
                continue
            if gated is not None:
                return gated
            return store.transition(job.id, plain, base=(update_time, job))
        raise RuntimeError(f"job {job.id}: too many concurrent changes at its claim")

    def _gated(
        self,
        store: JobStore,
        job: Job,
        update_time: datetime,
        d: ClaimDecision,
        at: datetime,
        expire_at: datetime,
        dispatch: int | None,
    ) -> Written[ClaimDecision] | None:
        """The gates' answer, or None when the job may be claimed the plain way."""
        if job.debounce is not None and job.status == Status.QUEUED and job.run_at and job.run_at > at + EARLY:
            return self._not_due(store, job, update_time, dispatch)
        state = self.states.get(store.env, job.type)
        if state is not None and state.paused:
            parked = self._type_gate(store, job, update_time, at, expire_at)
            if parked is not None:
                return parked
        if job.concurrency is not None and not job.holds_slot:
            return self._key_gate(store, job, update_time, d, at, expire_at)
        return None

    def _not_due(
        self, store: JobStore, job: Job, update_time: datetime, dispatch: int | None
    ) -> Written[ClaimDecision]:
        """Submits moved a debounced job's due time later than this delivery: deliver it again for then."""
        outcome = ClaimDecision(Claim.NOT_DUE)
        if dispatch is not None and dispatch != job.dispatch_count:
            return Written(outcome, job)  # an older dispatch: the current one is on its way

        def bump(j: Job) -> Change[ClaimDecision]:
            if j.dispatch_count != job.dispatch_count or j.status != Status.QUEUED:
                return Change(ClaimDecision(Claim.NOT_RUNNABLE))
            return Change(outcome, {"dispatch_count": j.dispatch_count + 1, "due_at": j.run_at})

        written = store.transition(job.id, bump, base=(update_time, job))
        if written.outcome.outcome == Claim.NOT_DUE and written.wrote:
            self.redispatch(store.env, written.job)
        return written

    def _type_gate(
        self, store: JobStore, job: Job, update_time: datetime, at: datetime, expire_at: datetime
    ) -> Written[ClaimDecision] | None:
        """The type is paused in this process's copy: decide on its document, in a transaction."""

        def fn(tx: Tx) -> tuple[Verdict, Fields | None]:
            state = typestates.read(tx, job.type)
            decision = typestates.decide(state, job.id, at)
            if decision.verdict == Verdict.PROBE and state is not None:
                typestates.write(tx, typestates.probing(state, job.id, at))
            elif decision.verdict == Verdict.WAIT:
                waiting: dict[str, Any] = {
                    "kind": decision.kind,
                    "on": f"type:{job.type}",
                    "since": at,
                    "reason": decision.reason,
                    "by": decision.by,
                }
                fields = lifecycle.park(job, waiting, at=at, expire_at=expire_at)
                tx.update_job(job.id, fields, base=update_time)
                return decision.verdict, fields
            return decision.verdict, None

        verdict, fields = store.transact(fn, turn=(f"{TYPE_STATES}/{job.type}",))
        if verdict == Verdict.PROBE:
            log.info(
                "job %s: the circuit breaker of type %s is past its cool-down; this job is its probe", job.id, job.type
            )
        if fields is None:
            return None
        parked = merged(job, fields)
        log.info("job %s waits: %s", job.id, why(parked))
        return Written(ClaimDecision(Claim.PARKED), parked)

    def _key_gate(
        self, store: JobStore, job: Job, update_time: datetime, d: ClaimDecision, at: datetime, expire_at: datetime
    ) -> Written[ClaimDecision]:
        """Take a slot of the job's key together with the claim, or park the job behind the key."""
        assert job.concurrency is not None
        concurrency = job.concurrency.model_dump()

        def fn(tx: Tx) -> tuple[bool, Fields]:
            if slots.acquire(tx, job, at):
                fields = {**(d.fields or {}), "holds_slot": True}
            else:
                fields = lifecycle.park(job, slots.waiting_for(concurrency, at), at=at, expire_at=expire_at)
            tx.update_job(job.id, fields, base=update_time)
            return fields.get("holds_slot") is True, fields

        claimed, fields = store.transact(fn, turn=(f"{CONCURRENCY_KEYS}/{job.concurrency.id}",))
        if not claimed:
            parked = merged(job, fields)
            log.info("job %s waits: %s", job.id, why(parked))
            return Written(ClaimDecision(Claim.PARKED), parked)
        # The transaction does not give the document's new update time, which the attempt's guarded
        # writes need: read it (only jobs that take their slot at delivery pay this read).
        found = store.read(job.id)
        if found is None:
            return Written(ClaimDecision(Claim.NOT_RUNNABLE), job)
        return Written(d, found[0], found[1])
