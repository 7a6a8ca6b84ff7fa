"""Dead letters: jobs that failed for good, published to the env's topic, recorded, redriven.

The worker marks a job `failed`, publishes a `DeadLetterMessage` to the env's dead-letter topic and
then marks it `dead_lettered`; if it dies in between, the maintenance pass publishes again (the
record is keyed by job id, so a second copy changes nothing). The dead-letter service records each
message in `dead_letters/{job_id}`. Operators list them grouped by error fingerprint, show one,
and redrive one, a fingerprint's group or all (dry-run first): the job runs again as a new attempt.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, field_validator

from jobrelay import lifecycle
from jobrelay.errors import TransitionRefused
from jobrelay.models import JOB_ID_RULE, ErrorInfo, Job, Status, is_job_id, now, rfc3339
from jobrelay.namespace import DEAD_LETTERS as DEAD_LETTERS
from jobrelay.store import Change, JobStore, Written
from jobrelay.validation import FINGERPRINT_CHARS

log = logging.getLogger("jobrelay.deadletters")
FINGERPRINT = re.compile(FINGERPRINT_CHARS + r"\Z")
FINGERPRINT_RULE = "a fingerprint is 1-64 letters, digits, _ or - (as `jobrelay dlq list` shows them)"
MAX_REDRIVE_IDS = 500


def is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and FINGERPRINT.match(value) is not None


class DeadLetterMessage(BaseModel):
    """What the dead-letter topic carries (also what the pool's poison messages are turned into)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    env: str
    job_id: str
    type: str = ""
    job_class: str = ""
    owner: str = ""
    attempt: int = 0
    error: ErrorInfo | None = None
    dead_at: datetime | None = None
    trace_id: str | None = None
    source: str = "worker"
    # Pool poison messages only: the dispatch number the message carried (stale when the job was
    # dispatched again since).
    dispatch: int | None = None

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, v: str) -> str:
        if not is_job_id(v):  # it names the dead_letters/{job_id} document
            raise ValueError(JOB_ID_RULE)
        return v

    @classmethod
    def of(cls, env: str, job: Job, source: str = "worker") -> DeadLetterMessage:
        return cls(
            env=env,
            job_id=job.id,
            type=job.type,
            job_class=job.job_class,
            owner=job.owner,
            attempt=job.attempt,
            error=job.error,
            dead_at=job.finished_at or now(),
            trace_id=job.trace_id,
            source=source,
        )


def publish(publisher: Any, project: str, topic: str, msg: DeadLetterMessage) -> str:
    """Publish one dead letter; returns the message id."""
    path = publisher.topic_path(project, topic)
    attrs = {
        "env": msg.env,
        "job_id": msg.job_id,
        "type": msg.type,
        "fingerprint": msg.error.fingerprint if msg.error else "",
    }
    return str(publisher.publish(path, msg.model_dump_json().encode(), **attrs).result(timeout=30))


def mark_dead_lettered(store: JobStore, job_id: str, retention_days: int) -> Written[None]:
    """Mark a published job dead_lettered; nothing is written when it was marked (or redriven) already."""
    at = now()

    def decide(job: Job) -> Change[None]:
        if job.status != Status.FAILED:
            return Change(None)
        return Change(None, lifecycle.dead_lettered(job, at=at, expire_at=at + timedelta(days=retention_days)))

    return store.transition(job_id, decide)


def record(client: firestore.Client, msg: DeadLetterMessage, *, message_id: str = "") -> bool:
    """Record a dead letter (idempotent per job and dead-lettering); True when it was new."""
    ref = client.collection(DEAD_LETTERS).document(msg.job_id)
    data = {
        "job_id": msg.job_id,
        "env": msg.env,
        "type": msg.type,
        "class": msg.job_class,
        "owner": msg.owner,
        "attempt": msg.attempt,
        "error": msg.error.model_dump(mode="python") if msg.error else None,
        "fingerprint": msg.error.fingerprint if msg.error else "unknown",
        "dead_at": msg.dead_at or now(),
        "received_at": now(),
        "trace_id": msg.trace_id,
        "source": msg.source,
        "message_id": message_id,
        "redriven": False,
    }
    snap = ref.get()
    if snap.exists:
        old = snap.to_dict() or {}
        if not old.get("redriven") and old.get("attempt") == msg.attempt:
            return False  # the same dead-lettering delivered twice
    ref.set(data)
    return True


