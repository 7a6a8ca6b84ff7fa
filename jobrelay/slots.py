"""Concurrency keys: at most `limit` jobs with the same key run at once in an env.

One document per key in use, `concurrency_keys/{id}` (id: a hash of the env and the key), holds the
jobs holding its slots (`holders`: job id -> since). A job takes a slot in a transaction with that
document: at submit when it can run at once (so a job that must wait is never delivered), else at its
delivery (delayed, debounced and dependent jobs). It holds the slot until its end, retries included,
so "one migration at a time" still holds while a migration waits for its next attempt. A job that
finds every slot taken waits (`waiting_for`, kind `concurrency`): no task, no attempt used.

Its end (any final state; a lost lease ends a job too, through the claim or the maintenance pass)
frees the slot and, in the same transaction, hands it to the oldest waiting job of the key, which
is then dispatched under its next dispatch number. The document is deleted when its last holder
leaves with nobody waiting, so only keys in use have one; each job costs its key's document about
two writes (take, free or hand over), and no document is shared by two keys
(docs/adr/0022-concurrency-slots-on-the-keys-own-document.md).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from jobrelay import lifecycle
from jobrelay.indexes import SHARD_FIELD, SHARDS, index_shard
from jobrelay.models import Concurrency, Job
from jobrelay.namespace import CONCURRENCY_KEYS
from jobrelay.store import MAX_WRITES, Fields, JobStore, SameCheck, to_job
from jobrelay.transactions import Tx, serialized

log = logging.getLogger("jobrelay.slots")

HEAL_AFTER = timedelta(minutes=2)  # a holder this old is checked by the maintenance pass
MAX_ROUNDS = 6  # hand-over rounds per freed slot, for jobs that began to wait while it ran


def key_id(env: str, key: str) -> str:
    return hashlib.sha256(f"{env}\0{key}".encode()).hexdigest()[:32]


def ref(env: str, spec: Concurrency) -> dict[str, Any]:
    """What a job document records of its key."""
    return {"key": spec.key, "limit": spec.limit, "id": key_id(env, spec.key)}


def on(kid: str) -> str:
    """`waiting_for.on` of the jobs waiting behind key document `kid` (queried, with created_at)."""
    return f"key:{kid}"


@dataclass
class KeyDoc:
    """`concurrency_keys/{id}`: the key's holders, and how many jobs wait (`parks` counts every wait ever)."""

    key: str
    env: str
    limit: int
    holders: dict[str, datetime] = field(default_factory=dict)
    waiting: int = 0
    parks: int = 0

    @classmethod
    def parse(cls, data: Fields) -> KeyDoc:
        return cls(
            data["key"],
            data["env"],
            int(data["limit"]),
            dict(data.get("holders") or {}),
            int(data.get("waiting") or 0),
            int(data.get("parks") or 0),
        )

    def has_room(self, job_id: str, limit: int) -> bool:
        return job_id in self.holders or len(self.holders) < limit

    def park(self) -> None:
        self.waiting += 1
        self.parks += 1

    def data(self, kid: str, at: datetime) -> Fields:
        return {
            SHARD_FIELD: index_shard(kid),  # the maintenance pass reads keys held long per index shard
            "key": self.key,
            "env": self.env,
            "limit": self.limit,
            "holders": self.holders,
            "held": len(self.holders),
            "waiting": self.waiting,
            "parks": self.parks,
            "oldest_since": min(self.holders.values()) if self.holders else None,
            "updated_at": at,
        }


def waiting_for(concurrency: Fields, at: datetime) -> Fields:
    """Why a job (its `concurrency` as stored) waits when every slot of its key is taken."""
    return {"kind": "concurrency", "on": on(concurrency["id"]), "key": concurrency["key"], "since": at}


def wait_fields(concurrency: Fields, at: datetime) -> Fields:
    """A new job that found every slot taken: it waits, nothing due, until a slot is handed to it."""
    return {
        "waiting_for": waiting_for(concurrency, at),
        "due_at": None,
        "next_attempt_at": None,
        "holds_slot": False,
    }


def handed_over(job: Job, at: datetime) -> Fields:
    """A waiting job given a slot: it holds it now and is due at once, under its next dispatch number."""
    return {**lifecycle.unpark(job, at=at), "holds_slot": True}


# -- taking a slot -----------------------------------------------------------------------------


def acquire(tx: Tx, job: Job, at: datetime) -> bool:
    """Take a slot of the job's key in `tx`, or count the job as waiting for one (False); either way the
    key's document is read and written, so a hand-over running at the same time sees the one or the other."""
    assert job.concurrency is not None
    kid, limit = job.concurrency.id, job.concurrency.limit
    data = tx.read(CONCURRENCY_KEYS, kid)
    kd = KeyDoc.parse(data) if data is not None else KeyDoc(job.concurrency.key, job.env, limit)
    room = kd.has_room(job.id, limit)
    if room:
        kd.holders.setdefault(job.id, at)
        kd.limit = limit  # the limit of the job that last took a slot applies to the key
    else:
        kd.park()
    tx.set(CONCURRENCY_KEYS, kid, kd.data(kid, at))
    return room


