"""From job request to job: each committed `job_requests/{id}` becomes exactly one job, or an error.

Eventarc (the cloud) or the local stack's listener (jobrelay.local.eventarc) announces each new
request with a CloudEvent; the maintenance pass sweeps up any request left `pending` past
`request_sweep_seconds` (events lost while the API was down). Either way `Intake.process` runs:

1. read the request (the document is the truth; the event is only a notice), 1 read;
2. a request no longer `pending` is a repeat: its outcome is answered again, nothing is written;
3. check it as `POST /v1/envs/{env}/jobs` checks a spec: its shape, the owner (a user of the env's
   Firebase project, with the custom claims Firebase Auth holds now), the env's roles, App Check
   (the token in `app_check` must have been valid when the request was committed), the job type,
   payload and roles (JobService.prepare), the owner's quotas;
4. refused: `status: refused` and `error` {code, message, details} as the API would answer, no job;
   accepted: the job (id derived from the request id) and `status: accepted`, `job_id` in one atomic
   commit guarded by the request's update time, then the job's Cloud Task.

A repeated event, a sweep racing an event, or two API instances can never make two jobs or give one
request both outcomes: the job id is fixed, the create fails if the job exists, and the request is
written only if nobody changed it since it was read. A dependency that cannot be reached now
(Unavailable) leaves the request pending, to be tried again (Eventarc retries on 503; so does the sweep).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from jobrelay.access import Grants
from jobrelay.appcheck import AppCheckVerifier
from jobrelay.auth import Caller
from jobrelay.cloudevents import CREATED, DocumentEvent, NotJson
from jobrelay.errors import BadRequest, NotFound, PermissionDenied, Refused, Unauthenticated, Unavailable, Unprocessable
from jobrelay.models import now
from jobrelay.prepare import Prepared
from jobrelay.requests import (
    MAX_OWNER,
    OWNER_FIELDS,
    REQUEST_ID_RULE,
    REQUESTS,
    SPEC_FIELDS,
    RequestStatus,
    is_request_id,
    job_id_for,
)
from jobrelay.service import JobService, _undispatched
from jobrelay.settings import Environment
from jobrelay.store import CAS_RETRIES, JobStore, to_job

log = logging.getLogger("jobrelay.intake")

OWNER_CACHE_SECONDS = 30.0  # a claim change reaches requests within this (ID tokens take up to an hour)
PAGE_SIZE = 200


@dataclass(frozen=True)
class Stored:
    """A request as read: its fields, and the times a guarded write and App Check need."""

    id: str
    data: dict[str, Any]
    update_time: datetime
    create_time: datetime

    @property
    def status(self) -> str:
        return str(self.data.get("status"))


@dataclass(frozen=True)
class Outcome:
    """What became of a request."""

    request_id: str
    status: str  # a RequestStatus, or "gone" (no such request)
    job_id: str | None = None
    error: dict[str, Any] | None = None
    repeat: bool = False  # decided before: this call wrote nothing

    def body(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "status": self.status,
            "job_id": self.job_id,
            "error": self.error,
            "repeat": self.repeat,
        }


@dataclass
class SweepReport:
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: {"count": len(v), "requests": v[:50]} for k, v in self.__dict__.items()}


class RequestStore:
    """The `job_requests` of one env, beside its jobs."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self.client = jobs.client
        self.requests = jobs.client.collection(REQUESTS)

    def get(self, request_id: str) -> Stored | None:
        snap = self.requests.document(request_id).get()
        return _stored(snap) if snap.exists else None

    def pending(self, page_size: int = PAGE_SIZE) -> Iterator[Stored]:
        """Every pending request, a page at a time (few at any moment: the events take them at once)."""
        q: Any = self.requests.where(filter=firestore.FieldFilter("status", "==", RequestStatus.PENDING.value))
        q = q.order_by("__name__")
        last: Any = None
        while True:
            snaps = list((q.start_after(last) if last is not None else q).limit(page_size).stream())
            yield from (_stored(s) for s in snaps)
            if len(snaps) < page_size:
                return
            last = snaps[-1]

    def _guard(self, stored: Stored) -> Any:
        return self.client.write_option(last_update_time=stored.update_time)

    @staticmethod
    def refused_fields(error: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": RequestStatus.REFUSED.value,
            "error": error,
            "processed_at": firestore.SERVER_TIMESTAMP,
            "app_check": firestore.DELETE_FIELD,
        }

    @staticmethod
    def accepted_fields(job_id: str) -> dict[str, Any]:
        return {
            "status": RequestStatus.ACCEPTED.value,
            "job_id": job_id,
            "processed_at": firestore.SERVER_TIMESTAMP,
            "app_check": firestore.DELETE_FIELD,  # a bearer token has no business staying in a document
        }

    def refuse(self, stored: Stored, error: dict[str, Any]) -> bool:
        """Mark it refused, if nobody changed it since it was read (False: read it again)."""
        try:
            self.requests.document(stored.id).update(self.refused_fields(error), option=self._guard(stored))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True

    def accept(self, stored: Stored, job_doc: dict[str, Any]) -> bool | None:
        """Create the job and mark the request accepted, atomically. False: the request changed since it
        was read; None: the job exists already (a request id used again after its request was deleted)."""
        batch = self.client.batch()
        batch.create(self.jobs.jobs.document(job_doc["id"]), job_doc)
        batch.update(self.requests.document(stored.id), self.accepted_fields(job_doc["id"]), option=self._guard(stored))
        try:
            batch.commit()
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        except gexc.AlreadyExists:
            return None
        return True

    def mark(self, stored: Stored, job_id: str) -> bool:
        """Point the request at a job that exists already."""
        try:
            self.requests.document(stored.id).update(self.accepted_fields(job_id), option=self._guard(stored))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True