def _public(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for key in ("dead_at", "received_at", "redriven_at"):
        if isinstance(out.get(key), datetime):
            out[key] = rfc3339(out[key])
    err = out.get("error")
    if isinstance(err, dict) and isinstance(err.get("at"), datetime):
        out["error"] = {**err, "at": rfc3339(err["at"])}
    return out


def list_open(client: firestore.Client, *, fingerprint: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Dead letters not yet redriven, newest first."""
    q: Any = client.collection(DEAD_LETTERS).where(filter=firestore.FieldFilter("redriven", "==", False))
    if fingerprint:
        q = q.where(filter=firestore.FieldFilter("fingerprint", "==", fingerprint))
    docs = [s.to_dict() or {} for s in q.limit(limit).stream()]
    docs.sort(key=lambda d: d.get("dead_at") or now(), reverse=True)
    return [_public(d) for d in docs]


def count_open(client: firestore.Client, *, fingerprint: str | None = None) -> int:
    """How many dead letters are open, counted by an aggregation query (not capped by list_open)."""
    q: Any = client.collection(DEAD_LETTERS).where(filter=firestore.FieldFilter("redriven", "==", False))
    if fingerprint:
        q = q.where(filter=firestore.FieldFilter("fingerprint", "==", fingerprint))
    return int(q.count().get()[0][0].value)


def group(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group dead letters by fingerprint, biggest group first."""
    groups: dict[str, dict[str, Any]] = {}
    for d in letters:
        fp = d.get("fingerprint", "unknown")
        g = groups.setdefault(
            fp,
            {
                "fingerprint": fp,
                "count": 0,
                "type": d.get("type"),
                "error_type": (d.get("error") or {}).get("type"),
                "message": (d.get("error") or {}).get("message"),
                "first_dead_at": d.get("dead_at"),
                "last_dead_at": d.get("dead_at"),
                "job_ids": [],
            },
        )
        g["count"] += 1
        if len(g["job_ids"]) < 20:
            g["job_ids"].append(d["job_id"])
        if d.get("dead_at"):
            g["first_dead_at"] = min(g["first_dead_at"] or d["dead_at"], d["dead_at"])
            g["last_dead_at"] = max(g["last_dead_at"] or d["dead_at"], d["dead_at"])
    return sorted(groups.values(), key=lambda g: (-g["count"], g["fingerprint"]))


def get(client: firestore.Client, job_id: str) -> dict[str, Any] | None:
    snap = client.collection(DEAD_LETTERS).document(job_id).get()
    return _public(snap.to_dict() or {}) if snap.exists else None


@dataclass(frozen=True)
class RedriveResult:
    job_id: str
    outcome: str  # redriven | would_redrive | skipped
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"job_id": self.job_id, "outcome": self.outcome, "detail": self.detail}


def redrive(
    client: firestore.Client,
    store: JobStore,
    job_ids: list[str],
    *,
    dispatch: Callable[[Job], None],
    dry_run: bool,
    by: str,
) -> list[RedriveResult]:
    """Put dead jobs back in line as a new attempt each; `dry_run` only says what would happen."""
    results: list[RedriveResult] = []
    for job_id in job_ids:
        job = store.get(job_id)
        if job is None:
            results.append(RedriveResult(job_id, "skipped", "job no longer exists (retention)"))
            continue
        if job.status != Status.DEAD_LETTERED:
            results.append(RedriveResult(job_id, "skipped", f"job is {job.status.value}, not dead_lettered"))
            continue
        if dry_run:
            results.append(RedriveResult(job_id, "would_redrive", f"attempt {job.attempt + 1} of {job.type}"))
            continue
        at = now()

        def decide(j: Job, at: datetime = at) -> Change[None]:
            fields = lifecycle.redrive(j, at=at)
            fields["dispatch_count"] = j.dispatch_count + 1
            return Change(None, fields)

        try:
            written = store.transition(job_id, decide)
        except TransitionRefused as exc:
            results.append(RedriveResult(job_id, "skipped", str(exc)))
            continue
        client.collection(DEAD_LETTERS).document(job_id).update(
            {"redriven": True, "redriven_at": at, "redriven_by": by}
        )
        dispatch(written.job)
        log.info("job %s redriven by %s", job_id, by)
        results.append(RedriveResult(job_id, "redriven", f"attempt {written.job.attempt + 1} queued"))
    return results


def parse_push(body: bytes) -> tuple[DeadLetterMessage, str]:
    """Read a Pub/Sub push envelope carrying a dead letter; ValueError names what is wrong."""
    import base64

    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"push body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise ValueError("push body has no 'message' object")
    message = envelope["message"]
    data = message.get("data")
    if not isinstance(data, str):
        raise ValueError("push message has no base64 'data'")
    try:
        decoded = base64.b64decode(data, validate=True)
        payload = json.loads(decoded)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"push message data is not base64 JSON: {exc}") from exc
    try:
        msg = DeadLetterMessage.model_validate(payload)
    except ValueError as exc:
        raise ValueError(f"push message is not a dead letter: {exc}") from exc
    return msg, str(message.get("messageId") or message.get("message_id") or "")


