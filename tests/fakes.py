"""In-memory stand-ins below the emulators, for fast unit tests of the runner, the service and the API.

`FakeJobStore` keeps job documents in a dict with an update counter and honours the same guarded
write contract as `JobStore.transition` (a write whose base is stale is decided again on the current
document), so the lifecycle behaves as on Firestore. `FakeDispatcher` records deliveries instead of
creating tasks; `RecordingFlow` records what the runner hands on at a job's end. The same behaviour
is tested again on the real emulators under tests/e2e.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from jobrelay.errors import NotFound
from jobrelay.models import Job, Status, now
from jobrelay.settings import Environment
from jobrelay.store import JOBS, MAX_INLINE_RESULT_BYTES, Change, Written, to_job
from jobrelay.transactions import StaleJob
from jobrelay.typestates import TypeState

T = TypeVar("T")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeJobStore:
    """Jobs of one env in memory, with compare-and-set writes on a per-document update time."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.docs: dict[str, dict[str, Any]] = {}
        self.times: dict[str, datetime] = {}
        self.results: dict[str, Any] = {}
        self.others: dict[str, dict[str, dict[str, Any]]] = {}  # collection -> id -> document (not jobs)
        self.writes = 0
        self.counts = 0  # aggregation queries made
        self._clock = itertools.count(1)
        self._lock = threading.Lock()
        self._tx_lock = threading.RLock()

    def _touch(self, job_id: str) -> datetime:
        self.writes += 1
        self.times[job_id] = EPOCH + timedelta(microseconds=next(self._clock))
        return self.times[job_id]

    # -- create and read ------------------------------------------------------------------------

    def create(self, data: dict[str, Any]) -> tuple[Job, bool]:
        with self._lock:
            if data["id"] in self.docs:
                return to_job(self.docs[data["id"]]), False
            self.docs[data["id"]] = dict(data)
            self._touch(data["id"])
            return to_job(data), True

    def create_all(
        self, docs: Sequence[dict[str, Any]], same: Callable[[dict[str, Any], Job], None]
    ) -> list[tuple[Job, bool]]:
        """All or nothing, as JobStore.create_all: every existing id is judged by `same` before any write."""
        with self._lock:
            found = {d["id"]: to_job(self.docs[d["id"]]) for d in docs if d["id"] in self.docs}
        for d in docs:
            if d["id"] in found:
                same(d, found[d["id"]])
        return [(found[d["id"]], False) if d["id"] in found else self.create(d) for d in docs]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            data = self.docs.get(job_id)
            return to_job(data) if data is not None else None

    def read(self, job_id: str) -> tuple[Job, datetime] | None:
        with self._lock:
            data = self.docs.get(job_id)
            return (to_job(data), self.times[job_id]) if data is not None else None

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        return {j: job for j in job_ids if (job := self.get(j)) is not None}

    def page(
        self,
        *,
        owner: str | None,
        status: str | None = None,
        job_type: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> tuple[list[Job], str | None]:
        jobs = [
            to_job(d)
            for d in self.docs.values()
            if (owner is None or d["owner"] == owner)
            and (status is None or d["status"] == status)
            and (job_type is None or d["type"] == job_type)
        ]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        start = int(page_token or 0)
        more = len(jobs) > start + page_size
        return jobs[start : start + page_size], str(start + page_size) if more else None

    def first(self, *filters: tuple[str, str, Any], order: str, limit: int) -> list[Job]:
        out = [to_job(d) for d in self.docs.values() if _matches(d, filters)]
        out.sort(key=lambda j: (_field(j.model_dump(by_alias=True), order), j.id))
        return out[:limit]

    def _matching(self, filters: Sequence[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        ops: dict[str, Callable[[Any, Any], bool]] = {
            "==": lambda a, b: a == b,
            "<": lambda a, b: a is not None and a < b,
            "in": lambda a, b: a in b,
        }
        with self._lock:
            return [dict(d) for d in self.docs.values() if all(ops[op](d.get(f), v) for f, op, v in filters)]

    def count(self, *filters: tuple[str, str, Any], timeout: float | None = None) -> int:
        self.counts += 1
        return len(self._matching(filters))

    def any(self, *filters: tuple[str, str, Any], timeout: float | None = None) -> bool:
        self.counts += 1
        return bool(self._matching(filters))

    def scan(self, *filters: tuple[str, str, Any], order: str, page_size: int = 200) -> Iterable[Job]:
        docs = sorted(self._matching(filters), key=lambda d: d.get(order))
        return [to_job(d) for d in docs]

    def scan_by_id(self, *filters: tuple[str, str, Any], page_size: int = 300) -> Iterable[Job]:
        return [to_job(d) for d in sorted(self._matching(filters), key=lambda d: d["id"])]

    def transact(self, fn: Callable[[FakeTx], T], *, turn: Any = ()) -> T:
        """As JobStore.transact: `fn` reads, then writes, committed together (one transaction at a time)."""
        with self._tx_lock:
            tx = FakeTx(self)
            result = fn(tx)
            tx.commit()
            return result

    # -- guarded writes -------------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        decide: Callable[[Job], Change[T]],
        *,
        base: tuple[datetime, Job] | None = None,
    ) -> Written[T]:
        while True:
            if base is None:
                found = self.read(job_id)
                if found is None:
                    raise NotFound(f"job {job_id} not found in env {self.env}")
                current, seen = found
            else:
                (seen, current), base = base, None
            change = decide(current)
            if change.fields is None:
                return Written(change.outcome, current)
            with self._lock:
                if self.times.get(job_id) != seen:
                    continue  # changed since it was read: decide again on the current document
                self.docs[job_id] = {**self.docs[job_id], **change.fields}
                written_at = self._touch(job_id)
                return Written(change.outcome, to_job(self.docs[job_id]), written_at)

    def update(self, job_id: str, fields: dict[str, Any]) -> None:
        """An outside change to the document (a cancel, another worker), as tests make them."""
        with self._lock:
            self.docs[job_id] = {**self.docs[job_id], **fields}
            self._touch(job_id)

    def store_result(self, job_id: str, result: Any) -> tuple[Any, str | None]:
        import json

        if len(json.dumps(result, default=str).encode()) <= MAX_INLINE_RESULT_BYTES:
            return result, None
        self.results[job_id] = result
        return None, f"job_results/{job_id}"


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "<": lambda a, b: a is not None and a < b,
    "in": lambda a, b: a in b,
}


def _field(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _matches(doc: dict[str, Any], filters: Iterable[tuple[str, str, Any]]) -> bool:
    return all(OPS[op](_field(doc, f), v) for f, op, v in filters)


class FakeTx:
    """As jobrelay.transactions.Tx on a FakeJobStore: reads now, writes applied together at commit."""

    def __init__(self, store: FakeJobStore) -> None:
        self.store = store
        self.writes: list[Callable[[], None]] = []
        self.checks: list[Callable[[], None]] = []

    def _docs(self, collection: str) -> dict[str, dict[str, Any]]:
        return self.store.docs if collection == JOBS else self.store.others.setdefault(collection, {})

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        data = self._docs(collection).get(doc_id)
        return dict(data) if data is not None else None

    def get_job(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def read(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self.get(collection, doc_id)  # one transaction at a time here: nobody writes in between

    def read_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return self.store.get_many(job_ids)

    def query(self, collection: str, *, order: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        docs = sorted(self._docs(collection).items(), key=lambda item: item[1][order])
        return [(doc_id, dict(data)) for doc_id, data in docs[:limit]]

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self.writes.append(lambda: self._docs(collection).__setitem__(doc_id, dict(data)))

    def delete(self, collection: str, doc_id: str) -> None:
        self.writes.append(lambda: self._docs(collection).pop(doc_id, None))

    def create_job(self, data: dict[str, Any]) -> None:
        from google.api_core import exceptions as gexc

        def check() -> None:
            if data["id"] in self.store.docs:
                raise gexc.AlreadyExists(f"job {data['id']} exists")

        self.checks.append(check)
        self.writes.append(lambda: self.store.create(data))

    def update_job(self, job_id: str, fields: dict[str, Any], *, base: datetime | None = None) -> None:
        def check() -> None:
            if base is not None and self.store.times.get(job_id) != base:
                raise StaleJob(f"job {job_id} changed since it was read")

        def write() -> None:
            self.store.docs[job_id] = {**self.store.docs[job_id], **fields}
            self.store._touch(job_id)

        self.checks.append(check)
        self.writes.append(write)

    def commit(self) -> None:
        for check in self.checks:
            check()
        for write in self.writes:
            write()


@dataclass
class StaticStates:
    """Type states as tests set them (jobrelay.typestates.StateSource), instead of a listener."""

    states: dict[tuple[str, str], TypeState] = field(default_factory=dict)

    def get(self, env: str, job_type: str) -> TypeState | None:
        return self.states.get((env, job_type))


@dataclass
class FakeDispatcher:
    """Records the deliveries a real dispatcher would create."""

    dispatched: list[tuple[str, int, datetime | None]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    fail: bool = False

    def dispatch(self, env: Environment, job: Job, *, n: int, when: datetime | None) -> str:
        if self.fail:
            from google.api_core import exceptions as gexc

            raise gexc.ServiceUnavailable("fake dispatcher is down")
        self.dispatched.append((job.id, n, when))
        return f"{job.id}-{n}"

    def dispatch_soon(self, env: Environment, job: Job, *, n: int, when: datetime | None) -> Future[str]:
        """`dispatch`, done at once; the future holds the task name or the error (as the real one's)."""
        done: Future[str] = Future()
        try:
            done.set_result(self.dispatch(env, job, n=n, when=when))
        except Exception as exc:  # handed over in the future, as a thread pool would
            done.set_exception(exc)
        return done

    def dispatch_many(
        self, env: Environment, jobs: Sequence[tuple[Job, int, datetime | None]]
    ) -> list[BaseException | None]:
        return [None for job, n, when in jobs if self.dispatch(env, job, n=n, when=when)]

    def delete(self, env: Environment, job: Job) -> bool:
        self.deleted.append(job.id)
        return True

    def exists(self, env: Environment, job: Job) -> bool:
        return any(j == job.id and n == job.dispatch_count for j, n, _ in self.dispatched)


@dataclass
class RecordingFlow:
    """Stands in for `jobrelay.flow.Flow`: records ends and re-dispatches instead of acting on them."""

    ended_jobs: list[tuple[str, Job]] = field(default_factory=list)
    redispatched: list[tuple[str, Job]] = field(default_factory=list)
    moved: list[tuple[str, str, Job]] = field(default_factory=list)  # (what, env, job): started, waiting, fan_in
    attempts: list[tuple[str, bool]] = field(default_factory=list)  # (job id, succeeded)
    states: StaticStates = field(default_factory=StaticStates)

    def admit(self, store: Any, job: Job, update_time: datetime, decide: Any, **kw: Any) -> Any:
        """The real gates (jobrelay.gates) over these states, re-dispatching into this recording."""
        from jobrelay.gates import Gates

        return Gates(self.states, self.redispatch).claim(store, job, update_time, decide, **kw)

    def attempted(self, env: str, job: Job, succeeded: bool) -> None:
        self.attempts.append((job.id, succeeded))

    def ended(self, env: str, job: Job) -> None:
        self.ended_jobs.append((env, job))

    def redispatch(self, env: str, job: Job) -> None:
        self.redispatched.append((env, job))

    def started(self, env: str, job: Job) -> None:
        self.moved.append(("started", env, job))

    def waiting(self, env: str, job: Job) -> None:
        self.moved.append(("waiting", env, job))

    def fan_in(self, env: str, job: Job) -> None:
        self.moved.append(("fan_in", env, job))

    def statuses(self) -> list[Status]:
        return [job.status for _, job in self.ended_jobs]


def job_doc(job_id: str = "job-000001", *, env: str = "dev", **fields: Any) -> dict[str, Any]:
    """A queued job document as `JobService.prepare` writes one."""
    doc: dict[str, Any] = {
        "id": job_id,
        "env": env,
        "type": "echo",
        "class": "A",
        "route": "tasks",
        "status": Status.QUEUED.value,
        "owner": "alice",
        "payload": {"message": "hi"},
        "attempt": 0,
        "max_attempts": 3,
        "timeout_seconds": 60,
        "created_at": now(),
        "labels": {},
    }
    doc.update(fields)
    return doc


class FakeAuth:
    """Tokens are `uid` or `uid+admin` or `uid+role:reporter`: the signature checks are tested elsewhere."""

    def caller(self, env: Environment, authorization: str | None) -> Any:
        from jobrelay.auth import Caller, bearer

        uid, *claims = bearer(authorization).split("+")
        roles = frozenset(c.removeprefix("role:") for c in claims if c.startswith("role:"))
        return Caller(uid=uid, kind="user", admin="admin" in claims, roles=roles)

    def verify_google(self, token: str, *, audience: str, allowed: Any) -> str:
        from jobrelay.errors import PermissionDenied, Unauthenticated

        if not token.startswith("sa:"):
            raise Unauthenticated("invalid Google OIDC token: fake")
        email = token.removeprefix("sa:")
        if email not in allowed:
            raise PermissionDenied(f"service account {email} is not allowed here")
        return email


def fake_deployment(envs: tuple[str, ...] = ("dev",)) -> Any:
    """A `Deployment` whose stores, dispatchers, auth, quotas and flow are the fakes above."""
    import jobs  # noqa: F401  (registers the offered job types)
    from jobrelay.deployment import Deployment
    from jobrelay.infra_files import load_infra
    from jobrelay.process_settings import RuntimeSettings
    from jobrelay.quotas import QuotaGuard
    from jobrelay.registry import registry

    d = Deployment(settings=RuntimeSettings(envs=",".join(envs)), infra=load_infra(), registry=registry)
    d.stores = {e: FakeJobStore(e) for e in envs}  # type: ignore[misc]
    d.dispatchers = {e: FakeDispatcher() for e in envs}  # type: ignore[misc]
    d.auth = FakeAuth()  # type: ignore[misc, assignment]
    d.quotas = QuotaGuard(count_waiting=lambda env, uid: 0)  # type: ignore[misc]
    d.flow = RecordingFlow()  # type: ignore[misc, assignment]
    return d


class FakeRequestStore:
    """`job_requests` of one env in memory, with the guarded writes of jobrelay.intake.RequestStore."""

    def __init__(self, jobs: FakeJobStore) -> None:
        self.jobs = jobs
        self.docs: dict[str, dict[str, Any]] = {}
        self.times: dict[str, tuple[datetime, datetime]] = {}  # id -> (create, update)
        self.writes = 0
        self.before_write: Callable[[], None] | None = None  # an outside change, just before our write
        self._clock = itertools.count(1)

    def put(self, request_id: str, fields: dict[str, Any], *, age: timedelta = timedelta(0)) -> None:
        """An app's new request (written `age` ago)."""
        at = now() - age
        self.docs[request_id] = dict(fields)
        self.times[request_id] = (at, at)

    def _touch(self, request_id: str, fields: dict[str, Any]) -> None:
        from google.cloud import firestore

        doc = self.docs[request_id]
        for k, v in fields.items():
            if v is firestore.DELETE_FIELD:
                doc.pop(k, None)
            else:
                doc[k] = now() if v is firestore.SERVER_TIMESTAMP else v
        self.writes += 1
        self.times[request_id] = (self.times[request_id][0], now() + timedelta(microseconds=next(self._clock)))

    def get(self, request_id: str) -> Any:
        from jobrelay.intake import Stored

        if request_id not in self.docs:
            return None
        created, updated = self.times[request_id]
        return Stored(request_id, dict(self.docs[request_id]), updated, created)

    def pending(self, page_size: int = 200) -> Any:
        return [self.get(i) for i in sorted(self.docs) if self.docs[i].get("status") == "pending"]

    def _fresh(self, stored: Any) -> bool:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        return stored.id in self.docs and self.times[stored.id][1] == stored.update_time

    @staticmethod
    def accepted_fields(job_id: str) -> dict[str, Any]:
        from jobrelay.intake import RequestStore

        return RequestStore.accepted_fields(job_id)

    def refuse(self, stored: Any, error: dict[str, Any]) -> bool:
        from jobrelay.intake import RequestStore

        if not self._fresh(stored):
            return False
        self._touch(stored.id, RequestStore.refused_fields(error))
        return True

    def accept(self, stored: Any, job_doc: dict[str, Any]) -> bool | None:
        if not self._fresh(stored):
            return False
        if job_doc["id"] in self.jobs.docs:
            return None
        self.jobs.create(job_doc)
        self._touch(stored.id, self.accepted_fields(job_doc["id"]))
        return True

    def mark(self, stored: Any, job_id: str) -> bool:
        if not self._fresh(stored):
            return False
        self._touch(stored.id, self.accepted_fields(job_id))
        return True


@dataclass
class FakeOwners:
    """Users of the env's Firebase project: uid -> Caller; a uid in `down` makes Firebase Auth unreachable."""

    users: dict[str, Any] = field(default_factory=dict)
    down: bool = False

    def add(self, uid: str, *, admin: bool = False, roles: Iterable[str] = ()) -> None:
        from jobrelay.auth import Caller

        self.users[uid] = Caller(uid=uid, kind="user", admin=admin, roles=frozenset(roles))

    def caller(self, env: Environment, uid: str) -> Any:
        from jobrelay.errors import Unauthenticated, Unavailable

        if self.down:
            raise Unavailable("cannot look the owner up in Firebase Auth now: fake outage")
        if uid not in self.users:
            raise Unauthenticated(f"owner {uid!r} is no user of env {env.name}'s Firebase project {env.project}")
        return self.users[uid]


def fake_intake(d: Any) -> tuple[Any, FakeRequestStore, FakeOwners]:
    """An Intake on the fake deployment's job service, with fake requests and owners (dev only)."""
    from jobrelay.appcheck import AppCheckVerifier
    from jobrelay.intake import Intake

    requests = FakeRequestStore(d.stores["dev"])
    owners = FakeOwners()
    intake = Intake(d.service, owners, AppCheckVerifier(d.settings), stores={"dev": requests})  # type: ignore[arg-type, dict-item]
    return intake, requests, owners
