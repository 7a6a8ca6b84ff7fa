"""Firestore creates and updates encoded straight into protobuf: the bytes the client library would send.

Why: google-cloud-firestore builds every write through proto-plus wrappers, one object per value
(`_helpers.encode_value`, `DocumentExtractor`): about 0.55 ms of CPU for a job's create (three
quarters of the API's samples per batched submit), 0.26 and 0.39 ms for the worker's claim and finish
(bench.cpu, py-spy and timeit; bench/README.md). Setting the same fields on the raw (upb) protobuf
takes 20-30 us each. The request, its retries and its errors stay the library's: only the `Write`
message is built here, then handed to the library's own batch.

Only what the library would encode the obvious way takes this path: None, bool, int (64-bit), float,
str, bytes, aware datetimes, and dicts (non-empty str keys), lists and tuples of them, under update
keys that are plain field names. Anything else (DELETE_FIELD, SERVER_TIMESTAMP and the other
transforms, dotted field paths, references, GeoPoints, vectors, subclasses such as StrEnum members,
naive datetimes) goes through the library unchanged. tests/unit/test_firestore_writes.py holds the
messages equal to the library's, byte for byte, over generated documents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import write as write_types

_WRITE = write_types.Write.pb()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)
# Before this year the library's float arithmetic on microseconds (google.cloud._helpers) is exact.
_EXACT_YEARS = 2200
_SIMPLE_FIELD = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*\Z")


class _Unsupported(Exception):
    """A value the library encodes in its own way: the whole write goes through the library."""


def _put(target: Any, value: Any) -> None:
    """Set the `Value` message `target` to `value`, as `_helpers.encode_value` would."""
    kind = type(value)
    if value is None:
        target.null_value = 0
    elif kind is str:
        target.string_value = value
    elif kind is bool:
        target.boolean_value = value
    elif kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise _Unsupported
        target.integer_value = value
    elif kind is float:
        target.double_value = value
    elif kind is datetime:
        if value.tzinfo is None or value.year >= _EXACT_YEARS:
            raise _Unsupported
        delta = value - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        stamp = target.timestamp_value
        stamp.SetInParent()  # present even at the epoch itself
        stamp.seconds, stamp.nanos = seconds, delta.microseconds * 1000
    elif kind is dict:
        mapped = target.map_value
        mapped.SetInParent()
        fields = mapped.fields
        for key, item in value.items():
            if type(key) is not str or not key:
                raise _Unsupported
            _put(fields[key], item)
    elif kind is list or kind is tuple:
        array = target.array_value
        array.SetInParent()
        values = array.values
        for item in value:
            _put(values.add(), item)
    elif kind is DatetimeWithNanoseconds:
        target.timestamp_value.CopyFrom(value.timestamp_pb())
    elif kind is bytes:
        target.bytes_value = value
    else:
        raise _Unsupported


def _document(path: str, data: Mapping[str, Any]) -> Any:
    pb = _WRITE()
    pb.update.name = path
    fields = pb.update.fields
    for key, value in data.items():
        if type(key) is not str or not key:
            raise _Unsupported
        _put(fields[key], value)
    return pb


def create_write(path: str, data: Mapping[str, Any]) -> write_types.Write:
    """The `Write` that creates document `path` with `data` (it must not exist yet)."""
    try:
        pb = _document(path, data)
    except _Unsupported:
        made: write_types.Write = _helpers.pbs_for_create(path, data)[0]
        return made
    pb.current_document.exists = False
    wrapped: write_types.Write = write_types.Write.wrap(pb)
    return wrapped


def update_write(path: str, fields: Mapping[str, Any], option: Any) -> write_types.Write:
    """The `Write` that updates `fields` of document `path` under `option` (a precondition, or None: it exists)."""
    try:
        if not fields or option.__class__.__name__ == "ExistsOption" or not all(map(_SIMPLE_FIELD.match, fields)):
            raise _Unsupported
        pb = _document(path, fields)
    except _Unsupported:
        made: write_types.Write = _helpers.pbs_for_update(path, fields, option)[0]
        return made
    pb.update_mask.field_paths.extend(sorted(fields))
    wrapped: write_types.Write = write_types.Write.wrap(pb)
    (option or _helpers.ExistsOption(exists=True)).modify_write(wrapped)
    return wrapped


def add_create(batch: Any, ref: Any, data: Mapping[str, Any]) -> None:
    """`batch.create(ref, data)`, with the write built here."""
    batch._document_references[ref._document_path] = ref
    batch._add_write_pbs([create_write(ref._document_path, data)])


def add_update(batch: Any, ref: Any, fields: Mapping[str, Any], option: Any = None) -> None:
    """`batch.update(ref, fields, option=option)`, with the write built here."""
    if option.__class__.__name__ == "ExistsOption":
        batch.update(ref, fields, option=option)  # refused by the library, as before
        return
    batch._document_references[ref._document_path] = ref
    batch._add_write_pbs([update_write(ref._document_path, fields, option)])


def update(client: Any, ref: Any, fields: Mapping[str, Any], option: Any = None) -> Any:
    """`ref.update(fields, option=option)`: one commit; its `WriteResult`."""
    batch = client.batch()
    add_update(batch, ref, fields, option)
    return batch.commit()[0]


def create(client: Any, ref: Any, data: Mapping[str, Any]) -> Any:
    """`ref.create(data)`: one commit; its `WriteResult`."""
    batch = client.batch()
    add_create(batch, ref, data)
    return batch.commit()[0]
