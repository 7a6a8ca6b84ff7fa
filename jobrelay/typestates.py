"""A job type's run-time state in one env: paused or not (by whom, why, since when) and its breaker.

One document per type that was ever paused or tripped its circuit breaker, `type_states/{type}` in
the env's Firestore (fields in docs/flow-control.md, read by the operators' console). Deliveries never
read it one by one: each process keeps every env's documents in memory from a snapshot listener
(`TypeStates`), and only when that copy says a type is paused does a claim read the document again,
inside the transaction that parks the job, so a resume that lands in between is never missed
(docs/adr/0023-pauses-and-breakers-from-a-listened-copy.md).

A pause comes from an operator (`source: operator`) or from the type's circuit breaker (`source:
breaker`, jobrelay.breakers). Under a breaker pause the breaker moves open -> half_open (one probe job
runs) -> closed (the pause ends) or open again; an operator's pause holds until an operator resumes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from jobrelay.namespace import TYPE_STATES
from jobrelay.transactions import Tx

log = logging.getLogger("jobrelay.typestates")

OPERATOR, BREAKER = "operator", "breaker"
MAX_REASON = 500
# A type's name is its document's id: what Firestore takes as one (no "/", not "." or "..", not __x__).
SAFE_ID = re.compile(r"(?!\.\.?\Z)(?!__.*__\Z)[A-Za-z0-9_.:-]{1,100}\Z")


def doc_id(job_type: str) -> str | None:
    """The document id of a type's state, or None when its name cannot be one."""
    return job_type if SAFE_ID.match(job_type) else None


class Breaker(BaseModel):
    """A type's circuit breaker in one env."""

    model_config = ConfigDict(frozen=True)

    state: Literal["closed", "open", "half_open"] = "closed"
    opened_at: datetime | None = None
    cool_down_until: datetime | None = None
    probe_job: str | None = None
    probe_at: datetime | None = None
    trips: int = 0
    failures: int = 0  # of the attempts judged when it last opened
    attempts: int = 0


class TypeState(BaseModel):
    """`type_states/{type}`: whether deliveries of the type run, and why not."""

    model_config = ConfigDict(frozen=True)

    type: str
    paused: bool = False
    source: Literal["operator", "breaker"] | None = None
    reason: str | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None
    resumed_by: str | None = None
    resumed_at: datetime | None = None
    breaker: Breaker = Breaker()
    updated_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Verdict(StrEnum):
    GO = "go"  # the type runs (or this job is its breaker's probe)
    WAIT = "wait"  # paused: the job waits behind the pause
    PROBE = "probe"  # the breaker's cool-down is over: this job becomes the one probe


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    kind: str = ""  # "paused" or "breaker" when it waits
    reason: str | None = None
    by: str | None = None


def decide(state: TypeState | None, job_id: str, at: datetime) -> Decision:
    """May a delivery of `job_id` run, given its type's state as read?"""
    if state is None or not state.paused:
        return Decision(Verdict.GO)
    if state.source != BREAKER:
        return Decision(Verdict.WAIT, "paused", state.reason, state.paused_by)
    b = state.breaker
    if b.state == "half_open" and b.probe_job == job_id:
        return Decision(Verdict.GO)
    cooled = b.cool_down_until is None or b.cool_down_until <= at
    if b.state == "open" and cooled and b.probe_job is None:
        return Decision(Verdict.PROBE)
    return Decision(Verdict.WAIT, "breaker", state.reason, BREAKER)


# -- the document, read and written inside a transaction -------------------------------------------


def read(tx: Tx, job_type: str) -> TypeState | None:
    data = tx.get(TYPE_STATES, job_type)
    return TypeState.model_validate(data) if data is not None else None


def write(tx: Tx, state: TypeState) -> None:
    tx.set(TYPE_STATES, state.type, state.model_dump(mode="python"))


def paused(job_type: str, *, source: str, reason: str, by: str, at: datetime, before: TypeState | None) -> TypeState:
    base = before or TypeState(type=job_type)
    return base.model_copy(
        update={"paused": True, "source": source, "reason": reason, "paused_by": by, "paused_at": at, "updated_at": at}
    )


