"""Multi-document Firestore transactions of one env, and the turns one process's transactions take.

Flow control decides a job's claim or end together with another document (a concurrency key's slots,
a type's pause, a debounce window): `JobStore.transact(fn)` runs `fn(Tx)` in one transaction. Kept
apart from jobrelay.store, whose single-document guarded writes every job uses.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from jobrelay.models import Job
from jobrelay.namespace import JOBS
from jobrelay.store import Fields, _fetch_document, to_job

if TYPE_CHECKING:
    from jobrelay.store import JobStore


# Transactions of one process on the same document take turns: two that read and then write one
# document deadlock until a lock timeout (2 s in the emulator; Firestore aborts one and the client
# retries), so the slots, pauses and debounce windows of one key are decided one at a time per process.
# Two processes have no turns between them: a concurrency key's claims and hand-overs read it without a lock (Tx.read).
_STRIPES = [threading.RLock() for _ in range(64)]  # re-entrant: a turn may span several transactions


@contextlib.contextmanager
def serialized(*names: str) -> Iterator[None]:
    """Hold this process's turn for the documents `names` (striped locks, taken in a fixed order)."""
    stripes = sorted({int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) % len(_STRIPES) for n in names})
    with contextlib.ExitStack() as stack:
        for i in stripes:
            stack.enter_context(_STRIPES[i])
        yield


class StaleJob(Exception):
    """A job written in a transaction with a precondition changed since it was read: read it again."""


class Tx:
    """One Firestore transaction of an env: reads first, then writes, all committed together.

    Flow control decides a job's claim or end together with another document (a concurrency key's
    slots, a type's pause), so a change of either between the read and the write refuses both.
    A job read before the transaction is written with a precondition on its update time (`base`).

    A document that processes contend for (a concurrency key's) may be read with `read`, without a
    lock, and is then written with a precondition on what was read: two transactions that lock one
    document by reading it and then both write it deadlock until one is aborted (the emulator's 2 s
    lock timeout), and the in-process turns (`serialized`) cannot order two processes. One that
    commits after another's write fails its precondition and `JobStore.transact` runs it again.
    """

    def __init__(self, store: JobStore, transaction: firestore.Transaction) -> None:
        self.store, self.transaction = store, transaction
        self.based = False
        self.guards: dict[tuple[str, str], datetime | None] = {}  # read without a lock: update time (None: absent)

    def ref(self, collection: str, doc_id: str) -> Any:
        return self.store.client.collection(collection).document(doc_id)

    def get(self, collection: str, doc_id: str) -> Fields | None:
        snap = self.ref(collection, doc_id).get(transaction=self.transaction)
        return (snap.to_dict() or {}) if snap.exists else None

    def get_job(self, job_id: str) -> Job | None:
        data = self.get(JOBS, job_id)
        return to_job(data) if data is not None else None

    def read(self, collection: str, doc_id: str) -> Fields | None:
        """The document as it is now, read without a lock; written in this transaction only if unchanged by then."""
        found = _fetch_document(self.store.client, self.ref(collection, doc_id))
        self.guards[(collection, doc_id)] = found[1] if found is not None else None
        return found[0] if found is not None else None

    def read_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs that exist of `job_ids`, read at once without a lock; each written only if unchanged by then."""
        refs = [self.store.jobs.document(j) for j in job_ids]
        out: dict[str, Job] = {}
        for snap in self.store.client.get_all(refs) if refs else ():
            self.guards[(JOBS, snap.id)] = snap.update_time if snap.exists else None
            if snap.exists:
                out[snap.id] = to_job(snap.to_dict() or {})
        return out

    def _guard(self, collection: str, doc_id: str) -> Any:
        """The precondition of a write to a document read with `read`, else None."""
        seen = self.guards.get((collection, doc_id))
        return self.store.client.write_option(last_update_time=seen) if seen is not None else None

    def query(self, collection: str, *, order: str, limit: int) -> list[tuple[str, Fields]]:
        """The first `limit` documents of a (small) collection in `order`, read inside the transaction.

        Never the jobs collection: a transaction's query locks what it scans, and the emulator scans
        the whole collection, so only a key's own small collections are queried this way.
        """
        q = self.store.client.collection(collection).order_by(order).limit(limit)
        return [(snap.id, snap.to_dict() or {}) for snap in self.transaction.get(q)]

    def set(self, collection: str, doc_id: str, data: Fields) -> None:
        ref = self.ref(collection, doc_id)
        if (collection, doc_id) not in self.guards:
            self.transaction.set(ref, data)
        elif (option := self._guard(collection, doc_id)) is None:
            self.transaction.create(ref, data)  # it did not exist when read: it still must not
        else:  # every field named, so the document is replaced as by set(); keys quoted as paths
            fields = {FieldPath(k).to_api_repr(): v for k, v in data.items()}
            self.transaction.update(ref, fields, option=option)

    def delete(self, collection: str, doc_id: str) -> None:
        self.transaction.delete(self.ref(collection, doc_id), option=self._guard(collection, doc_id))

    def create_job(self, data: Fields) -> None:
        self.transaction.create(self.store.jobs.document(data["id"]), data)

    def update_job(self, job_id: str, fields: Fields, *, base: datetime | None = None) -> None:
        """Write a job read in this transaction, or (with `base`) one read before it, guarded by that time."""
        option = self._guard(JOBS, job_id)
        if base is not None:
            self.based = True
            option = self.store.client.write_option(last_update_time=base)
        self.transaction.update(self.store.jobs.document(job_id), fields, option=option)