def parse_pool_push(body: bytes) -> tuple[DeadLetterMessage, str]:
    """A poison message from the pool subscription's dead-letter topic: a job message Pub/Sub gave up on."""
    import base64

    try:
        envelope = json.loads(body)
        message = envelope["message"]
        payload = json.loads(base64.b64decode(message["data"], validate=True))
        attrs = message.get("attributes") or {}
        deliveries = int(attrs.get("CloudPubSubDeadLetterSourceDeliveryCount", "0") or 0)
        env, job_id = str(payload["env"]), str(payload["job_id"])
        dispatch = int(payload["dispatch"]) if payload.get("dispatch") is not None else None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"pool dead letter is not a job message: {exc}") from exc
    error = ErrorInfo(
        type="PoisonMessage",
        message=f"the pool did not acknowledge this job after {deliveries} deliveries",
        retryable=False,
        fingerprint="pool-poison",
        at=now(),
    )
    msg = DeadLetterMessage(
        env=env, job_id=job_id, error=error, trace_id=payload.get("trace_id"), source="pool", dispatch=dispatch
    )
    return msg, str(message.get("messageId") or message.get("message_id") or "")


def poison(store: JobStore, msg: DeadLetterMessage, retention_days: int) -> tuple[DeadLetterMessage, Job | None] | None:
    """Mark the job of a poison message dead and fill in its details; None when the job is not dead.

    Returns the dead letter to record, and the job when this call marked it dead (its end is to be
    followed up, as any job's: `jobrelay.flow`).

    A job that another delivery runs under a live lease (the message was a duplicate left over from a
    re-dispatch, answered `busy` until Pub/Sub gave up on it), that was dispatched again since the
    message (a newer message or task carries it now), or that ended other than dead-lettered is left
    alone and gets no dead letter.
    """
    at = now()

    def decide(job: Job) -> Change[str | None]:
        """The outcome is why the job is left alone (None: it is marked dead now or was already)."""
        if job.status.final:
            return Change(None if job.status == Status.DEAD_LETTERED else job.status.value)
        if job.status == Status.RUNNING and job.lease_expires_at is not None and job.lease_expires_at > at:
            return Change("running under a live lease")
        if msg.dispatch is not None and msg.dispatch < job.dispatch_count:
            return Change(f"dispatched again since (dispatch {job.dispatch_count}; the message had {msg.dispatch})")
        error = msg.error.model_copy(update={"attempt": job.attempt}) if msg.error else None
        return Change(
            None,
            {
                "status": Status.DEAD_LETTERED.value,
                "error": error.model_dump(mode="python") if error else None,
                "errors": [
                    *(e.model_dump(mode="python") for e in job.errors),
                    *([error.model_dump(mode="python")] if error else []),
                ][-10:],
                "finished_at": at,
                "dead_lettered_at": at,
                "lease_expires_at": None,
                "expire_at": at + timedelta(days=retention_days),
            },
        )

    try:
        written = store.transition(msg.job_id, decide)
    except Exception as exc:
        log.error("poison message for job %s: %s", msg.job_id, exc)
        return msg, None
    if written.outcome is not None:
        log.warning("poison message for job %s ignored: the job is %s", msg.job_id, written.outcome)
        return None
    job = written.job
    letter = DeadLetterMessage.of(msg.env, job, source="pool").model_copy(update={"error": job.error or msg.error})
    return letter, job if written.wrote else None


class RedriveRequest(BaseModel):
    """Which dead letters to redrive: some job ids, one fingerprint's group, or all; dry run first.

    Every dead letter is selected only by an explicit `all: true`: an empty list, an empty or blank
    fingerprint is refused, never read as "no filter".
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    job_ids: list[str] | None = None
    fingerprint: str | None = None
    all: bool = False
    dry_run: bool = False

    @field_validator("job_ids")
    @classmethod
    def _job_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty list selects nothing; name at least one job id, or send all: true")
        if len(v) > MAX_REDRIVE_IDS:
            raise ValueError(f"at most {MAX_REDRIVE_IDS} job ids in one redrive; got {len(v)}")
        for job_id in v:
            if not is_job_id(job_id):
                raise ValueError(f"{job_id[:100]!r} is not a job id: {JOB_ID_RULE}")
        return v

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is not None and not is_fingerprint(v):
            raise ValueError(FINGERPRINT_RULE)
        return v

    def selectors(self) -> int:
        return sum([self.job_ids is not None, self.fingerprint is not None, self.all])


def select(client: firestore.Client, req: RedriveRequest) -> list[str]:
    """The job ids a redrive request covers (open dead letters only)."""
    if req.job_ids is not None:
        return list(dict.fromkeys(req.job_ids))
    letters = list_open(client, fingerprint=req.fingerprint, limit=5000)
    return [d["job_id"] for d in letters]
