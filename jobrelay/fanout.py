"""Fan-out: a running job creates child jobs (`ctx.spawn([...specs])`), then waits for them.

Children are ordinary jobs of the parent's env and owner, each checked as that owner's submit would
be (with the claims the parent was submitted with, `Job.authority`), carrying `parent_id` and
`child_index`. Their ids derive from (parent id, index), hashed so 10,000 creates spread over
Firestore's key range instead of piling onto one end of it; a spawn run again after a crash (the
next attempt of the parent) therefore finds the children it made and creates only the missing ones.
They are written in atomic batches of at most MAX_WRITES and dispatched as submits are
(`Dispatcher.dispatch_many`). The parent does not track them: when its handler returns it goes
`waiting` with the number it spawned, and the fan-in (`jobrelay.fanin`) counts them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobrelay.auth import Caller
from jobrelay.errors import Fatal, JobCancelled, Refused
from jobrelay.models import Job
from jobrelay.store import MAX_WRITES, Fields

if TYPE_CHECKING:  # the worker loads the submit path only when a job first spawns (cold start)
    from jobrelay.service import JobService

log = logging.getLogger("jobrelay.fanout")

# Children one job may spawn (all its spawn calls together): docs/pipelines.md.
MAX_CHILDREN = 10_000


def child_id(parent_id: str, index: int) -> str:
    """The id of child `index` of `parent_id`: the same every time, scattered over the key range."""
    return "s" + hashlib.sha256(f"{parent_id}\0{index}".encode()).hexdigest()[:23]


def _accept(doc: Fields, existing: Job) -> None:
    """A child that exists already was made by an earlier run of the same spawn: it is kept as it is."""


class Spawner:
    """Creates and dispatches the children of running jobs, for the envs the service serves."""

    def __init__(self, service: Callable[[], JobService]) -> None:
        self._service = service

    def __call__(
        self,
        parent: Job,
        specs: Sequence[Any],
        start: int,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[str]:
        """Create children `start`, `start + 1`, ... of `parent` from `specs`; returns their ids.

        Every spec is checked before the first is written; a refused one raises Fatal naming it
        (`children[3].payload.message: ...`), since no later attempt of the parent would do better.
        """
        from jobrelay.service import _undispatched

        service = self._service()
        if start + len(specs) > MAX_CHILDREN:
            raise Fatal(f"a job spawns at most {MAX_CHILDREN} children; this spawn would make {start + len(specs)}")
        env = service.env(parent.env)
        authority = parent.authority
        caller = Caller(
            uid=parent.owner,
            kind="user",
            admin=authority.admin if authority else False,
            roles=frozenset(authority.roles if authority else ()),
        )
        docs: list[Fields] = []
        dues: dict[str, Any] = {}
        for offset, spec in enumerate(specs):
            index = start + offset
            where = f"children[{index}]"
            if isinstance(spec, Mapping) and ("depends_on" in spec or "idempotency_key" in spec):
                key = "depends_on" if "depends_on" in spec else "idempotency_key"
                raise Fatal(f"{where}.{key}: a spawned child takes no {key} (its id comes from its parent)")
            try:
                prepared = service.preparer.prepare(
                    env,
                    caller,
                    dict(spec) if isinstance(spec, Mapping) else spec,
                    trace_id=parent.trace_id,
                    field_prefix=f"{where}.",
                    job_id=child_id(parent.id, index),
                )
            except Refused as exc:
                raise Fatal(f"{where}: {exc.message}") from exc
            doc = prepared.doc
            doc.update(parent_id=parent.id, child_index=index)
            docs.append(doc)
            dues[doc["id"]] = prepared.due
        store = service.stores[env.name]
        for first in range(0, len(docs), MAX_WRITES):
            if cancelled():
                raise JobCancelled(f"job {parent.id} was cancelled while spawning its children")
            written = store.create_all(docs[first : first + MAX_WRITES], _accept)
            ready = [(job, 0, dues[job.id]) for job, created in written if _undispatched(job, created)]
            service.dispatchers[env.name].dispatch_many(env, ready)
        log.info("job %s spawned %d children (%d..%d)", parent.id, len(docs), start, start + len(docs) - 1)
        return [d["id"] for d in docs]
