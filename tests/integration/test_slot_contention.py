"""Two processes deciding one concurrency key at the same time never wait for each other's locks.

A submit (the API) and a hand-over (the worker) each read a key's document and then write it. Two
such Firestore transactions that overlap deadlock: each holds a read lock the other's commit needs,
until one is aborted (the emulator's 2 s lock timeout; Firestore aborts one too), so every submit
into a key whose slot was being handed over cost seconds (bench.fairness: tenant B's 20 jobs
alone waited 6.4 s at the median). Now a hand-over reads without a lock and writes with a
precondition (only a submit locks). Here a hand-over is held open between its reads and its commit
while another process decides the same key: the other must finish while the first is still open,
and the first, resumed, must decide again on what the other wrote.

The in-process turns (`transactions.serialized`) are switched off: they order one process's transactions on
a key, and two processes have nothing of the kind between them.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from jobrelay import slots, transactions
from jobrelay.local.stack import Stack
from jobrelay.models import Concurrency, Job, Status, now
from jobrelay.namespace import CONCURRENCY_KEYS
from jobrelay.store import JobStore, with_shard
from tests.fakes import job_doc

ENV = "dev"
OPEN_FOR = 90.0  # how long the held operation waits for the other at most (a lock wait ends far sooner)


@pytest.fixture
def two_processes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[JobStore, JobStore]:
    """Two stores with their own clients, as an API and a worker process have, and no turns between them."""
    from google.cloud import firestore

    def no_turn(*names: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    monkeypatch.setattr(transactions, "serialized", no_turn)
    monkeypatch.setattr(slots, "serialized", no_turn)
    project = stack.infra.env(ENV).project
    return JobStore(firestore.Client(project=project), ENV), JobStore(firestore.Client(project=project), ENV)


def keyed(limit: int) -> Callable[[], dict[str, Any]]:
    concurrency = slots.ref(ENV, Concurrency(key=f"tenant-{secrets.token_hex(4)}", limit=limit))

    def doc() -> dict[str, Any]:
        return with_shard(job_doc(secrets.token_hex(12), env=ENV, concurrency=concurrency, created_at=now()))

    return doc


def submit(store: JobStore, doc: dict[str, Any]) -> Job:
    def same(new: dict[str, Any], stored: Job) -> None:
        raise AssertionError(f"job {stored.id} exists already")

    [(job, created)] = slots.create_all(store, [doc], same, doc["created_at"])
    assert created
    return job


def key_doc(store: JobStore, job: Job) -> dict[str, Any]:
    assert job.concurrency is not None
    snap = store.client.collection(CONCURRENCY_KEYS).document(job.concurrency.id).get()
    return snap.to_dict() or {}


class Held:
    """Holds the first hand-over round that hands slots over in thread `name` open after its reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.name, self.reached, self.resume = name, threading.Event(), threading.Event()
        original = slots._hand_over

        def held(tx: Any, **kw: Any) -> Any:
            result = original(tx, **kw)
            if kw["ids"] and threading.current_thread().name == self.name and not self.reached.is_set():
                self.reached.set()
                self.resume.wait(OPEN_FOR)  # the transaction commits only after this returns
            return result

        monkeypatch.setattr(slots, "_hand_over", held)


@contextlib.contextmanager
def running(name: str, fn: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Run `fn` in a thread named `name`; its result or error in the dict yielded, once the block ends."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        thread.join(OPEN_FOR + 60)
        assert not thread.is_alive(), f"{name} did not finish"


def ended(job: Job, at: datetime) -> Job:
    return job.model_copy(update={"status": Status.SUCCEEDED, "finished_at": at})


def test_a_submit_into_a_key_does_not_wait_for_another_process_handing_its_slot_over(
    two_processes: tuple[JobStore, JobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, api = two_processes
    doc = keyed(limit=1)
    holder, first = submit(api, doc()), submit(api, doc())
    assert holder.holds_slot and first.waiting_for is not None
    held = Held(monkeypatch, "worker")
    with running("worker", lambda: slots.release(worker, ended(holder, now()), now())) as hand_over:
        assert held.reached.wait(30), "the hand-over did not reach its commit"
        with running("api", lambda: submit(api, doc())) as second:
            pass  # the submit runs to its end while the hand-over's transaction is open
        held.resume.set()
    assert "error" not in second, f"the submit waited for the hand-over's locks: {second.get('error')!r}"
    assert second["result"].waiting_for is not None  # the slot was still held when it was decided
    assert "error" not in hand_over, repr(hand_over.get("error"))
    assert [j.id for j in hand_over["result"]] == [first.id]  # decided again, on the submit's count
    key = key_doc(api, holder)
    assert (set(key["holders"]), key["waiting"], key["parks"]) == ({first.id}, 1, 2)
    handed = api.get(first.id)
    assert handed is not None and handed.holds_slot and handed.waiting_for is None


def test_two_processes_handing_over_slots_of_one_key_do_not_wait_for_each_other_or_hand_a_job_twice(
    two_processes: tuple[JobStore, JobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, other = two_processes
    doc = keyed(limit=2)
    holders = [submit(one, doc()) for _ in range(2)]
    waiting = [submit(one, doc()) for _ in range(2)]
    assert all(j.holds_slot for j in holders) and all(j.waiting_for is not None for j in waiting)
    held = Held(monkeypatch, "held")
    with running("held", lambda: slots.release(one, ended(holders[0], now()), now())) as first:
        assert held.reached.wait(30), "the hand-over did not reach its commit"
        with running("other", lambda: slots.release(other, ended(holders[1], now()), now())) as second:
            pass
        held.resume.set()
    assert "error" not in second, f"a hand-over waited for the other's locks: {second.get('error')!r}"
    assert [j.id for j in second["result"]] == [waiting[0].id]  # the oldest, which the held one had chosen too
    assert "error" not in first, repr(first.get("error"))
    assert [j.id for j in first["result"]] == [waiting[1].id]  # decided again: the next one
    key = key_doc(one, holders[0])
    assert (set(key["holders"]), key["waiting"]) == ({w.id for w in waiting}, 0)