def takes_slot_at_submit(doc: Fields) -> bool:
    """A keyed job that can run at once takes (or waits for) its slot as it is created."""
    return bool(doc.get("concurrency")) and doc.get("run_at") is None and not doc.get("waiting_on")


def _admit(tx: Tx, docs: Sequence[Fields], env: str, at: datetime) -> list[Fields]:
    """Decide, in order, which new keyed documents hold a slot and which wait; write their keys.

    The one decision on a key that locks its document (a read in the transaction): a batch's commit
    of up to 500 creates takes long enough that a busy key's hand-overs would change the document
    before it lands every time. The claims and hand-overs read it without a lock (`Tx.read`), so their
    commits wait for this one's and then find the key changed, and none of them holds a lock that
    this one waits for: one side locking, the other not, cannot deadlock.
    """
    keys: dict[str, KeyDoc] = {}
    for doc in docs:
        c = doc["concurrency"]
        if c["id"] not in keys:
            data = tx.get(CONCURRENCY_KEYS, c["id"])
            keys[c["id"]] = KeyDoc.parse(data) if data is not None else KeyDoc(c["key"], env, c["limit"])
    out, touched = [], set()
    for doc in docs:
        c = doc["concurrency"]
        kd = keys[c["id"]]
        if kd.has_room(doc["id"], c["limit"]):
            kd.holders[doc["id"]] = at
            kd.limit = c["limit"]
            touched.add(c["id"])
            out.append({**doc, "holds_slot": True})
        else:
            kd.park()
            touched.add(c["id"])
            out.append({**doc, **wait_fields(c, at)})
    for kid in touched:
        tx.set(CONCURRENCY_KEYS, kid, keys[kid].data(kid, at))
    return out


def create_all(store: JobStore, docs: Sequence[Fields], same: SameCheck, at: datetime) -> list[tuple[Job, bool]]:
    """Create jobs (some keyed) in one transaction that also takes their slots; as JobStore.create_all.

    Ids that exist already are judged by `same` and returned as stored; the rest is created, all
    or nothing. A keyed job created waiting has no task until a slot is handed to it.
    """
    found: dict[str, Job] = {}
    for _ in range(8):
        new = [d for d in docs if d["id"] not in found]
        keyed = [d for d in new if takes_slot_at_submit(d)]

        def create(tx: Tx, new: list[Fields] = new, keyed: list[Fields] = keyed) -> dict[str, Fields]:
            admitted = {d["id"]: d for d in _admit(tx, keyed, store.env, at)}
            written = {d["id"]: admitted.get(d["id"], d) for d in new}
            for data in written.values():
                tx.create_job(data)
            return written

        try:
            turn = [f"{CONCURRENCY_KEYS}/{d['concurrency']['id']}" for d in keyed]
            written = store.transact(create, turn=turn) if new else {}
        except gexc.AlreadyExists:
            by_id = {d["id"]: d for d in new}
            for job_id, job in store.get_many(by_id).items():
                same(by_id[job_id], job)
                found[job_id] = job
            continue
        return [(found[d["id"]], False) if d["id"] in found else (to_job(written[d["id"]]), True) for d in docs]
    raise RuntimeError(f"{len(docs)} jobs: too many concurrent creations")


def fits_one_transaction(docs: Sequence[Fields]) -> bool:
    keys = {d["concurrency"]["id"] for d in docs if takes_slot_at_submit(d)}
    return len(docs) + len(keys) <= MAX_WRITES


# -- freeing a slot ------------------------------------------------------------------------------


def release(store: JobStore, job: Job, at: datetime) -> list[Job]:
    """`job` ended: free its slot and hand the free slots to the oldest waiting jobs (to be dispatched)."""
    if job.concurrency is None or not job.holds_slot:
        return []
    return hand_over(store, job.concurrency.id, drop=[job.id], at=at)


