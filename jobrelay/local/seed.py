"""`jobrelay dev seed FILE`: load an app's own test data into the local Firestore of one env.

The file (JSON or YAML) maps collection -> document id -> fields. Everything is checked before the
first write, against what Firestore accepts for ids and field names, and jobrelay's own collections
are refused (seeding `jobs` would forge jobs no API call made). The writes go to the emulator named
in the running stack's `local.json`, never to a real project.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jobrelay.client import ConfigError

# Collections jobrelay writes (and those the next capabilities will): never seeded by hand.
RESERVED = frozenset(
    {"jobs", "job_results", "dead_letters", "schedules", "pipelines", "job_requests", "access_log", "reports"}
)
COLLECTION_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
MAX_ID_BYTES = 1500  # Firestore's limit for a document id
MAX_DEPTH = 20  # Firestore's limit for nested maps and arrays
MAX_DOC_BYTES = 1_000_000  # a little under Firestore's 1 MiB per document
BATCH = 500


@dataclass(frozen=True)
class Seed:
    """Checked documents, ready to write."""

    docs: dict[str, dict[str, dict[str, Any]]]

    @property
    def count(self) -> int:
        return sum(len(d) for d in self.docs.values())


def load(path: Path) -> Seed:
    """Read and check a seed file; raise ConfigError naming the file, the place and the problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    return check(data, str(path))


def check(data: Any, where: str) -> Seed:
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{where}: a seed file maps collection -> document id -> fields")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for collection, docs in data.items():
        if not isinstance(collection, str) or not COLLECTION_ID.fullmatch(collection):
            raise ConfigError(
                f"{where}: collection {collection!r}: use letters, digits, _ or - (starting with a letter, at most 100)"
            )
        if collection in RESERVED:
            raise ConfigError(
                f"{where}: collection {collection!r} belongs to jobrelay; seed your app's own collections "
                "(jobs come from the API: `jobrelay submit`)"
            )
        if not isinstance(docs, Mapping):
            raise ConfigError(f"{where}: {collection}: expected a mapping of document id -> fields")
        checked: dict[str, dict[str, Any]] = {}
        for doc_id, fields in docs.items():
            _check_doc_id(where, collection, doc_id)
            if not isinstance(fields, Mapping):
                raise ConfigError(f"{where}: {collection}/{doc_id}: fields must be a mapping")
            _check_value(where, f"{collection}/{doc_id}", fields, 0)
            size = len(json.dumps(fields, default=str).encode())
            if size > MAX_DOC_BYTES:
                raise ConfigError(f"{where}: {collection}/{doc_id}: {size} bytes; Firestore allows 1 MiB a document")
            checked[doc_id] = dict(fields)
        out[collection] = checked
    return Seed(out)


def _check_doc_id(where: str, collection: str, doc_id: Any) -> None:
    # Firestore: non-empty, at most 1,500 bytes, no '/', not '.' or '..', not __reserved__.
    problem = None
    if not isinstance(doc_id, str) or not doc_id:
        problem = "must be a non-empty string"
    elif "/" in doc_id or doc_id in (".", ".."):
        problem = "may not contain '/' or be '.' or '..'"
    elif re.fullmatch(r"__.*__", doc_id, flags=re.DOTALL):
        problem = "ids like __x__ are reserved by Firestore"
    elif len(doc_id.encode()) > MAX_ID_BYTES:
        problem = f"is over {MAX_ID_BYTES} bytes"
    elif any(ord(c) < 32 for c in doc_id):
        problem = "may not contain control characters"
    if problem:
        raise ConfigError(f"{where}: {collection}: document id {doc_id!r} {problem}")


def _check_value(where: str, path: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: {path}: nested deeper than Firestore's {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str) or not key or re.fullmatch(r"__.*__", key, flags=re.DOTALL):
                raise ConfigError(f"{where}: {path}: field name {key!r} is empty, not a string, or reserved (__x__)")
            _check_value(where, f"{path}.{key}", inner, depth + 1)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            if isinstance(inner, list):
                raise ConfigError(f"{where}: {path}[{i}]: Firestore arrays cannot hold arrays")
            _check_value(where, f"{path}[{i}]", inner, depth + 1)


def write(seed: Seed, firestore_host: str, project: str) -> None:
    """Write the documents (set, replacing what was there) into the emulator at `firestore_host`."""
    from google.cloud import firestore

    # Only ever the local emulator: the client goes where this variable says, with no credentials.
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    client = firestore.Client(project=project)
    batch, pending = client.batch(), 0
    for collection, docs in seed.docs.items():
        for doc_id, fields in docs.items():
            batch.set(client.collection(collection).document(doc_id), fields)
            pending += 1
            if pending == BATCH:
                batch.commit()
                batch, pending = client.batch(), 0
    if pending:
        batch.commit()