def _stored(snap: Any) -> Stored:
    return Stored(id=snap.id, data=snap.to_dict() or {}, update_time=snap.update_time, create_time=snap.create_time)


class Owners:
    """The owner of a request as a caller: a user of the env's Firebase project, its claims as Auth holds them."""

    def __init__(self, cache_seconds: float = OWNER_CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Caller]] = {}
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _app(self, env: Environment) -> Any:
        with self._lock:
            app = self._apps.get(env.name)
            if app is None:
                import firebase_admin

                name = f"jobrelay-intake-{env.name}"
                try:
                    app = firebase_admin.get_app(name)
                except ValueError:
                    app = firebase_admin.initialize_app(options={"projectId": env.project}, name=name)
                self._apps[env.name] = app
            return app

    def caller(self, env: Environment, uid: str) -> Caller:
        key = (env.name, uid)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        from firebase_admin import auth, exceptions

        try:
            user = auth.get_user(uid, app=self._app(env))
        except auth.UserNotFoundError as exc:
            raise Unauthenticated(
                f"owner {uid!r} is no user of env {env.name}'s Firebase project {env.project}", {"field": "owner"}
            ) from exc
        except ValueError as exc:
            raise Unprocessable(f"owner {uid[:MAX_OWNER]!r} is not a Firebase uid", [{"field": "owner"}]) from exc
        except exceptions.FirebaseError as exc:
            raise Unavailable(f"cannot look the owner up in Firebase Auth now: {exc}") from exc
        if user.disabled:
            raise Unauthenticated(f"user {uid} is disabled in env {env.name}", {"field": "owner"})
        grants = Grants.of(user.custom_claims)
        caller = Caller(uid=uid, kind="user", admin=grants.admin, roles=frozenset(grants.roles), email=user.email)
        with self._lock:
            self._cache[key] = (time.monotonic(), caller)
        return caller


