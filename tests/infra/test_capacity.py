"""The configuration holds to the capacity model (docs/capacity.md): 1,000 jobs a second in one env.

- Cloud Tasks: no queue over 500 dispatches/s; each class's shards add up to its configured rate;
  class A alone carries 1,000/s; Terraform and the local emulator create every shard's queue.
- Firestore: every monotonically increasing field of a job (and of a pipeline, a concurrency key, a
  debounce window) is exempt from single-field indexing (no declared query needs it alone); every
  declared query has its index; every composite index over such a field starts with the owner or
  carries the index shard before the field, and serves a declared query; and the queries the code
  really makes (recorded below, and the console's, planned by its own code under Node) are the
  declared ones.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from jobrelay import indexes, stats
from jobrelay.auth import Caller
from jobrelay.infra_files import load_infra
from jobrelay.local.cloudtasks.config import settings_for_class
from jobrelay.maintenance import cleanup
from jobrelay.models import Status, now
from jobrelay.pipelines import PipelineService
from jobrelay.settings import QUEUE_MAX_DISPATCHES_PER_SECOND
from jobrelay.store import JobStore, to_job
from jobrelay.typestates import Breaker, TypeState
from tests.infra import contract, tfmodel

INFRA = load_infra()
INDEXES = json.loads((tfmodel.INFRA / "firestore.indexes.json").read_text())
TARGET_JOBS_PER_SECOND = 1000
MODULE = tfmodel.load_module(tfmodel.TERRAFORM / "modules" / "environment")


COLLECTIONS = sorted(indexes.MONOTONIC_FIELDS)  # jobs, and what is written as they run


def composite(collection: str = "jobs") -> list[list[tuple[str, str]]]:
    return [
        [(f["fieldPath"], f.get("order", "")) for f in ix["fields"]]
        for ix in INDEXES["indexes"]
        if ix["collectionGroup"] == collection
    ]


def exempt(field: str, collection: str = "jobs") -> bool:
    """Whether `field` has no single-field index: the nearest override of it or of a map holding it
    (Firestore applies a map field's override to its subfields) lists no indexes."""
    overrides = {o["fieldPath"]: o for o in INDEXES["fieldOverrides"] if o["collectionGroup"] == collection}
    parts = field.split(".")
    for n in range(len(parts), 0, -1):
        found = overrides.get(".".join(parts[:n]))
        if found is not None:
            return found.get("indexes") == []
    return False


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


@pytest.mark.parametrize(
    ("collection", "field"), [(c, f) for c in COLLECTIONS for f in indexes.MONOTONIC_FIELDS[c]], ids=lambda v: v
)
def test_every_monotonic_field_is_exempt_from_single_field_indexing(collection: str, field: str) -> None:
    single = [
        q
        for q in indexes.QUERIES
        if q.collection == collection and not q.equality and [f for f, _ in q.order] == [field]
    ]
    assert exempt(field, collection) or single, (
        f"{collection}.{field} grows with time: exempt it in infra/firestore.indexes.json"
    )


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_the_shard_field_itself_is_not_indexed_alone(collection: str) -> None:
    assert exempt(indexes.SHARD_FIELD, collection)


@pytest.mark.parametrize("query", indexes.QUERIES, ids=lambda q: f"{q.collection}: {q.name}")
def test_every_declared_query_has_its_composite_index(query: indexes.Query) -> None:
    if query.merged:  # equalities only, on single-field indexes Firestore merges: none may be exempt
        assert query.order == ()
        unindexed = [f for f in query.equality if exempt(f.replace("*", "any"), query.collection)]
        assert unindexed == [], f"{query.name} needs them indexed"
        return
    n = len(query.equality)
    served = [
        ix
        for ix in composite(query.collection)
        if {f for f, _ in ix[:n]} == set(query.equality) and ix[n:] == list(query.order)
    ]
    assert served, f"no composite index serves {query.name}: {query.equality} then {query.order}"


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_index_over_a_monotonic_field_is_per_owner_or_sharded(collection: str) -> None:
    for ix in composite(collection):
        fields = [f for f, _ in ix]
        for i, field in enumerate(fields):
            if field in indexes.MONOTONIC_FIELDS[collection]:
                assert fields[0] == "owner" or indexes.SHARD_FIELD in fields[:i], (
                    f"{collection} index {fields}: {field} is a hot range over every document; put "
                    f"{indexes.SHARD_FIELD} first"
                )


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_composite_index_serves_a_declared_query(collection: str) -> None:
    declared = {
        (frozenset(q.equality), tuple(q.order)) for q in indexes.QUERIES if not q.merged and q.collection == collection
    }  # an index nobody queries only costs write fan-out
    for ix in composite(collection):
        matches = [
            (eq, order)
            for eq, order in declared
            if {f for f, _ in ix[: len(eq)]} == eq and tuple(ix[len(eq) :]) == order
        ]
        assert matches, f"composite index {ix} on {collection} serves no query of jobrelay.indexes.QUERIES"


def test_the_shards_take_the_design_rate_under_googles_500() -> None:
    assert TARGET_JOBS_PER_SECOND / indexes.SHARDS <= 500


def test_index_shards_are_stable_and_spread() -> None:
    ids = [f"{i:024x}" for i in range(2000)]
    picked = [indexes.index_shard(i) for i in ids]
    assert picked == [indexes.index_shard(i) for i in ids]
    assert min(picked.count(k) for k in range(indexes.SHARDS)) > 400  # each shard takes its share


# -- the queries the code makes are the declared ones -------------------------------------------

Logged = tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]  # scenario, collection, filters, orders


