"""What the flow-control routes do, without HTTP: pause and resume a type, list types, bulk cancel.

The API checks who calls (operators pause, resume and list; owners bulk-cancel their own jobs,
operators anyone's) and hands the request here. Pauses and breakers live in `type_states`
(jobrelay.typestates), bulk work in `bulk_operations` run by the internal job type
`jobrelay.operation` (jobrelay.bulk), whose handler calls `run_operation`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobrelay import bulk, lifecycle, typestates
from jobrelay.auth import Caller
from jobrelay.breakers import config as breaker_config
from jobrelay.builtin import SYSTEM_ROLE
from jobrelay.context import JobContext
from jobrelay.dispatch import Dispatcher
from jobrelay.errors import NotFound, PermissionDenied, TransitionRefused, Unprocessable
from jobrelay.flow import Flow
from jobrelay.lifecycle import Cancel
from jobrelay.models import CONTROL_CHARS, Job, Status, now
from jobrelay.namespace import OPERATIONS, TYPE_STATES
from jobrelay.registry import INTERNAL_PREFIX, Registry
from jobrelay.service import JobService
from jobrelay.settings import Infra
from jobrelay.stats import type_counts
from jobrelay.store import Change, JobStore
from jobrelay.transactions import Tx
from jobrelay.typestates import OPERATOR, TypeState
from jobrelay.validation import validation_details

log = logging.getLogger("jobrelay.flowcontrol")

OPERATION_JOB = bulk.OPERATION_JOB
# The internal job of an operation is owned by jobrelay, so no caller's filter selects it.
SYSTEM = Caller(uid="jobrelay-operations", kind="service", admin=True, roles=frozenset({SYSTEM_ROLE}))


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Annotated[str, Field(min_length=1, max_length=typestates.MAX_REASON)]

    @field_validator("reason")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not v.strip() or CONTROL_CHARS.search(v):
            raise ValueError("a reason is text on one line (no control characters)")
        return v


def _validated(model: type[BaseModel], raw: Any, what: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc)
        raise Unprocessable(f"invalid {what}: {details[0]['field']}: {details[0]['problem']}", details) from exc


class FlowControl:
    """Pauses, breakers and bulk operations of the envs whose stores it holds."""

    def __init__(
        self,
        infra: Infra,
        registry: Registry,
        stores: Mapping[str, JobStore],
        flow: Flow,
        service: JobService,
        dispatchers: Mapping[str, Dispatcher],
    ) -> None:
        self.infra, self.registry, self.stores, self.flow = infra, registry, stores, flow
        self.service, self.dispatchers = service, dispatchers

    def _client(self, env: str) -> firestore.Client:
        return self.stores[env].client

    def _type(self, env: str, job_type: str) -> str:
        """A type that may be paused in `env`: offered there, not jobrelay's own."""
        jt = self.registry.get(job_type)
        if jt is not None and jt.internal:
            raise Unprocessable(
                f"type {job_type!r} is jobrelay's own and is never paused",
                [{"field": "job_type", "problem": "internal type"}],
            )
        offered = jt is not None and (self.infra.env(env).allow_test_jobs or not jt.test_only)
        if not offered or typestates.doc_id(job_type) is None:
            names = sorted(n for n, t in self.registry.types.items() if not t.internal)
            raise Unprocessable(
                f"unknown job type {job_type[:100]!r} in env {env}; types: {', '.join(names)}",
                [{"field": "job_type", "problem": "unknown job type"}],
            )
        return job_type

    # -- types, pause and resume -----------------------------------------------------------------

    def _waiting(self, env: str, job_type: str) -> int:
        return bulk.waiting_count(self._client(env), job_type)

    def _state_view(self, env: str, name: str, state: TypeState | None) -> dict[str, Any]:
        view = (state or TypeState(type=name)).public()
        view["waiting"] = self._waiting(env, name) if state is not None and state.paused else 0
        cfg = breaker_config(self.infra, env, name)
        view["breaker_config"] = cfg.model_dump() if cfg is not None else None
        return view

    def types(self, env: str) -> dict[str, Any]:
        """Every type offered in `env`: its pause and breaker, how many jobs wait behind a pause, queue and run."""
        docs = {
            s.id: TypeState.model_validate(s.to_dict() or {})
            for s in self._client(env).collection(TYPE_STATES).stream()
        }
        env_s = self.infra.env(env)
        names = sorted(
            n for n, t in self.registry.types.items() if not t.internal and (env_s.allow_test_jobs or not t.test_only)
        )
        rows = [self._state_view(env, n, docs.get(n)) for n in names]
        # How many of each type's jobs wait and run (the console's types table), beside its state.
        counts = type_counts(self._client(env), env=env, types=names)
        by_type = {row["type"]: row for row in counts["types"]}
        for row in rows:
            row.update(by_type.get(row["type"], {}))
        return {"env": env, "generated_at": counts["generated_at"], "types": rows}

    def paused(self, env: str) -> list[dict[str, Any]]:
        """The paused types of `env` (for stats and queues)."""
        q = self._client(env).collection(TYPE_STATES).where(filter=firestore.FieldFilter("paused", "==", True))
        return [self._state_view(env, s.id, TypeState.model_validate(s.to_dict() or {})) for s in q.stream()]

    def pause(self, env: str, caller: Caller, job_type: str, raw: Any) -> dict[str, Any]:
        name = self._type(env, job_type)
        body: PauseRequest = _validated(PauseRequest, raw, "pause request")
        at = now()

        def fn(tx: Tx) -> tuple[TypeState, bool]:
            before = typestates.read(tx, name)
            if before is not None and before.paused and before.source == OPERATOR:
                return before, False  # already paused by an operator: the first pause stands
            state = typestates.paused(name, source=OPERATOR, reason=body.reason, by=caller.uid, at=at, before=before)
            typestates.write(tx, state)
            return state, True

        state, changed = self.stores[env].transact(fn, turn=(f"{TYPE_STATES}/{name}",))
        if changed:
            log.warning("type %s paused in %s by %s: %s", name, env, caller.uid, body.reason)
        return {"type_state": self._state_view(env, name, state), "changed": changed}

    def resume(self, env: str, caller: Caller, job_type: str, raw: Any) -> dict[str, Any]:
        name = self._type(env, job_type)
        if raw is not None:
            _validated(_NoFields, raw, "resume request")
        at = now()

        def fn(tx: Tx) -> tuple[TypeState | None, bool]:
            state = typestates.read(tx, name)
            if state is None or not state.paused:
                return state, False
            state = typestates.resumed(state, by=caller.uid, at=at)
            typestates.write(tx, state)
            return state, True

        state, changed = self.stores[env].transact(fn, turn=(f"{TYPE_STATES}/{name}",))
        if changed:
            log.warning("type %s resumed in %s by %s", name, env, caller.uid)
        waiting = self._waiting(env, name)
        op = self.start_release(env, name, caller.uid) if waiting and (state is None or not state.paused) else None
        return {
            "type_state": self._state_view(env, name, state),
            "changed": changed,
            "operation": op.public() if op is not None else None,
        }

    # -- operations -------------------------------------------------------------------------------

    def _start(self, env: str, kind: str, filter_: dict[str, Any], by: str, matched: int) -> bulk.Operation:
        op_id = "op-" + secrets.token_hex(10)
        op = bulk.Operation.model_validate(
            {
                "id": op_id,
                "env": env,
                "kind": kind,
                "filter": filter_,
                "by": by,
                "created_at": now(),
                "matched": matched,
            }
            | {"job_id": op_id}
        )
        self._client(env).collection(OPERATIONS).document(op_id).set(op.model_dump(mode="python"))
        self.service.submit(env, SYSTEM, {"type": OPERATION_JOB, "payload": {"operation_id": op_id}}, job_id=op_id)
        log.info("bulk %s %s started in %s by %s (%d jobs)", kind, op_id, env, by, matched)
        return op

    def start_release(self, env: str, job_type: str, by: str) -> bulk.Operation:
        """Dispatch, oldest first, every job that waited behind the type's pause (or open breaker)."""
        return self._start(env, "release", {"type": job_type}, by, self._waiting(env, job_type))

    def bulk_cancel(self, env: str, caller: Caller, raw: Any) -> dict[str, Any]:
        body: bulk.BulkCancel = _validated(bulk.BulkCancel, raw, "bulk cancel")
        f = body.filter
        bulk.check(f, self.infra.directory / "firestore.indexes.json")
        if not caller.admin:
            if f.owner not in (None, caller.uid):
                raise PermissionDenied(
                    f"only operators may cancel another user's jobs ({caller.uid} asked for {f.owner})"
                )
            f = f.model_copy(update={"owner": caller.uid})
            bulk.check_indexed(f, self.infra.directory / "firestore.indexes.json")  # as it is queried now
        client = self._client(env)
        n = bulk.count(client, f)
        answer: dict[str, Any] = {"dry_run": body.dry_run, "count": n, "filter": f.model_dump(mode="json")}
        if body.dry_run:
            return {**answer, "sample": bulk.sample(client, f)}
        op = self._start(env, "cancel", f.model_dump(mode="json"), caller.uid, n) if n else None
        return {**answer, "operation": op.public() if op is not None else None}

    def operation(self, env: str, caller: Caller, op_id: str) -> dict[str, Any]:
        snap = self._client(env).collection(OPERATIONS).document(op_id).get() if bulk_id(op_id) else None
        op = bulk.Operation.model_validate(snap.to_dict() or {}) if snap is not None and snap.exists else None
        if op is None or (op.by != caller.uid and not caller.admin):
            raise NotFound(f"operation {op_id[:60]!r} not found in env {env}", {"operation_id": op_id[:60]})
        return op.public()

    def run_operation(self, env: str, op_id: str, ctx: JobContext) -> dict[str, Any]:
        """The internal job's work: go on with the operation from its cursor until it is done."""
        store = self.stores[env]
        snap = store.client.collection(OPERATIONS).document(op_id).get()
        if not snap.exists:
            raise NotFound(f"operation {op_id} not found in env {env}")
        op = bulk.Operation.model_validate(snap.to_dict() or {})
        if op.status != "running":
            return op.public()
        if op.kind == "cancel":
            qs, act = (
                bulk.queries(store.client, bulk.CancelFilter.model_validate(op.filter)),
                self._canceller(env, op.by),
            )
        else:
            qs, act = bulk.waiting_behind(store.client, op.filter["type"]), self._releaser(env, op.filter["type"])
        return bulk.run(
            store, op, qs, act, progress=lambda d, t: ctx.progress(d, t), stop=lambda: ctx.cancelled
        ).public()

    def _canceller(self, env: str, by: str) -> bulk.Act:
        store, env_s = self.stores[env], self.infra.env(env)

        def act(job: Job, update_time: datetime) -> bulk.Outcome:
            if job.type.startswith(INTERNAL_PREFIX):
                return "skipped"
            at = now()

            def decide(j: Job) -> Change[Cancel]:
                d = lifecycle.decide_cancel(j, at=at, by=by, expire_at=at + timedelta(days=env_s.retention_days))
                return Change(d.outcome, d.fields or None)

            try:
                written = store.transition(job.id, decide, base=(update_time, job))
            except TransitionRefused:
                return "skipped"  # it ended meanwhile
            if written.outcome == Cancel.CANCELLED:
                self.dispatchers[env].delete(env_s, written.job)
                self.flow.ended(env, written.job)
                return "cancelled"
            return "stop_requested" if written.outcome == Cancel.REQUESTED else "skipped"

        return act

    def _releaser(self, env: str, job_type: str) -> bulk.Act:
        store = self.stores[env]
        on = f"type:{job_type}"

        def act(job: Job, update_time: datetime) -> bulk.Outcome:
            at = now()

            def decide(j: Job) -> Change[bool]:
                if j.waiting_for is None or j.waiting_for.on != on or j.status not in (Status.QUEUED, Status.RETRYING):
                    return Change(False)
                return Change(True, lifecycle.unpark(j, at=at))

            written = store.transition(job.id, decide, base=(update_time, job))
            if not written.outcome:
                return "skipped"
            self.flow.redispatch(env, written.job)
            return "released"

        return act


class _NoFields(BaseModel):
    model_config = ConfigDict(extra="forbid")


def bulk_id(value: str) -> bool:
    """Whether `value` can be an operation id (a document id this module made)."""
    return value.startswith("op-") and len(value) == 23 and all(c in "0123456789abcdef" for c in value[3:])
