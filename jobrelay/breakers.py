"""Circuit breakers: a job type that keeps failing pauses itself, then one probe decides.

Each worker process judges the attempts it runs: per env and type with a breaker
(`infra/breakers.yaml`), a window of the last `window` outcomes in memory. When at least
`min_attempts` of them are in and `failure_rate` of them failed, the breaker opens: in one
transaction on `type_states/{type}` the type is paused with source and reason `breaker`, and a
WARNING line "circuit breaker opened" is logged (the log-based metric and alert in
terraform/modules/monitoring match it). No document is written per attempt: a window costs nothing
until it trips, and with several instances the first to see the threshold opens it
(docs/adr/0024-breakers-judge-per-process-windows.md).

After `cool_down_seconds` one job is let through (half-open): the first delivery that arrives, or
the oldest waiting job, which the maintenance pass dispatches when none arrives. The probe's success
closes the breaker and resumes the type (its waiting jobs are dispatched); its failure opens it again
for another cool-down. Attempts that never ran (waiting behind the breaker) are not failures.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime

from jobrelay import lifecycle, typestates
from jobrelay import logging as jlog
from jobrelay.breaker_settings import BreakerConfig
from jobrelay.models import Job, now
from jobrelay.namespace import TYPE_STATES
from jobrelay.settings import Infra
from jobrelay.store import JobStore
from jobrelay.transactions import Tx
from jobrelay.typestates import BREAKER, StateSource, TypeState

log = logging.getLogger("jobrelay.breakers")

# Called with (env, job type, by) once a pause ended, to dispatch the jobs that waited behind it.
ReleaseWaiting = Callable[[str, str, str], object]


def config(infra: Infra, env: str, job_type: str) -> BreakerConfig | None:
    return infra.breakers.get(env, {}).get(job_type)


class Breakers:
    """This process's windows of attempt outcomes, and the breaker transitions they cause."""

    def __init__(
        self, infra: Infra, stores: Mapping[str, JobStore], states: StateSource, release_waiting: ReleaseWaiting
    ) -> None:
        self.infra, self.stores, self.states = infra, stores, states
        self.release_waiting = release_waiting
        self._windows: dict[tuple[str, str], deque[bool]] = {}
        self._lock = threading.Lock()

    def record(self, env: str, job: Job, succeeded: bool) -> None:
        """One attempt of `job` ran and ended (succeeded, or failed in any way); judge its type."""
        cfg = config(self.infra, env, job.type)
        if cfg is None or typestates.doc_id(job.type) is None:
            return
        state = self.states.get(env, job.type)
        if state is not None and state.paused and state.source == BREAKER:
            # Open or half-open: this attempt may be the probe (this process's copy may not show it yet,
            # a probe can end within the listener's delay), so the type's document decides.
            self._probe_ended(env, job, succeeded, cfg)
            return
        with self._lock:
            window = self._windows.setdefault((env, job.type), deque(maxlen=cfg.window))
            window.append(succeeded)
            attempts, failures = len(window), window.count(False)
            if attempts < cfg.min_attempts or failures < cfg.failure_rate * attempts:
                return
            window.clear()  # judged: the next trip needs a fresh window
        if state is not None and state.paused:
            return  # paused already (by an operator, or this breaker through another process)
        self._open(env, job.type, cfg, failures, attempts)

    def _open(self, env: str, job_type: str, cfg: BreakerConfig, failures: int, attempts: int) -> None:
        at = now()

        def fn(tx: Tx) -> TypeState | None:
            before = typestates.read(tx, job_type)
            if before is not None and before.paused:
                return None
            state = typestates.opened(
                job_type, before, cool_down=cfg.cool_down_seconds, failures=failures, attempts=attempts, at=at
            )
            typestates.write(tx, state)
            return state

        opened = self.stores[env].transact(fn, turn=(f"{TYPE_STATES}/{job_type}",))
        if opened is not None:
            with jlog.labels(env=env, type=job_type):
                log.warning(
                    "circuit breaker opened: type %s in env %s paused after %d of its last %d attempts failed; "
                    "one probe job runs after %gs",
                    job_type,
                    env,
                    failures,
                    attempts,
                    cfg.cool_down_seconds,
                    extra={"breaker": "open", "trips": opened.breaker.trips},
                )

    def _probe_ended(self, env: str, job: Job, succeeded: bool, cfg: BreakerConfig) -> None:
        at = now()

        def fn(tx: Tx) -> bool:
            state = typestates.read(tx, job.type)
            if state is None or state.breaker.state != "half_open" or state.breaker.probe_job != job.id:
                return False  # an operator resumed or paused it meanwhile
            if succeeded:
                typestates.write(tx, typestates.resumed(state, by=BREAKER, at=at))
            else:
                typestates.write(tx, typestates.reopened(state, cool_down=cfg.cool_down_seconds, at=at))
            return True

        if not self.stores[env].transact(fn, turn=(f"{TYPE_STATES}/{job.type}",)):
            return
        with jlog.labels(env=env, type=job.type, job_id=job.id):
            if succeeded:
                log.info("circuit breaker closed: probe job %s of type %s succeeded; type resumed", job.id, job.type)
                self.release_waiting(env, job.type, BREAKER)
            else:
                log.warning(
                    "circuit breaker opened again: probe job %s of type %s in env %s failed; next probe after %gs",
                    job.id,
                    job.type,
                    env,
                    cfg.cool_down_seconds,
                    extra={"breaker": "open"},
                )


def probe_idle(store: JobStore, at: datetime) -> list[Job]:
    """Maintenance: breakers whose cool-down ended with no delivery arriving get a probe (the oldest
    waiting job of the type), and a probe that ended without deciding (cancelled, gone) is replaced.
    Returns the probes to dispatch."""
    from google.cloud import firestore

    probes: list[Job] = []
    q = store.client.collection(TYPE_STATES).where(filter=firestore.FieldFilter("paused", "==", True))
    for snap in q.stream():
        state = TypeState.model_validate(snap.to_dict() or {})
        if state.source != BREAKER:
            continue
        b = state.breaker
        if b.state == "half_open" and b.probe_job is not None:
            probe = store.get(b.probe_job)
            if probe is not None and not probe.status.final:
                continue  # still on its way
        elif b.state != "open" or (b.cool_down_until is not None and b.cool_down_until > at):
            continue
        waiting = store.first(("waiting_for.on", "==", f"type:{state.type}"), order="created_at", limit=1)
        if waiting:
            probe_job = _make_probe(store, state.type, waiting[0], at)
            if probe_job is not None:
                probes.append(probe_job)
    return probes


def _make_probe(store: JobStore, job_type: str, candidate: Job, at: datetime) -> Job | None:
    def fn(tx: Tx) -> Job | None:
        state = typestates.read(tx, job_type)
        job = tx.get_job(candidate.id)
        if state is None or not state.paused or state.source != BREAKER or job is None:
            return None
        if job.waiting_for is None or job.waiting_for.on != f"type:{job_type}" or not job.status.pending:
            return None
        typestates.write(tx, typestates.probing(state, job.id, at))
        fields = lifecycle.unpark(job, at=at)
        tx.update_job(job.id, fields)
        return job.model_copy(update={"waiting_for": None, **fields})

    probe: Job | None = store.transact(fn, turn=(f"{TYPE_STATES}/{job_type}",))
    if probe is not None:
        log.info("circuit breaker of type %s half-open: job %s is its probe", job_type, probe.id)
    return probe