class _Snap:
    def __init__(self, doc_id: str, data: dict[str, Any]) -> None:
        self.id, self._data, self.exists = doc_id, data, True
        self.update_time = self.reference = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


class _Query:
    """Records a query's filters and orders; answers the collection's canned documents (none for
    jobs) whatever the filters, and counts of 0."""

    def __init__(self, db: RecordingFirestore, name: str) -> None:
        self.db, self.name = db, name
        self.filters: list[tuple[str, str]] = []
        self.orders: list[tuple[str, str]] = []

    def _copy(self) -> _Query:
        q = _Query(self.db, self.name)
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

    def select(self, fields: Any) -> _Query:
        return self

    def start_after(self, cursor: Any) -> _Query:
        return self

    def _record(self) -> None:
        self.db.log.append((self.db.scenario, self.name, self.filters, self.orders))

    def stream(self, timeout: float | None = None) -> list[_Snap]:
        self._record()
        return [_Snap(i, d) for i, d in self.db.answers.get(self.name, {}).items()]

    def count(self) -> Any:
        parent = self

        class _Agg:
            def get(self, timeout: float | None = None) -> list[list[Any]]:
                parent._record()
                return [[type("Count", (), {"value": 0})()]]

        return _Agg()

    def document(self, job_id: str) -> Any:
        raise AssertionError("no document reads in this check")


