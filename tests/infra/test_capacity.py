"""The configuration holds to the capacity model (docs/capacity.md): 1,000 jobs a second in one env.

- Cloud Tasks: no queue over 500 dispatches/s; each class's shards add up to its configured rate;
  class A alone carries 1,000/s; Terraform and the local emulator create every shard's queue.
- Firestore: every monotonically increasing job field is exempt from single-field indexing (no
  declared query needs it alone); every declared query has its composite index; every composite
  index over such a field starts with the owner or carries the index shard before the field; and the
  queries the code really makes (recorded below) are the declared ones.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from jobrelay import indexes, stats
from jobrelay.infra_files import load_infra
from jobrelay.local.cloudtasks.config import settings_for_class
from jobrelay.maintenance import cleanup
from jobrelay.settings import QUEUE_MAX_DISPATCHES_PER_SECOND
from jobrelay.store import JobStore
from tests.infra import contract, tfmodel

INFRA = load_infra()
INDEXES = json.loads((tfmodel.INFRA / "firestore.indexes.json").read_text())
TARGET_JOBS_PER_SECOND = 1000
MODULE = tfmodel.load_module(tfmodel.TERRAFORM / "modules" / "environment")


def job_indexes() -> list[list[tuple[str, str]]]:
    return [
        [(f["fieldPath"], f.get("order", "")) for f in ix["fields"]]
        for ix in INDEXES["indexes"]
        if ix["collectionGroup"] == "jobs"
    ]


def exempt(field: str) -> bool:
    return any(
        o["collectionGroup"] == "jobs" and o["fieldPath"] == field and o.get("indexes") == []
        for o in INDEXES["fieldOverrides"]
    )


# -- Cloud Tasks --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INFRA.classes))
def test_each_classs_shards_add_up_to_its_rate_and_none_is_over_500(name: str) -> None:
    job_class = INFRA.classes[name]
    per = settings_for_class(job_class).rate_limits  # what the emulator (and Terraform, below) give each queue
    assert per.max_dispatches_per_second <= QUEUE_MAX_DISPATCHES_PER_SECOND
    assert per.max_dispatches_per_second * job_class.shards == pytest.approx(
        job_class.rate_limits.max_dispatches_per_second
    )
    assert per.max_concurrent_dispatches * job_class.shards >= job_class.rate_limits.max_concurrent_dispatches


def test_the_urgent_class_alone_carries_the_design_rate() -> None:
    assert INFRA.classes["A"].rate_limits.max_dispatches_per_second >= TARGET_JOBS_PER_SECOND
    assert INFRA.classes["A"].shards > 1  # one queue cannot


def test_terraform_creates_every_shard_queue_with_its_share() -> None:
    assert contract.check_queues(MODULE) == []
    queues = contract.shard_queues(contract.yaml_file("classes.yaml")["classes"])
    assert set(queues) == {q for c in INFRA.classes.values() for q in c.queues}
    for queue in queues.values():
        assert queue["max_dispatches_per_second"] <= QUEUE_MAX_DISPATCHES_PER_SECOND
    for name, job_class in INFRA.classes.items():
        mine = [q for q in queues.values() if q["class"] == name]
        assert sum(q["max_dispatches_per_second"] for q in mine) == pytest.approx(
            job_class.rate_limits.max_dispatches_per_second
        )


def test_queues_stay_within_a_regions_1000() -> None:
    assert sum(c.shards for c in INFRA.classes.values()) <= 1000  # Cloud Tasks: 1,000 queues per region


# -- Firestore indexes --------------------------------------------------------------------------


@pytest.mark.parametrize("field", indexes.MONOTONIC_JOB_FIELDS)
def test_every_monotonic_job_field_is_exempt_from_single_field_indexing(field: str) -> None:
    single = [q for q in indexes.QUERIES if not q.equality and [f for f, _ in q.order] == [field]]
    assert exempt(field) or single, f"jobs.{field} grows with time: exempt it in infra/firestore.indexes.json"


def test_the_shard_field_itself_is_not_indexed_alone() -> None:
    assert exempt(indexes.SHARD_FIELD)


@pytest.mark.parametrize("query", indexes.QUERIES, ids=lambda q: q.name)
def test_every_declared_query_has_its_composite_index(query: indexes.JobQuery) -> None:
    n = len(query.equality)
    served = [
        ix for ix in job_indexes() if {f for f, _ in ix[:n]} == set(query.equality) and ix[n:] == list(query.order)
    ]
    assert served, f"no composite index serves {query.name}: {query.equality} then {query.order}"


def test_every_index_over_a_monotonic_field_is_per_owner_or_sharded() -> None:
    for ix in job_indexes():
        fields = [f for f, _ in ix]
        for i, field in enumerate(fields):
            if field in indexes.MONOTONIC_JOB_FIELDS:
                assert fields[0] == "owner" or indexes.SHARD_FIELD in fields[:i], (
                    f"index {fields}: {field} is a hot range over every job; put {indexes.SHARD_FIELD} first"
                )


def test_every_composite_index_on_jobs_serves_a_declared_query() -> None:
    declared = {
        (frozenset(q.equality), tuple(q.order)) for q in indexes.QUERIES
    }  # an index nobody queries only costs write fan-out
    for ix in job_indexes():
        matches = [
            (eq, order)
            for eq, order in declared
            if {f for f, _ in ix[: len(eq)]} == eq and tuple(ix[len(eq) :]) == order
        ]
        assert matches, f"composite index {ix} serves no query of jobrelay.indexes.QUERIES"


def test_the_shards_take_the_design_rate_under_googles_500() -> None:
    assert TARGET_JOBS_PER_SECOND / indexes.SHARDS <= 500


def test_index_shards_are_stable_and_spread() -> None:
    ids = [f"{i:024x}" for i in range(2000)]
    picked = [indexes.index_shard(i) for i in ids]
    assert picked == [indexes.index_shard(i) for i in ids]
    assert min(picked.count(k) for k in range(indexes.SHARDS)) > 400  # each shard takes its share


# -- the queries the code makes are the declared ones -------------------------------------------


class _Query:
    """Records a query's filters and orders; answers nothing (no documents, counts of 0)."""

    def __init__(self, log: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]], name: str) -> None:
        self.log, self.name = log, name
        self.filters: list[tuple[str, str]] = []
        self.orders: list[tuple[str, str]] = []

    def _copy(self) -> _Query:
        q = _Query(self.log, self.name)
        q.filters, q.orders = list(self.filters), list(self.orders)
        return q

    def where(self, *, filter: Any) -> _Query:
        q = self._copy()
        q.filters.append((filter.field_path, filter.op_string))
        return q

    def order_by(self, field: str, direction: str = "ASCENDING") -> _Query:
        q = self._copy()
        q.orders.append((field, direction))
        return q

    def limit(self, n: int) -> _Query:
        return self

    def start_after(self, cursor: Any) -> _Query:
        return self

    def stream(self) -> list[Any]:
        self.log.append((self.name, self.filters, self.orders))
        return []

    def count(self) -> Any:
        parent = self

        class _Agg:
            def get(self) -> list[list[Any]]:
                parent.log.append((parent.name, parent.filters, parent.orders))
                return [[type("Count", (), {"value": 0})()]]

        return _Agg()

    def document(self, job_id: str) -> Any:
        raise AssertionError("no document reads in this check")


