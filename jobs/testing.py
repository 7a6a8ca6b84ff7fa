"""Job types for trying jobrelay out and testing it; offered only where `allow_test_jobs` is set."""

from __future__ import annotations

from typing import Annotated, Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobrelay import Fatal, JobContext, JobSpec, Retry, job_type


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: Annotated[str, Field(max_length=10_000)]


@job_type("echo", payload=EchoPayload, job_class="A", test_only=True)
def echo(payload: EchoPayload, ctx: JobContext) -> dict[str, str]:
    """Returns its message."""
    return {"message": payload.message}


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: Annotated[float, Field(ge=0, le=3600)]


@job_type("sleep", payload=SleepPayload, job_class="B", test_only=True)
def sleep(payload: SleepPayload, ctx: JobContext) -> dict[str, float]:
    """Sleeps, reporting progress every second; stops early when cancelled."""
    total = payload.seconds
    done = 0.0
    ctx.progress(0, total, "sleeping")
    while done < total:
        step = min(1.0, total - done)
        if ctx.wait(step):
            ctx.check_cancelled()
        done += step
        ctx.progress(round(done, 3), total, f"slept {done:g}s of {total:g}s")
    return {"slept": total}


class FlakyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_times: Annotated[int, Field(ge=0, le=100)] = 1
    fatal: bool = False
    retry_delay: Annotated[float, Field(ge=0, le=3600)] | None = None
    message: str = "flaky failure"


@job_type("flaky", payload=FlakyPayload, job_class="A", test_only=True)
def flaky(payload: FlakyPayload, ctx: JobContext) -> dict[str, int]:
    """Fails its first `fail_times` runs (counted across every run of the job), then succeeds."""
    counter = ctx.firestore().collection("jobrelay_flaky_runs").document(ctx.job_id)
    counter.set({"runs": firestore.Increment(1)}, merge=True)
    runs = int((counter.get().to_dict() or {}).get("runs", 0))
    if runs <= payload.fail_times:
        if payload.fatal:
            raise Fatal(f"{payload.message} (run {runs}, fatal)")
        if payload.retry_delay is not None:
            raise Retry(f"{payload.message} (run {runs}); try again later", delay=payload.retry_delay)
        raise RuntimeError(f"{payload.message} (run {runs} of {payload.fail_times} failing)")
    return {"runs": runs}


class FanoutPayload(BaseModel):
    """Spawn `count` copies of `child` (then each of `extra`), and wait for them all."""

    model_config = ConfigDict(extra="forbid")
    count: Annotated[int, Field(ge=0, le=10_000)]
    child: dict[str, Any]
    extra: Annotated[list[dict[str, Any]], Field(max_length=100)] = Field(default_factory=list)
    allow_failed: Annotated[int, Field(ge=0, le=10_000)] | None = None

    @field_validator("child", "extra")
    @classmethod
    def _specs(cls, v: Any) -> Any:
        for spec in v if isinstance(v, list) else [v]:
            JobSpec.model_validate(spec)  # its shape now; its type and payload when spawned, as the owner
        return v


@job_type("fanout", payload=FanoutPayload, job_class="B", test_only=True)
def fanout(payload: FanoutPayload, ctx: JobContext) -> dict[str, int]:
    """Spawns `count` copies of a child job spec (and the `extra` ones); ends when they all have."""
    ids = ctx.spawn([payload.child] * payload.count + payload.extra, allow_failed=payload.allow_failed)
    return {"spawned": len(ids)}


class GatherPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    children_of: Annotated[str, Field(max_length=40)] | None = None


@job_type("gather", payload=GatherPayload, job_class="A", test_only=True)
def gather(payload: GatherPayload, ctx: JobContext) -> dict[str, Any]:
    """Returns the results of the steps it comes after (and counts a fan-out step's succeeded children)."""
    out: dict[str, Any] = {"results": {step: ctx.results[step] for step in ctx.results}}
    if payload.children_of is not None:
        children = [(job_id, status) for job_id, status, _ in ctx.results.children(payload.children_of)]
        out["children_succeeded"] = sum(1 for _, status in children if status == "succeeded")
        out["first_children"] = [job_id for job_id, _ in children[:20]]  # in the order they came: index order
    return out


class DownstreamPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")] = "payments"
    tenant: Annotated[str, Field(max_length=100)] = ""


# At most 10 calls per tenant at once: a key the type makes from the payload, which callers cannot set.
@job_type("downstream", payload=DownstreamPayload, job_class="A", test_only=True, concurrency=("tenant:{tenant}", 10))
def downstream(payload: DownstreamPayload, ctx: JobContext) -> dict[str, str]:
    """Calls a pretend downstream service: fails while `jobrelay_downstreams/{service}` says it is down.

    For trying the circuit breaker out (infra/breakers.yaml gives it one in dev): mark the service
    down (`{"up": false}`), watch the breaker open, mark it up, watch one probe close it.
    """
    state = ctx.firestore().collection("jobrelay_downstreams").document(payload.service).get().to_dict() or {}
    if state.get("up") is False:
        raise RuntimeError(f"{payload.service} is down")
    return {"service": payload.service, "tenant": payload.tenant}