def hand_over(store: JobStore, kid: str, *, drop: Sequence[str], at: datetime) -> list[Job]:
    """Drop `drop` from the key's holders and give every free slot to the oldest waiting jobs.

    The waiting jobs are found by a query outside the transaction (a transaction's query would lock
    what it scans: in the emulator, every job), then read and handed over inside it. A job that began
    to wait after that query shows in the key's `waiting` count, and another round finds it; when a
    round finds nobody and no job began to wait since the last one (`parks` unchanged), the count only
    held jobs cancelled while waiting, and is reset.
    """
    turn = (f"{CONCURRENCY_KEYS}/{kid}",)
    # This process's other hand-overs of the key wait for this one, so two do not chase one waiting job.
    with serialized(*turn):
        # First the key alone: when nobody waits, dropping the holder is all (no query, one read).
        outcome: _Round = store.transact(
            functools.partial(_hand_over, kid=kid, drop=drop, ids=None, reset=None, at=at), turn=turn
        )
        released: list[Job] = []
        limit, last_parks = outcome.free, None
        for _ in range(MAX_ROUNDS):
            if outcome.free <= 0 or outcome.waiting <= 0:
                break
            found = waiting(store, kid, limit)
            ids = [j.id for j in found]
            reset = last_parks if not ids else None
            outcome = store.transact(
                functools.partial(_hand_over, kid=kid, drop=drop, ids=ids, reset=reset, at=at), turn=turn
            )
            released += outcome.released
            if not ids and reset is not None:
                break  # nobody to find: the count was reset (or a new waiter's hand-over is its own)
            limit, last_parks = outcome.free, outcome.parks
    for job in released:
        log.info("job %s: a slot of its concurrency key freed; dispatching", job.id)
    return released


def waiting(store: JobStore, kid: str, limit: int) -> list[Job]:
    """The oldest `limit` jobs waiting behind key document `kid` (every index shard's, merged)."""
    return store.first(("waiting_for.on", "==", on(kid)), order="created_at", limit=limit)


@dataclass(frozen=True)
class _Round:
    released: list[Job]
    free: int  # slots still free after it
    waiting: int
    parks: int


def _hand_over(
    tx: Tx, *, kid: str, drop: Sequence[str], ids: list[str] | None, reset: int | None, at: datetime
) -> _Round:
    """One round: drop holders, hand free slots to the jobs `ids` (None: only look, when some wait)."""
    data = tx.read(CONCURRENCY_KEYS, kid)
    if data is None:
        return _Round([], 0, 0, 0)
    kd = KeyDoc.parse(data)
    before = (dict(kd.holders), kd.waiting)
    for job_id in drop:
        kd.holders.pop(job_id, None)
    free = kd.limit - len(kd.holders)
    if ids is None and free > 0 and kd.waiting > 0:
        return _Round([], free, kd.waiting, kd.parks)  # jobs wait: find them first, then hand over
    ids = ids or []
    found = tx.read_jobs(ids) if free > 0 and kd.waiting > 0 else {}
    released: list[Job] = []
    for w in (found.get(job_id) for job_id in ids):  # every read is done: the writes follow
        if w is None or len(released) >= free:
            continue
        if not w.status.pending or w.waiting_for is None or w.waiting_for.on != on(kid):
            continue  # stopped waiting since the query (cancelled, or handed over by another)
        fields = handed_over(w, at)
        tx.update_job(w.id, fields)
        kd.holders[w.id] = at
        kd.waiting -= 1
        released.append(w.model_copy(update={"waiting_for": None, **fields}))
    if not released and reset is not None and kd.parks == reset:
        kd.waiting = 0  # nobody waits: the count held jobs cancelled while they waited
    kd.waiting = max(kd.waiting, 0)
    if (kd.holders, kd.waiting) != before:
        if kd.holders or kd.waiting:
            tx.set(CONCURRENCY_KEYS, kid, kd.data(kid, at))
        else:
            tx.delete(CONCURRENCY_KEYS, kid)  # nobody holds it and nobody waits
    return _Round(released, kd.limit - len(kd.holders), kd.waiting, kd.parks)


def heal(store: JobStore, at: datetime) -> list[Job]:
    """Free the slots of holders that ended without freeing them (their process died in between).

    Reads only keys with a holder older than HEAL_AFTER, and those holders' jobs; returns the jobs
    given a slot, to be dispatched.
    """
    cutoff = at - HEAL_AFTER
    # oldest_since grows with time (each hand-over moves it), so its index is sharded: per shard.
    keys = store.client.collection(CONCURRENCY_KEYS).where(filter=firestore.FieldFilter("oldest_since", "<", cutoff))
    shards = [keys.where(filter=firestore.FieldFilter(SHARD_FIELD, "==", k)).limit(200) for k in range(SHARDS)]
    released: list[Job] = []
    for snap in (s for q in shards for s in q.stream()):
        kd = KeyDoc.parse(snap.to_dict() or {})
        old = [j for j, since in kd.holders.items() if since < cutoff]
        jobs = store.get_many(old)
        ended = [j for j in old if j not in jobs or jobs[j].status.final]
        if ended:
            log.warning("concurrency key %r: freeing %d slot(s) of jobs that ended: %s", kd.key, len(ended), ended)
        released += hand_over(store, snap.id, drop=ended, at=at)
    return released