class RecordingFirestore:
    def __init__(self) -> None:
        self.log: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = []

    def collection(self, name: str) -> _Query:
        return _Query(self.log, name)

    def batch(self) -> Any:
        return None  # never committed: no query answers a document


def _declared(filters: list[tuple[str, str]], orders: list[tuple[str, str]]) -> bool:
    equality = {f for f, op in filters if op in ("==", "in")}
    ranges = [f for f, op in filters if op not in ("==", "in")]
    # Firestore orders by the range fields first (ascending) when the query does not say.
    order = orders or [(f, "ASCENDING") for f in ranges]
    return any(set(q.equality) == equality and list(q.order) == order for q in indexes.QUERIES)


def _recorded() -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]]:
    from google.cloud import firestore  # noqa: F401 - FieldFilter is the SDK's own

    from jobrelay.maintenance import maintenance_pass
    from tests.fakes import FakeDispatcher, RecordingFlow

    db = RecordingFirestore()
    store = JobStore(db, "dev")  # type: ignore[arg-type]
    for owner in ("u1", None):
        for status in (None, "queued"):
            for job_type in (None, "echo"):
                store.page(owner=owner, status=status, job_type=job_type)
    env = INFRA.env("dev")
    maintenance_pass(env, store, FakeDispatcher(), RecordingFlow())  # type: ignore[arg-type]
    cleanup(env, db)  # type: ignore[arg-type]
    stats.env_stats(db, env="dev", classes=sorted(INFRA.classes), window=timedelta(hours=1))  # type: ignore[arg-type]
    return db.log


def test_every_query_the_code_makes_on_jobs_is_declared_and_indexed() -> None:
    log = [(filters, orders) for name, filters, orders in _recorded() if name == "jobs"]
    assert len(log) > 40  # lists, the maintenance pass, clean-up and stats all ran
    undeclared = [(f, o) for f, o in log if not _declared(f, o)]
    assert undeclared == []


# -- Cloud Run ----------------------------------------------------------------------------------


def test_the_worker_can_take_every_dispatch_the_queues_may_have_in_flight() -> None:
    worker = MODULE.local("services")["worker"]
    in_flight = sum(c.rate_limits.max_concurrent_dispatches for c in INFRA.classes.values())
    # Cloud Run sends an instance at most `concurrency` requests (at most 1,000); past max instances
    # it answers 429 and Cloud Tasks backs off: the queues must never be able to ask for more.
    assert int(worker["concurrency"]) <= 1000
    assert int(worker["max"]) * int(worker["concurrency"]) >= in_flight
