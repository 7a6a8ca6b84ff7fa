"""jobrelay.firestore_writes builds the very `Write` messages google-cloud-firestore would, byte for byte.

Generated documents and updates go through both (ours and `_helpers.pbs_for_create/pbs_for_update`)
and the deterministic serializations must be equal; values the fast path leaves to the library
(sentinels, transforms, dotted paths, subclasses, naive or far-future datetimes) must come out equal
too, and what the library refuses is refused the same way.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import write as write_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobrelay import firestore_writes

PATH = "projects/p/databases/(default)/documents/jobs/j1"
STAMP = DatetimeWithNanoseconds(2026, 12, 2, 1, 2, 3, nanosecond=123456789, tzinfo=UTC)


def raw(w: write_types.Write) -> bytes:
    return write_types.Write.pb(w).SerializeToString(deterministic=True)


class Color(enum.StrEnum):
    RED = "red"


names = st.text(min_size=1, max_size=12)
plain_names = st.from_regex(r"[_a-zA-Z][_a-zA-Z0-9]{0,10}", fullmatch=True)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(2199, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]),
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(names, inner, max_size=4),
    ),
    max_leaves=12,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.dictionaries(names, values, max_size=8))
def test_creates_equal_the_librarys(data: dict[str, Any]) -> None:
    assert raw(firestore_writes.create_write(PATH, data)) == raw(_helpers.pbs_for_create(PATH, data)[0])


@FUZZ
@given(st.dictionaries(plain_names, values, min_size=1, max_size=8), st.booleans())
def test_updates_equal_the_librarys(fields: dict[str, Any], guarded: bool) -> None:
    option = _helpers.LastUpdateOption(STAMP) if guarded else None
    ours = firestore_writes.update_write(PATH, fields, option)
    assert raw(ours) == raw(_helpers.pbs_for_update(PATH, fields, option)[0])


LEFT_TO_THE_LIBRARY: list[Any] = [
    firestore.SERVER_TIMESTAMP,
    firestore.ArrayUnion(["a"]),
    firestore.Increment(2),
    {"nested": firestore.SERVER_TIMESTAMP, "x": 1},
    Color.RED,
    datetime(2026, 1, 2, 3, 4, 5),  # naive: the library reads it as UTC
    datetime(2300, 1, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),  # the epoch: a timestamp of zeros, still present
    STAMP,
    2**63,
    firestore.GeoPoint(1.5, 2.5),
    [],
    {},
    {"a": {}},
]


@pytest.mark.parametrize("value", LEFT_TO_THE_LIBRARY, ids=repr)
def test_special_values_come_out_as_the_librarys(value: Any) -> None:
    for data in ({"v": value, "plain": "x"}, {"deep": {"v": value}}):

        def mine() -> bytes:
            return raw(firestore_writes.create_write(PATH, data))

        def theirs() -> bytes:
            return raw(_helpers.pbs_for_create(PATH, data)[0])

        assert _same_outcome(mine, theirs)
        option = _helpers.LastUpdateOption(STAMP)
        assert _same_outcome(
            lambda: raw(firestore_writes.update_write(PATH, data, option)),
            lambda: raw(_helpers.pbs_for_update(PATH, data, option)[0]),
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"a.b": 1},  # a dotted path updates a nested field
        {"a.b": 1, "a.c": 2},
        {"with space": 1},
        {"status": firestore.DELETE_FIELD},
        {},  # the library refuses an empty update
        {"a": 1, "a.b": 2},  # and conflicting paths
        {"": 1},
    ],
    ids=repr,
)
def test_update_paths_come_out_as_the_librarys(fields: dict[str, Any]) -> None:
    for option in (None, _helpers.LastUpdateOption(STAMP)):
        assert _same_outcome(
            lambda: raw(firestore_writes.update_write(PATH, fields, option)),
            lambda: raw(_helpers.pbs_for_update(PATH, fields, option)[0]),
        )


def _same_outcome(mine: Any, theirs: Any) -> bool:
    """Both give the same bytes, or both raise the same type of error."""
    try:
        expected: Any = theirs()
    except Exception as exc:  # what the library refuses
        with pytest.raises(type(exc)):
            mine()
        return True
    return bool(mine() == expected)


def test_a_batch_gets_the_same_writes_and_references() -> None:
    client = firestore.Client(project="p", credentials=_anonymous())
    ref = client.collection("jobs").document("j1")
    doc = {"id": "j1", "status": "queued", "created_at": STAMP, "labels": {"a": "b"}, "errors": []}
    ours, theirs = client.batch(), client.batch()
    firestore_writes.add_create(ours, ref, doc)
    theirs.create(ref, doc)
    option = client.write_option(last_update_time=STAMP)
    firestore_writes.add_update(ours, ref, {"status": "running", "attempt": 1}, option)
    theirs.update(ref, {"status": "running", "attempt": 1}, option=option)
    assert [raw(w) for w in ours._write_pbs] == [raw(w) for w in theirs._write_pbs]
    assert ours._document_references == theirs._document_references
    with pytest.raises(ValueError):
        firestore_writes.add_update(ours, ref, {"a": 1}, _helpers.ExistsOption(exists=True))


def _anonymous() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()
