"""Job requests: enqueue a job inside your own Firestore transaction or batch (docs/job-requests.md).

An app saves an order and must start its invoice job: two writes, two systems, and one of them can
fail. Instead the app writes `job_requests/{id}` in the same transaction as the order. Once that
transaction commits, jobrelay turns the request into exactly one job (id derived from the request
id), and writes back `status` `accepted` with `job_id`, or `refused` with `error` {code, message,
details}: what `POST /v1/envs/{env}/jobs` would have answered. An aborted transaction leaves no request
and so no job.

A request holds a job spec's fields (`type`, `payload`, `class`, `run_at`, `delay_seconds`,
`depends_on`, `labels`, `timeout_seconds`, `max_attempts`; no `idempotency_key`: the request id is
one, choose it yourself to make a retry of your own code find the first request), `owner` (the uid
the job belongs to; the security rules require the signed-in user's own), `status: "pending"`, and
where the env requires App Check, `app_check` (the app's App Check token). Apps write it with
`@jobrelay/client` (`enqueueInTransaction`, `enqueueInBatch`); servers with the admin SDK, with
`enqueue_in_transaction` / `enqueue_in_batch` below. The rules do not govern servers: the owner they
name is taken as given, its roles are the user's custom claims.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from google.cloud import firestore
from pydantic import ValidationError

from jobrelay.models import JobSpec
from jobrelay.namespace import REQUESTS as REQUESTS

# A request id is a Firestore document id jobrelay can name a job after: the Firebase SDKs' 20-character
# auto ids, or ids of your own (an order's, say).
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{5,99}\Z")
REQUEST_ID_RULE = "a request id is 6-100 letters, digits, _ and -, starting with a letter or digit"
# The fields of a job spec a request may carry (JobSpec's, less idempotency_key).
SPEC_FIELDS = (
    "type",
    "payload",
    "class",
    "run_at",
    "delay_seconds",
    "depends_on",
    "labels",
    "timeout_seconds",
    "max_attempts",
)
OWNER_FIELDS = ("owner", "status", "app_check")
MAX_OWNER = 128  # a Firebase uid


class RequestStatus(StrEnum):
    PENDING = "pending"  # written by the app; nothing has happened yet
    ACCEPTED = "accepted"  # job_id names the job it became
    REFUSED = "refused"  # error says why, as the HTTP API would have; no job


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID.match(value) is not None and not value.startswith("__")


def job_id_for(request_id: str) -> str:
    """The id of the job a request becomes: the same request id always gives the same job id."""
    return "r" + hashlib.sha256(f"{REQUESTS}\0{request_id}".encode()).hexdigest()[:23]


def request_document(spec: Mapping[str, Any], *, owner: str, app_check_token: str | None = None) -> dict[str, Any]:
    """The fields of a new request for `spec`, checked as far as can be without the deployment.

    The job type, its payload schema and the owner's roles are checked by jobrelay when it reads the
    request; a spec that fails here raises ValueError naming the field.
    """
    if "idempotency_key" in spec:
        raise ValueError("idempotency_key: a job request's id is its idempotency key; choose the request id instead")
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of a job spec ({', '.join(SPEC_FIELDS)})")
    try:
        JobSpec.model_validate(dict(spec))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from exc
    if not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER:
        raise ValueError(f"owner must be the uid of a user of the env's Firebase project (1-{MAX_OWNER} characters)")
    doc: dict[str, Any] = {**spec, "owner": owner, "status": RequestStatus.PENDING.value}
    if app_check_token:
        doc["app_check"] = app_check_token
    return doc


def _ref(db: firestore.Client, request_id: str | None) -> Any:
    requests = db.collection(REQUESTS)
    if request_id is None:
        return requests.document()  # a random id, as the client SDKs make
    if not is_request_id(request_id):
        raise ValueError(f"{request_id[:100]!r}: {REQUEST_ID_RULE}")
    return requests.document(request_id)


def enqueue_in_transaction(
    transaction: firestore.Transaction,
    db: firestore.Client,
    spec: Mapping[str, Any],
    *,
    owner: str,
    request_id: str | None = None,
    app_check_token: str | None = None,
) -> str:
    """Create a job request in `transaction`; returns its id. It becomes a job once the transaction commits.

    A request id of your own that exists already fails the transaction (a request is created once).
    """
    ref = _ref(db, request_id)
    transaction.create(ref, request_document(spec, owner=owner, app_check_token=app_check_token))
    return str(ref.id)


def enqueue_in_batch(
    batch: firestore.WriteBatch,
    db: firestore.Client,
    spec: Mapping[str, Any],
    *,
    owner: str,
    request_id: str | None = None,
    app_check_token: str | None = None,
) -> str:
    """Create a job request in a write batch; returns its id. It becomes a job once the batch commits."""
    ref = _ref(db, request_id)
    batch.create(ref, request_document(spec, owner=owner, app_check_token=app_check_token))
    return str(ref.id)