def resumed(state: TypeState, *, by: str, at: datetime) -> TypeState:
    """The pause lifted (by an operator, or by a probe that succeeded): the breaker closes too."""
    breaker = state.breaker.model_copy(update={"state": "closed", "probe_job": None, "cool_down_until": None})
    return state.model_copy(
        update={
            "paused": False,
            "source": None,
            "resumed_by": by,
            "resumed_at": at,
            "breaker": breaker,
            "updated_at": at,
        }
    )


def opened(
    job_type: str, before: TypeState | None, *, cool_down: float, failures: int, attempts: int, at: datetime
) -> TypeState:
    base = before or TypeState(type=job_type)
    breaker = Breaker(
        state="open",
        opened_at=at,
        cool_down_until=at + timedelta(seconds=cool_down),
        trips=base.breaker.trips + 1,
        failures=failures,
        attempts=attempts,
    )
    reason = f"breaker: {failures} of the last {attempts} attempts failed"
    return paused(job_type, source=BREAKER, reason=reason, by=BREAKER, at=at, before=base).model_copy(
        update={"breaker": breaker}
    )


def probing(state: TypeState, job_id: str, at: datetime) -> TypeState:
    breaker = state.breaker.model_copy(update={"state": "half_open", "probe_job": job_id, "probe_at": at})
    return state.model_copy(update={"breaker": breaker, "updated_at": at})


def reopened(state: TypeState, *, cool_down: float, at: datetime) -> TypeState:
    breaker = state.breaker.model_copy(
        update={
            "state": "open",
            "opened_at": at,
            "cool_down_until": at + timedelta(seconds=cool_down),
            "probe_job": None,
            "trips": state.breaker.trips + 1,
        }
    )
    return state.model_copy(update={"breaker": breaker, "updated_at": at})


# -- every env's states, kept in memory ----------------------------------------------------------


class StateSource(Protocol):
    """Where the claim looks up a type's state without a read per delivery."""

    def get(self, env: str, job_type: str) -> TypeState | None: ...


class _Watch:
    """One env's `type_states`, from a snapshot listener; a direct read while the listener is not up."""

    def __init__(self, client: Any, first_wait: float, fallback_ttl: float) -> None:
        self.client, self.first_wait, self.fallback_ttl = client, first_wait, fallback_ttl
        self.states: dict[str, TypeState] = {}
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.watch: Any = None
        self.read_at = 0.0
        self.waited = False  # a delivery waits for the first snapshot once, not every time

    def start(self) -> None:
        self.ready.clear()
        self.watch = self.client.collection(TYPE_STATES).on_snapshot(self._on_snapshot)

    def _on_snapshot(self, docs: list[Any], changes: Any, read_time: Any) -> None:
        states = {d.id: TypeState.model_validate(d.to_dict() or {}) for d in docs}
        with self.lock:
            self.states = states
        self.ready.set()

    def current(self) -> dict[str, TypeState]:
        if self.watch is None or getattr(self.watch, "_closed", False):
            self.start()
        if self.ready.is_set() or (not self.waited and self.ready.wait(self.first_wait)):
            with self.lock:
                return self.states
        self.waited = True
        # The listener is not up (yet): read the collection, at most every fallback_ttl seconds.
        with self.lock:
            if time.monotonic() - self.read_at > self.fallback_ttl:
                docs = self.client.collection(TYPE_STATES).stream()
                self.states = {d.id: TypeState.model_validate(d.to_dict() or {}) for d in docs}
                self.read_at = time.monotonic()
                log.warning("type_states listener not ready; read the documents directly")
            return self.states

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.unsubscribe()
            self.watch = None


class TypeStates:
    """Every served env's type states in this process, each env's listener started on first use."""

    def __init__(self, clients: Mapping[str, Any], *, first_wait: float = 5.0, fallback_ttl: float = 2.0) -> None:
        self._clients = clients
        self._first_wait, self._fallback_ttl = first_wait, fallback_ttl
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()

    def get(self, env: str, job_type: str) -> TypeState | None:
        with self._lock:
            watch = self._watches.get(env)
            if watch is None:
                watch = self._watches[env] = _Watch(self._clients[env], self._first_wait, self._fallback_ttl)
        return watch.current().get(job_type)

    def close(self) -> None:
        with self._lock:
            for watch in self._watches.values():
                watch.stop()
            self._watches.clear()