class RecordingFirestore:
    def __init__(self, answers: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.answers = answers
        self.scenario = ""
        self.log: list[Logged] = []

    def collection(self, name: str) -> _Query:
        return _Query(self, name)

    def batch(self) -> Any:
        return None  # never committed: no query answers a document

    def get_all(self, refs: Any) -> list[Any]:
        return []


def _shape(filters: list[tuple[str, str]], orders: list[tuple[str, str]]) -> tuple[set[str], list[tuple[str, str]]]:
    """A query's equality fields (label keys as one) and its order, as an index must serve them."""
    equality = {indexes.LABELS if f.startswith("labels.") else f for f, op in filters if op in ("==", "in")}
    ranges = [f for f, op in filters if op not in ("==", "in")]
    # Firestore orders by the range fields first (ascending) when the query does not say.
    order = list(orders) or [(f, "ASCENDING") for f in ranges]
    # Every index ends with the document's name, in the direction of its last field (ascending alone).
    if order and order[-1][0] == "__name__" and order[-1][1] == (order[-2][1] if len(order) > 1 else "ASCENDING"):
        order = order[:-1]
    return equality, order


def _declared(filters: list[tuple[str, str]], orders: list[tuple[str, str]], collection: str = "jobs") -> bool:
    equality, order = _shape(filters, orders)
    return any(
        q.collection == collection and set(q.equality) == equality and list(q.order) == order for q in indexes.QUERIES
    )


# A type whose breaker is open: the maintenance pass looks for a job to probe it with, and for jobs
# still waiting behind it (the recording answers it to both of its queries on type_states).
_OPEN_BREAKER = TypeState(type="echo", paused=True, source="breaker", breaker=Breaker(state="open"))


def _recorded() -> list[Logged]:
    from jobrelay import bulk, fanin, slots
    from jobrelay.maintenance import maintenance_pass
    from tests.fakes import FakeDispatcher, RecordingFlow

    db = RecordingFirestore({"type_states": {"echo": _OPEN_BREAKER.model_dump(mode="python")}})
    store = JobStore(db, "dev")  # type: ignore[arg-type]
    env = INFRA.env("dev")

    def run(scenario: str, fn: Any) -> None:
        db.scenario = scenario
        fn()

    def lists() -> None:
        for owner in ("u1", None):
            for status in (None, "queued"):
                for job_type in (None, "echo"):
                    store.page(owner=owner, status=status, job_type=job_type)

    def bulk_cancels() -> None:
        before = "2026-01-01T00:00:00Z"
        for raw in (
            {"status": "queued"},
            {"type": "echo"},
            {"owner": "u1", "labels": {"team": "web", "tier": "1"}},
            {"type": "echo", "owner": "u1", "status": ["queued", "running"]},
            {"created_before": before},
            {"type": "echo", "created_before": before},
            {"owner": "u1", "created_before": before},
            {"owner": "u1", "type": "echo", "created_before": before},
        ):
            f = bulk.CancelFilter.model_validate(raw)
            bulk.check(f, tfmodel.INFRA / "firestore.indexes.json")
            bulk.count(db, f)  # type: ignore[arg-type]
            bulk.sample(db, f)  # type: ignore[arg-type]
            list(bulk.pages(store, bulk.queries(db, f), None))  # type: ignore[arg-type]

    def flow_control() -> None:
        slots.waiting(store, "k" * 32, 3)
        bulk.waiting_count(db, "echo")  # type: ignore[arg-type]
        list(bulk.pages(store, bulk.waiting_behind(db, "echo"), None))  # type: ignore[arg-type]

    def fan_in() -> None:
        parent = to_job(
            {
                "id": "p" * 20,
                "type": "fan",
                "class": "B",
                "env": "dev",
                "owner": "u1",
                "max_attempts": 3,
                "timeout_seconds": 60,
                "created_at": now(),
                "status": "waiting",
                "spawned": 3,
            }
        )
        fanin.count(store, parent)
        list(fanin.children(store, parent.id))
        list(fanin.children(store, parent.id, Status.DEAD_LETTERED))

    def pipelines() -> None:
        service = PipelineService(SimpleNamespace(store=lambda env: store), None)  # type: ignore[arg-type]
        for caller in (Caller(uid="u1", kind="user"), Caller(uid="ops", kind="user", admin=True)):
            for status in (None, "running"):
                service.list("dev", caller, status=status, page_size=50, page_token=None)

    run("lists", lists)
    run("pipelines", pipelines)
    run("maintenance", lambda: maintenance_pass(env, store, FakeDispatcher(), RecordingFlow()))  # type: ignore[arg-type]
    run("cleanup", lambda: cleanup(env, db))  # type: ignore[arg-type]
    run("stats", lambda: stats.env_stats(db, env="dev", classes=sorted(INFRA.classes), window=timedelta(hours=1)))  # type: ignore[arg-type]
    run("type counts", lambda: stats.type_counts(db, env="dev", types=["echo", "sleep"]))  # type: ignore[arg-type]
    run("bulk cancel", bulk_cancels)
    run("flow control", flow_control)
    run("fan-in", fan_in)
    return db.log


SCENARIOS = {"lists", "maintenance", "cleanup", "stats", "type counts", "bulk cancel", "flow control", "fan-in"}


def test_every_query_the_code_makes_on_jobs_is_declared_and_indexed() -> None:
    log = [(scenario, filters, orders) for scenario, name, filters, orders in _recorded() if name == "jobs"]
    assert {scenario for scenario, _, _ in log} == SCENARIOS  # each part of the code made its queries
    undeclared = [(scenario, f, o) for scenario, f, o in log if not _declared(f, o)]
    assert undeclared == []


def test_every_query_on_pipelines_keys_and_windows_is_declared_and_indexed() -> None:
    log = [(scenario, name, f, o) for scenario, name, f, o in _recorded() if name in COLLECTIONS and name != "jobs"]
    # the lists (API), the maintenance pass's stale pipelines and keys held long, the clean-ups
    assert {(scenario, name) for scenario, name, _, _ in log} == {
        ("pipelines", "pipelines"),
        ("maintenance", "pipelines"),
        ("maintenance", "concurrency_keys"),
        ("cleanup", "pipelines"),
        ("cleanup", "debounce_keys"),
    }
    undeclared = [(scenario, name, f, o) for scenario, name, f, o in log if not _declared(f, o, name)]
    assert undeclared == []


def test_the_maintenance_pass_looks_behind_an_open_breaker_per_shard() -> None:
    # The recording reaches the flow-control part of the pass (not only its first queries).
    log = [(f, o) for scenario, name, f, o in _recorded() if scenario == "maintenance" and name == "jobs"]
    behind = [f for f, o in log if ("waiting_for.on", "==") in f]
    assert len(behind) == 2 * indexes.SHARDS and all((indexes.SHARD_FIELD, "==") in f for f in behind)


# -- the console's own queries (console/src/pages/jobquery.js, run under Node) -----------------------

CONSOLE_PLAN = tfmodel.INFRA.parent / "console" / "src" / "pages" / "jobquery.js"


def console_plans(filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """What the console's job list queries for each filter (its own planning code, under Node)."""
    script = (
        f"import {{ plan }} from {json.dumps(CONSOLE_PLAN.as_uri())};"
        f"const fs = {json.dumps(filters)};"
        f"console.log(JSON.stringify(fs.map((f) => plan(f, {indexes.SHARDS}, null))));"
    )
    return list(_node(script))


def _node(script: str) -> Any:
    # Node is what builds the console (make test-deps); a missing one fails this test, never skips it.
    out = subprocess.run(["node", "--input-type=module"], input=script, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _filters() -> list[dict[str, Any]]:
    out = []
    for status in ("", "queued"):
        for job_type in ("", "echo"):
            for owner in ("", "u1"):
                for label in ("", "team=web"):
                    out.append({"status": status, "type": job_type, "owner": owner, "label": label, "size": 50})
    return out


def test_the_consoles_job_list_queries_are_declared_and_per_owner_or_per_shard() -> None:
    filters = _filters()
    for f, plans in zip(filters, console_plans(filters), strict=True):
        shapes = [
            ([(fp, op) for fp, op, _ in q["filters"]], [(fp, d.upper() + "ENDING") for fp, d in q["orders"]])
            for q in plans
        ]
        if f["owner"]:
            assert [q["filters"][0] for q in plans] == [["owner", "==", "u1"]]
        else:  # everyone's: once per shard, each on its own index range
            assert [q["filters"][0] for q in plans] == [[indexes.SHARD_FIELD, "==", k] for k in range(indexes.SHARDS)]
        if not f["label"]:
            assert all(_declared(fs, o) for fs, o in shapes), (f, shapes)
        # A label filter names any key: its index (one per key, created from the error's link in the
        # cloud) then starts with the owner or the shard as well, so it is no hot range either.


def test_the_console_merges_the_shards_pages_into_one_newest_first_page() -> None:
    # Rows of 4 shards, times with ties (then id decides), each shard's page one row longer than a page.
    rows = [
        {
            "created_at": {"seconds": 1000 + (i % 37), "nanoseconds": (i * 7919) % 1000},
            "id": f"id{(i * 104729) % 99991}",
        }
        for i in range(4004)
    ]
    newest = sorted(rows, key=lambda r: (r["created_at"]["seconds"], r["created_at"]["nanoseconds"], r["id"]))[::-1]
    script = (
        f"import {{ merge }} from {json.dumps(CONSOLE_PLAN.as_uri())};"
        f"const rows = {json.dumps(rows)};"
        "const lists = [0, 1, 2, 3].map((k) => rows.slice(k * 1001, (k + 1) * 1001));"
        "console.log(JSON.stringify([merge(lists, 1000), merge(lists, 4004), merge([[], rows.slice(0, 3)], 3)]));"
    )
    full, everything, short = _node(script)
    assert full == {"rows": newest[:1000], "more": True}
    assert everything == {"rows": newest, "more": False}
    assert short["more"] is False and len(short["rows"]) == 3


def test_the_consoles_pipelines_list_is_per_shard_and_declared() -> None:
    script = (
        f"import {{ pipelinePlan }} from {json.dumps(CONSOLE_PLAN.as_uri())};"
        f"console.log(JSON.stringify(pipelinePlan({indexes.SHARDS}, 50)));"
    )
    plans = _node(script)
    assert [q["filters"][0] for q in plans] == [[indexes.SHARD_FIELD, "==", k] for k in range(indexes.SHARDS)]
    for q in plans:
        filters = [(fp, op) for fp, op, _ in q["filters"]]
        assert _declared(filters, [(fp, d.upper() + "ENDING") for fp, d in q["orders"]], "pipelines"), q


# -- Cloud Run ----------------------------------------------------------------------------------


def test_the_worker_can_take_every_dispatch_the_queues_may_have_in_flight() -> None:
    worker = MODULE.local("services")["worker"]
    in_flight = sum(c.rate_limits.max_concurrent_dispatches for c in INFRA.classes.values())
    # Cloud Run sends an instance at most `concurrency` requests (at most 1,000); past max instances
    # it answers 429 and Cloud Tasks backs off: the queues must never be able to ask for more.
    assert int(worker["concurrency"]) <= 1000
    assert int(worker["max"]) * int(worker["concurrency"]) >= in_flight