class Intake:
    """Turns the job requests of the served envs into jobs."""

    def __init__(
        self,
        service: JobService,
        owners: Owners,
        app_check: AppCheckVerifier,
        *,
        sweep_after: timedelta = timedelta(seconds=30),
        stores: Mapping[str, RequestStore] | None = None,
    ) -> None:
        self.service = service
        self.owners = owners
        self.app_check = app_check
        self.sweep_after = sweep_after
        self.stores = dict(stores) if stores is not None else {e: RequestStore(s) for e, s in service.stores.items()}

    def env_of_project(self, project: str) -> str:
        for name in self.stores:
            if self.service.infra.env(name).project == project:
                return name
        raise NotFound(f"project {project} is the project of no env served here ({', '.join(self.stores)})")

    def handle_event(self, event: DocumentEvent, *, env: str, trace_id: str | None = None) -> Outcome:
        """A `document.created` event of `job_requests/{id}` in `env` (whose Eventarc account sent it)."""
        if event.type != CREATED:
            raise BadRequest(f"ce-type {event.type[:100]!r} is not {CREATED}", {"header": "ce-type"})
        if self.env_of_project(event.project) != env:
            raise PermissionDenied(f"the events of project {event.project} are not env {env}'s")
        if event.database != "(default)":
            raise BadRequest(f"database {event.database!r}: jobrelay uses the (default) database")
        if event.collection != REQUESTS or not is_request_id(event.doc_id):
            raise BadRequest(
                f"the event's document must be {REQUESTS}/{{id}} ({REQUEST_ID_RULE})", {"header": "ce-document"}
            )
        return self.process(env, event.doc_id, trace_id=trace_id)

    def process(self, env: str, request_id: str, *, trace_id: str | None = None) -> Outcome:
        """Decide the request once; any later call answers that decision again."""
        store = self.stores[env]
        for _ in range(CAS_RETRIES):
            stored = store.get(request_id)
            if stored is None:
                return Outcome(request_id, "gone")
            if stored.status != RequestStatus.PENDING:
                return self._repeat(env, stored)
            try:
                prepared, caller = self._prepare(env, stored, trace_id)
                outcome = self._accept(env, store, stored, prepared, caller)
            except Unavailable:
                raise  # not the request's fault: it stays pending and is tried again
            except Refused as exc:
                error = _storable(exc.body()["error"])
                if store.refuse(stored, error):
                    log.info("job request %s in %s refused: %s", request_id, env, exc.message)
                    return Outcome(request_id, RequestStatus.REFUSED.value, error=error)
                continue
            if outcome is not None:
                return outcome
            # somebody else decided it meanwhile: read their decision
        raise Unavailable(f"job request {request_id}: too many concurrent changes; try again")

    def _repeat(self, env: str, stored: Stored) -> Outcome:
        job_id = stored.data.get("job_id")
        if stored.status == RequestStatus.ACCEPTED and isinstance(job_id, str):
            job = self.service.stores[env].get(job_id)
            if job is not None and _undispatched(job, created=False):
                self.service.dispatch_job(env, job)  # the first call died before the task; its name de-duplicates
        error = stored.data.get("error")
        return Outcome(
            stored.id,
            stored.status,
            job_id=job_id if isinstance(job_id, str) else None,
            error=error if isinstance(error, dict) else None,
            repeat=True,
        )

    def _prepare(self, env_name: str, stored: Stored, trace_id: str | None) -> tuple[Prepared, Caller]:
        env = self.service.env(env_name)
        data = stored.data
        unknown = sorted(set(data) - set(SPEC_FIELDS) - set(OWNER_FIELDS))
        if unknown:
            raise Unprocessable(
                f"a job request holds a job spec's fields ({', '.join(SPEC_FIELDS)}) and {', '.join(OWNER_FIELDS)}; "
                f"not {', '.join(unknown[:5])}",
                [{"field": f, "problem": "unknown field"} for f in unknown[:20]],
            )
        owner = data.get("owner")
        if not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER:
            raise Unprocessable("owner must be the uid of the user the job is for", [{"field": "owner"}])
        spec = {k: data[k] for k in SPEC_FIELDS if k in data}
        _json_only(spec)
        caller = self.owners.caller(env, owner)
        if not caller.may_use(env.access.roles):
            raise PermissionDenied(
                f"user {caller.uid} may not use env {env.name!r}: it needs one of the roles {list(env.access.roles)}"
            )
        self.app_check.check(
            env, caller, data.get("app_check"), at=stored.create_time, where="the request's app_check field"
        )
        prepared = self.service.preparer.prepare(env, caller, spec, trace_id=trace_id, job_id=job_id_for(stored.id))
        prepared.doc["request_id"] = stored.id
        self.service.quotas.check(env.name, caller.uid, env.quotas)
        return prepared, caller

    def _accept(
        self, env: str, store: RequestStore, stored: Stored, prepared: Prepared, caller: Caller
    ) -> Outcome | None:
        doc = prepared.doc
        if prepared.spec.depends_on:
            written = self._accept_linked(env, store, stored, doc, caller)
            if written is None:
                return None
            job, created = written
        else:
            done = store.accept(stored, doc)
            if done is False:
                return None
            if done is None:  # the job exists already: point the request at it
                existing = store.jobs.get(doc["id"])
                if existing is None or not store.mark(stored, existing.id):
                    return None
                return Outcome(stored.id, RequestStatus.ACCEPTED.value, job_id=existing.id)
            job, created = to_job(doc), True
        if _undispatched(job, created):
            self.service.dispatch_job(env, job)
        log.info(
            "job request %s in %s became job %s",
            stored.id,
            env,
            job.id,
            extra={"labels": {"env": env, "job_id": job.id, "type": job.type, "class": job.job_class}},
        )
        return Outcome(stored.id, RequestStatus.ACCEPTED.value, job_id=job.id)

    def _accept_linked(
        self, env: str, store: RequestStore, stored: Stored, doc: dict[str, Any], caller: Caller
    ) -> tuple[Any, bool] | None:
        from jobrelay import dependencies

        def mark(transaction: firestore.Transaction) -> None:
            transaction.update(
                store.requests.document(stored.id),
                store.accepted_fields(doc["id"]),
                option=store.client.write_option(last_update_time=stored.update_time),
            )

        try:
            [written] = dependencies.create_linked(
                store.jobs,
                [doc],
                owner=caller.uid,
                admin=caller.admin,
                retention_days=self.service.env(env).retention_days,
                same=lambda d, existing: None,  # the id is the request's: an existing job is this request's
                also=mark,
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        return written

    def sweep(self, env: str, *, at: datetime | None = None) -> SweepReport:
        """Process every request still pending `sweep_after` after it was written (its event was lost)."""
        cutoff = (at or now()) - self.sweep_after
        report = SweepReport()
        for stored in self.stores[env].pending():
            if stored.create_time > cutoff:
                continue  # its event is probably on its way
            try:
                outcome = self.process(env, stored.id)
            except Unavailable as exc:
                log.warning("job request %s in %s: %s; the next pass tries again", stored.id, env, exc.message)
                report.unavailable.append(stored.id)
                continue
            if not outcome.repeat:
                (report.accepted if outcome.status == RequestStatus.ACCEPTED else report.refused).append(stored.id)
        if report.accepted or report.refused:
            log.warning("sweep in %s: %d requests had no event", env, len(report.accepted) + len(report.refused))
        return report


def _json_only(spec: Mapping[str, Any], path: str = "") -> None:
    """A spec's values must be JSON's (run_at may be a timestamp): bytes, references and geo points are refused."""
    stack: list[tuple[str, Any]] = [(f"{path}{k}", v) for k, v in spec.items()]
    while stack:
        where, value = stack.pop()
        if isinstance(value, NotJson) or (isinstance(value, datetime) and where != "run_at"):
            kind = value.kind if isinstance(value, NotJson) else "timestamp"
            raise Unprocessable(f"{where}: a {kind} value is not JSON", [{"field": where, "problem": f"{kind} value"}])
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}", v) for i, v in enumerate(value))
        elif value is not None and not isinstance(value, bool | int | float | str | datetime):
            raise Unprocessable(f"{where}: not a JSON value", [{"field": where, "problem": "not JSON"}])


def _storable(value: Any) -> Any:
    """An error body Firestore can hold: no array directly inside an array."""
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [str(v) if isinstance(v, list | tuple) else _storable(v) for v in value]
    return value
