"""`jobrelay dev` helpers without a stack: seed files are checked whole, the API port is remembered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrelay.client import ConfigError
from jobrelay.cron import SCHEDULES
from jobrelay.deadletters import DEAD_LETTERS
from jobrelay.local import seed
from jobrelay.local.devcli import remembered_api_port
from jobrelay.store import JOBS, RESULTS


def test_jobrelays_own_collections_are_reserved() -> None:
    assert {JOBS, RESULTS, DEAD_LETTERS, SCHEDULES} <= seed.RESERVED


def test_a_good_seed_file_reads_as_collections_of_documents(tmp_path: Path) -> None:
    f = tmp_path / "seed.yaml"
    f.write_text(
        "customers:\n  c1: {name: Ada, tags: [a, b], address: {city: Paris}}\n  c2: {}\nplans:\n  pro: {seats: 5}\n"
    )
    loaded = seed.load(f)
    assert loaded.count == 3
    assert loaded.docs["customers"]["c1"] == {"name": "Ada", "tags": ["a", "b"], "address": {"city": "Paris"}}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"jobs": {"x": {}}}, "belongs to jobrelay"),
        ({"dead_letters": {"x": {}}}, "belongs to jobrelay"),
        ({"job_results": {"x": {}}}, "belongs to jobrelay"),
        ({"a/b": {"x": {}}}, "collection 'a/b'"),
        ({"../x": {"x": {}}}, "collection '../x'"),
        ({"__x__": {"x": {}}}, "collection '__x__'"),
        ({"": {"x": {}}}, "collection ''"),
        ({"c": {"a/b": {}}}, "may not contain '/'"),
        ({"c": {"..": {}}}, "may not contain '/' or be '.' or '..'"),
        ({"c": {"__id__": {}}}, "reserved by Firestore"),
        ({"c": {"": {}}}, "non-empty"),
        ({"c": {"x" * 1501: {}}}, "over 1500 bytes"),
        ({"c": {"line\nbreak": {}}}, "control characters"),
        ({"c": {"x": {"__name__": 1}}}, "reserved (__x__)"),
        ({"c": {"x": {"": 1}}}, "field name ''"),
        ({"c": {"x": {"a": [[1]]}}}, "arrays cannot hold arrays"),
        ({"c": {"x": "not a mapping"}}, "fields must be a mapping"),
        ({"c": ["x"]}, "expected a mapping"),
        (["c"], "maps collection"),
        ({}, "maps collection"),
    ],
)
def test_a_bad_seed_file_is_refused_naming_the_problem(data: object, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        seed.check(data, "seed.json")
    assert problem in str(info.value) and "seed.json" in str(info.value)


def test_nesting_deeper_than_firestore_allows_is_refused() -> None:
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(25):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="nested deeper"):
        seed.check({"c": {"x": deep}}, "seed.json")


def test_an_unreadable_seed_file_says_why(tmp_path: Path) -> None:
    f = tmp_path / "seed.json"
    f.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        seed.load(f)
    with pytest.raises(ConfigError, match="cannot read"):
        seed.load(tmp_path / "missing.yaml")


def test_the_api_port_is_remembered_per_state_dir(tmp_path: Path) -> None:
    first = remembered_api_port(tmp_path, None)
    assert remembered_api_port(tmp_path, None) == first
    assert remembered_api_port(tmp_path, 18999) == 18999
    assert remembered_api_port(tmp_path, None) == 18999  # the one asked for last
    (tmp_path / "dev.json").write_text("{damaged")
    assert 0 < remembered_api_port(tmp_path, None) < 65536
    assert json.loads((tmp_path / "dev.json").read_text())["api_port"] > 0
