"""A pipeline's graph checked before anything is written, its status from its steps', what a retry brings back."""

from __future__ import annotations

import pytest

from jobrelay import graph
from jobrelay.errors import PayloadTooLarge, Unprocessable
from jobrelay.graph import PipelineStatus
from jobrelay.models import Status

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_the_order_puts_every_step_after_the_steps_it_waits_for() -> None:
    for after in (DIAMOND, {"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []}):
        order = graph.order(after)
        assert sorted(order) == ["a", "b", "c", "d"]
        for step, deps in after.items():
            assert all(order.index(d) < order.index(step) for d in deps)


@pytest.mark.parametrize(
    ("after", "message", "field"),
    [
        ({"a": ["c"], "b": ["a"], "c": ["b"]}, "steps form a cycle: a -> c -> b -> a", "steps.a.after"),
        ({"x": [], "a": ["b"], "b": ["a"]}, "steps form a cycle: a -> b -> a", "steps.a.after"),
        ({"a": ["a"]}, "steps.a.after: step 'a' cannot come after itself", "steps.a.after"),
        ({"a": ["zz"]}, "steps.a.after: no step 'zz' in this pipeline (steps: a)", "steps.a.after"),
        ({"a": [], "b": ["a", "a"]}, "steps.b.after names a step twice", "steps.b.after"),
        ({"Bad": []}, "steps: 'Bad' is not a valid step name", "steps.Bad"),
        ({"a.b": []}, "'a.b' is not a valid step name", "steps.a.b"),
        ({"": []}, "'' is not a valid step name", "steps."),
        ({"x" * 41: []}, "is not a valid step name", "steps." + "x" * 41),
        ({}, "a pipeline needs at least one step", "steps"),
    ],
)
def test_a_bad_graph_is_refused_naming_the_step(after: dict[str, list[str]], message: str, field: str) -> None:
    with pytest.raises(Unprocessable) as exc:
        graph.order(after)
    assert message in exc.value.message
    assert exc.value.details[0]["field"] == field


def test_a_cycle_names_its_steps_in_the_details() -> None:
    with pytest.raises(Unprocessable) as exc:
        graph.order({"a": ["c"], "b": ["a"], "c": ["b"]})
    assert exc.value.details[0]["cycle"] == ["a", "c", "b", "a"]


def test_more_than_the_documented_number_of_steps_is_too_large() -> None:
    assert len(graph.order({f"s{i}": [] for i in range(graph.MAX_STEPS)})) == graph.MAX_STEPS
    with pytest.raises(PayloadTooLarge, match="at most 100 steps"):
        graph.order({f"s{i}": [] for i in range(graph.MAX_STEPS + 1)})


def test_a_chain_of_the_most_steps_is_ordered() -> None:
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(graph.MAX_STEPS)}
    assert graph.order(chain) == [f"s{i}" for i in range(graph.MAX_STEPS)]


S, F, K, Q, R, C, W = (
    Status.SUCCEEDED,
    Status.DEAD_LETTERED,
    Status.SKIPPED,
    Status.QUEUED,
    Status.RUNNING,
    Status.CANCELLED,
    Status.WAITING,
)


@pytest.mark.parametrize(
    ("statuses", "cancel", "expected"),
    [
        ([S, S, S], False, PipelineStatus.SUCCEEDED),
        ([S, R, Q], False, PipelineStatus.RUNNING),
        ([S, F, K], False, PipelineStatus.FAILED),
        ([S, F, R], False, PipelineStatus.RUNNING),  # a failed step does not end it while others run
        ([S, W], False, PipelineStatus.RUNNING),
        ([S, C, C], True, PipelineStatus.CANCELLED),
        ([S, S], True, PipelineStatus.SUCCEEDED),  # every step ended well before the cancel took
        ([S, C], False, PipelineStatus.FAILED),  # a step cancelled on its own
        ([Status.FAILED, S], False, PipelineStatus.RUNNING),  # failed is not final: being dead-lettered
    ],
)
def test_a_pipelines_status_follows_its_steps(statuses: list[Status], cancel: bool, expected: PipelineStatus) -> None:
    assert graph.pipeline_status(statuses, cancel_requested=cancel) == expected


def test_counts_list_every_status_and_the_total() -> None:
    counts = graph.counts([S, S, F, K])
    assert counts["succeeded"] == 2 and counts["dead_lettered"] == 1 and counts["skipped"] == 1
    assert counts["total"] == 4 and counts["waiting"] == 0 and set(counts) == {*(s.value for s in Status), "total"}


CHAIN = ["a", "b", "c", "d", "e"]
CHAIN_AFTER = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": ["c", "d"]}


def test_a_retry_brings_back_the_steps_skipped_because_of_a_step_that_runs_again() -> None:
    # b failed and was redriven (now retrying: not final), c and e were skipped because of it.
    statuses = {"a": S, "b": Status.RETRYING, "c": K, "d": S, "e": K}
    assert graph.restorable(CHAIN, CHAIN_AFTER, statuses) == ["c", "e"]


def test_a_step_skipped_because_of_a_cancelled_step_stays_skipped() -> None:
    statuses = {"a": S, "b": C, "c": K, "d": S, "e": K}
    assert graph.restorable(CHAIN, CHAIN_AFTER, statuses) == []


def test_a_step_waiting_on_two_failed_steps_comes_back_only_when_both_run_again() -> None:
    after = {"x": [], "y": [], "z": ["x", "y"]}
    assert graph.restorable(["x", "y", "z"], after, {"x": Status.RETRYING, "y": F, "z": K}) == []
    assert graph.restorable(["x", "y", "z"], after, {"x": Status.RETRYING, "y": Status.RETRYING, "z": K}) == ["z"]
    assert graph.restorable(["x", "y", "z"], after, {"x": S, "y": Status.RETRYING, "z": K}) == ["z"]
