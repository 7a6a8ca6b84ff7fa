"""`jobrelay.testing`: a handler called directly with a FakeContext, no emulator."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, ValidationError

import jobs.testing
from jobrelay import Fatal, JobCancelled, JobContext, Retry
from jobrelay.registry import JobType
from jobrelay.testing import FakeContext, run_handler


class Greeting(BaseModel):
    name: str


def greet(payload: Greeting, ctx: JobContext) -> dict[str, str]:
    token = ctx.secrets["GREETING_TOKEN"]
    ctx.log(f"greeting {payload.name}")
    if ctx.attempt < 2:
        raise Retry(delay=5)
    return {"greeting": f"hello {payload.name}", "token": token[:2]}


GREET = JobType(name="greet", handler=greet, payload=Greeting)


def test_a_registered_handler_runs_with_its_payload_validated_and_progress_recorded() -> None:
    ctx = FakeContext()
    started = time.monotonic()
    assert run_handler(jobs.testing.sleep, {"seconds": 30}, ctx=ctx) == {"slept": 30}
    assert time.monotonic() - started < 5  # wait() does not sleep
    assert ctx.progress_updates[0].message == "sleeping" and ctx.progress_updates[-1].done == 30
    assert len(ctx.waits) == 30 and ctx.cancel_checks == 30
    assert ctx.last_progress() == ctx.progress_updates[-1]


def test_run_handler_takes_a_name_or_a_job_type_and_refuses_a_bad_payload() -> None:
    assert run_handler("echo", {"message": "hi"}) == {"message": "hi"}
    with pytest.raises(ValidationError):
        run_handler(jobs.testing.echo, {"message": 5})
    with pytest.raises(LookupError, match="no job type 'nope'"):
        run_handler("nope", {})


def test_secrets_log_lines_and_the_attempt_are_the_contexts() -> None:
    ctx = FakeContext(secrets={"GREETING_TOKEN": "s3cret", "OTHER": "x"}, attempt=2)
    assert run_handler(GREET, {"name": "ada"}, ctx=ctx) == {"greeting": "hello ada", "token": "s3"}
    assert ctx.lines == ["greeting ada"] and ctx.secrets_read == ["GREETING_TOKEN"]
    with pytest.raises(Retry):
        run_handler(GREET, {"name": "ada"}, secrets={"GREETING_TOKEN": "t"}, attempt=1)
    with pytest.raises(KeyError):
        run_handler(GREET, {"name": "ada"})  # no such secret in this env


def test_cancellation_is_seen_at_the_given_check() -> None:
    ctx = FakeContext(cancel_after=3)
    with pytest.raises(JobCancelled):
        run_handler(jobs.testing.sleep, {"seconds": 10}, ctx=ctx)
    assert ctx.waits == [1.0, 1.0, 1.0] and ctx.cancelled  # the third wait saw it; the handler stopped
    ctx = FakeContext()
    ctx.cancel()
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()


def test_fatal_and_results_that_cannot_be_stored_surface_in_the_test() -> None:
    def fatal(payload: Greeting, ctx: JobContext) -> None:
        raise Fatal("no")

    def unstorable(payload: Greeting, ctx: JobContext) -> object:
        return {"when": object()}

    with pytest.raises(Fatal):
        run_handler(JobType(name="f", handler=fatal, payload=Greeting), {"name": "x"})
    with pytest.raises(TypeError):
        run_handler(JobType(name="u", handler=unstorable, payload=Greeting), {"name": "x"})


def test_firestore_needs_a_client_or_an_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    with pytest.raises(RuntimeError, match="jobrelay_stack"):
        FakeContext().firestore()
    marker = object()
    assert FakeContext(firestore=marker).firestore() is marker
