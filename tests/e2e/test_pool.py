"""The Elastic Muscle pool on the real Pub/Sub and Firestore emulators (the test stack's VM has 3 slots)."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
from google.cloud import pubsub_v1

from jobrelay.local.stack import Stack
from tests.e2e.test_cron import minute, own_minutes, tick
from tests.support import ApiUser, wait_for

SLOTS = 3


def selfcheck(lines: int, pause: float, exit_code: int = 0, **spec: object) -> dict:
    return {
        "type": "script",
        "payload": {
            "script": "selfcheck",
            "args": {"lines": str(lines), "pause": str(pause), "exit_code": str(exit_code)},
        },
        **spec,
    }


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def user(stack: Stack, env: str) -> ApiUser:
    return ApiUser(stack, env, f"pool-{env}")


def wait_all(u: ApiUser, ids: list[str], timeout: float = 120) -> list[dict]:
    return [u.wait(i, timeout=timeout) for i in ids]


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def script_processes(job_id: str) -> list[int]:
    """Processes whose environment names this job (the script and anything it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"JOBRELAY_JOB_ID={job_id}".encode() in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("env", ["prod", "stg", "dev"])
def test_heavy_jobs_of_each_env_run_on_the_pool_with_status_and_output(stack: Stack, env: str) -> None:
    u = user(stack, env)
    r = u.submit(selfcheck(3, 0.2))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["class"] == "D" and job["route"] == "muscle"
    done = u.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["result"]["exit_code"] == 0 and done["result"]["lines"] == 3
    assert done["log_tail"][-3:] == ["line 1 of 3", "line 2 of 3", "line 3 of 3"]
    muscle_log = (stack.logs / "muscle.log").read_text()
    assert f"job {job['id']} succeeded" in muscle_log


def test_heavy_test_job_reports_progress_like_any_job(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "sleep", "payload": {"seconds": 3}, "class": "D"}).json()
    assert job["route"] == "muscle"
    running = wait_for(
        lambda: (
            (j := alice.get(job["id"]).json())["status"] == "running"
            and j["progress"]
            and 0 < j["progress"]["done"] < 3
            and j
        ),
        timeout=60,
        what="progress on the pool",
    )
    assert running["worker_id"]
    assert alice.wait(job["id"], timeout=60)["status"] == "succeeded"


def test_prod_work_starts_before_waiting_dev_work_and_caps_hold(stack: Stack) -> None:
    dev, stg, prod = user(stack, "dev"), user(stack, "stg"), user(stack, "prod")
    dev_ids = [dev.submit(selfcheck(3, 1)).json()["id"] for _ in range(6)]
    stg_ids = [stg.submit(selfcheck(2, 1)).json()["id"] for _ in range(3)]
    # The pool is busy with dev work (3 slots of 3) ...
    wait_for(
        lambda: sum(dev.get(i).json()["status"] == "running" for i in dev_ids) == SLOTS,
        timeout=60,
        what="pool full of dev work",
    )
    # ... when prod work arrives, it goes before the dev and stg work still waiting.
    prod_ids = [prod.submit(selfcheck(1, 0.5)).json()["id"] for _ in range(2)]
    submitted = time.time()
    waiting_dev = [i for i in dev_ids if dev.get(i).json()["status"] == "queued"]
    assert waiting_dev, "some dev work must still be waiting"
    prod_jobs = wait_all(prod, prod_ids)
    dev_jobs = wait_all(dev, dev_ids)
    stg_jobs = wait_all(stg, stg_ids)
    assert all(j["status"] == "succeeded" for j in prod_jobs + dev_jobs + stg_jobs)
    first_prod = min(at(j["attempt_started_at"]) for j in prod_jobs)
    later_dev = [j for j in dev_jobs if j["id"] in waiting_dev]
    assert all(first_prod <= at(j["attempt_started_at"]) for j in later_dev)
    assert all(
        at(j["attempt_started_at"]) <= at(s["attempt_started_at"])
        for j in prod_jobs
        for s in stg_jobs
        if at(s["attempt_started_at"]).timestamp() > submitted
    )
    # Caps and the VM's total, from the jobs' own start and finish times.
    caps = {e: stack.infra.env(e).muscle_concurrency for e in ("prod", "stg", "dev")}
    spans = {
        e: [(at(j["attempt_started_at"]), at(j["finished_at"])) for j in jobs]
        for e, jobs in (("prod", prod_jobs), ("stg", stg_jobs), ("dev", dev_jobs))
    }
    for e, intervals in spans.items():
        assert max_overlap(intervals) <= min(caps[e], SLOTS), e
    assert max_overlap([iv for intervals in spans.values() for iv in intervals]) <= SLOTS
    assert max_overlap(spans["dev"]) == SLOTS  # the pool was really full


def test_script_output_shows_up_live_and_nonzero_exit_fails(alice: ApiUser) -> None:
    job = alice.submit(selfcheck(8, 0.5)).json()
    live = wait_for(
        lambda: (j := alice.get(job["id"]).json())["status"] == "running" and "line 2 of 8" in j["log_tail"] and j,
        timeout=60,
        what="output while running",
    )
    assert "line 8 of 8" not in live["log_tail"]
    assert alice.wait(job["id"], timeout=60)["status"] == "succeeded"
    failing = alice.submit(selfcheck(1, 0, exit_code=3)).json()
    done = alice.wait(failing["id"], timeout=60)
    assert done["status"] == "dead_lettered" and done["attempt"] == 1
    assert "exited with 3" in done["error"]["message"]


def test_cancel_kills_the_scripts_process_group(alice: ApiUser) -> None:
    job = alice.submit(selfcheck(200, 0.2)).json()
    wait_for(lambda: "line 3 of 200" in alice.get(job["id"]).json()["log_tail"], timeout=60, what="running")
    assert script_processes(job["id"])
    assert alice.cancel(job["id"]).status_code == 202
    done = alice.wait(job["id"], timeout=15)
    assert done["status"] == "cancelled"
    wait_for(lambda: not script_processes(job["id"]), timeout=10, what="script processes gone")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"script": "rm-rf-everything"}, "not on the allow-list"),
        (
            {"script": "selfcheck", "args": {"lines": "1; rm -rf /", "pause": "0", "exit_code": "0"}},
            "does not match",
        ),
        ({"script": "selfcheck", "args": {"lines": "1", "pause": "0"}}, "needs arg 'exit_code'"),
        (
            {"script": "selfcheck", "args": {"lines": "1", "pause": "0", "exit_code": "0", "cmd": "sh"}},
            "no arg 'cmd'",
        ),
        ({"script": "lighthouse", "args": {"site": "singular-dream"}}, None),
    ],
)
def test_script_not_on_the_allow_list_is_refused_at_submit(stack: Stack, payload: dict, says: str | None) -> None:
    u = user(stack, "prod")
    r = u.submit({"type": "script", "payload": payload})
    assert r.status_code == 422, r.text
    assert (says or "may not run in env prod") in r.json()["error"]["message"]


def test_delayed_heavy_job_is_handed_to_the_pool_when_due(alice: ApiUser) -> None:
    job = alice.submit(selfcheck(1, 0, delay_seconds=2)).json()
    time.sleep(1)
    assert alice.get(job["id"]).json()["status"] == "queued"
    done = alice.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded"
    assert (at(done["attempt_started_at"]) - at(done["created_at"])).total_seconds() >= 2


def test_killed_pool_process_loses_no_job(stack: Stack, alice: ApiUser, admin: ApiUser) -> None:
    job = alice.submit(selfcheck(30, 0.2)).json()
    wait_for(lambda: "line 2 of 30" in alice.get(job["id"]).json()["log_tail"], timeout=60, what="running")
    old = stack.kill("muscle")
    stack.wait_restarted("muscle", old)
    time.sleep(stack.options.lease_seconds + 1)  # the dead VM's lease runs out
    r = tick(stack, "maintenance", minute(own_minutes()))
    assert r.status_code in (200, 202)
    done = alice.wait(job["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert [e["type"] for e in done["errors"]] == ["WorkerLost"]
    assert (stack.logs / "muscle.log").read_text().count(f"job {job['id']} succeeded") == 1


def test_sigterm_drains_running_jobs_and_hands_back_what_cannot_finish(stack: Stack, alice: ApiUser) -> None:
    short = alice.submit(selfcheck(3, 1)).json()
    long = alice.submit(selfcheck(40, 0.3)).json()
    wait_for(
        lambda: all(alice.get(j["id"]).json()["status"] == "running" for j in (short, long)),
        timeout=60,
        what="both running",
    )
    svc = stack.services["muscle"]
    assert svc.proc is not None
    old = svc.proc.pid
    os.killpg(old, signal.SIGTERM)
    # The short job finishes within the grace period on the draining VM ...
    assert alice.wait(short["id"], timeout=30)["status"] == "succeeded"
    stack.wait_restarted("muscle", old, timeout=60)
    assert svc.proc.popen.returncode is None
    log = (stack.logs / "muscle.log").read_text()
    assert "pool stopping" in log and f"job {long['id']} handed back" in log
    # ... the long one was handed back without using an attempt and runs again on the new process.
    done = alice.wait(long["id"], timeout=120)
    assert done["status"] == "succeeded" and done["attempt"] == 1 and done["errors"] == []


def publish_poison(stack: Stack, job_id: str, *, dispatch: int) -> None:
    """What Pub/Sub forwards to the dev pool's dead-letter topic after giving up on a job message."""
    env = stack.infra.env("dev")
    pub = pubsub_v1.PublisherClient()
    body = json.dumps({"env": "dev", "job_id": job_id, "dispatch": dispatch}).encode()
    pub.publish(
        pub.topic_path(env.project, env.muscle_dead_letter_topic), body, CloudPubSubDeadLetterSourceDeliveryCount="5"
    ).result()


def test_poison_messages_reach_the_dead_letter_service(stack: Stack, alice: ApiUser, admin: ApiUser) -> None:
    env = stack.infra.env("dev")
    pub = pubsub_v1.PublisherClient()
    # Garbage on the pool's topic is nacked until the subscription's dead-letter policy moves it on.
    pub.publish(pub.topic_path(env.project, env.muscle_topic), b"\x00not a job").result()
    wait_for(
        lambda: "pool dead letter is not a job message" in (stack.logs / "deadletter.log").read_text(),
        timeout=90,
        what="garbage dead-lettered by Pub/Sub",
    )
    # A job message Pub/Sub gave up on marks its job dead, recorded like any dead letter.
    job = alice.submit(selfcheck(1, 0, delay_seconds=600)).json()
    publish_poison(stack, job["id"], dispatch=0)
    done = alice.wait(job["id"], timeout=30)
    assert done["status"] == "dead_lettered" and done["error"]["type"] == "PoisonMessage"
    letter = wait_for(
        lambda: (
            (r := requests.get(admin.url(f"/dead-letters/{job['id']}"), headers=admin.headers, timeout=10)).status_code
            == 200
            and r.json()
        ),
        what="recorded",
    )
    assert letter["fingerprint"] == "pool-poison" and letter["source"] == "pool"


def test_poison_message_for_a_job_running_elsewhere_or_finished_changes_nothing(
    stack: Stack, alice: ApiUser, admin: ApiUser
) -> None:
    # After a pool VM is killed, the maintenance pass re-dispatches its job and the new VM runs it; the
    # dead VM's message keeps coming back `busy` until Pub/Sub gives up on it. That is not a dead job.
    running = alice.submit(selfcheck(30, 0.2)).json()
    wait_for(lambda: alice.get(running["id"]).json()["status"] == "running", timeout=60, what="running")
    finished = alice.submit(selfcheck(1, 0)).json()
    assert alice.wait(finished["id"], timeout=60)["status"] == "succeeded"
    for job in (running, finished):
        publish_poison(stack, job["id"], dispatch=0)
    wait_for(  # the service logs each push it handles, with the job id
        lambda: all(j["id"] in (stack.logs / "deadletter.log").read_text() for j in (running, finished)),
        timeout=30,
        what="both poison messages handled",
    )
    done = alice.wait(running["id"], timeout=60)
    assert done["status"] == "succeeded" and done["errors"] == []
    assert alice.get(finished["id"]).json()["status"] == "succeeded"
    for job in (running, finished):
        r = requests.get(admin.url(f"/dead-letters/{job['id']}"), headers=admin.headers, timeout=10)
        assert r.status_code == 404, r.text


def test_poison_message_of_an_older_dispatch_leaves_the_job_alone(stack: Stack, alice: ApiUser, admin: ApiUser) -> None:
    # The maintenance pass re-dispatched the job (dispatch_count 1): a poison message still carrying
    # dispatch 0 is stale, the job lives on with its newer message; one carrying dispatch 1 is not.
    from google.cloud import firestore

    env = stack.infra.env("dev")
    job = alice.submit(selfcheck(1, 0, delay_seconds=600)).json()
    doc = firestore.Client(project=env.project).collection("jobs").document(job["id"])
    doc.update({"dispatch_count": 1})  # as maintenance.redispatch leaves it
    publish_poison(stack, job["id"], dispatch=0)
    wait_for(
        lambda: f"poison message for job {job['id']} ignored" in (stack.logs / "deadletter.log").read_text(),
        timeout=30,
        what="stale poison message ignored",
    )
    assert alice.get(job["id"]).json()["status"] == "queued"
    assert requests.get(admin.url(f"/dead-letters/{job['id']}"), headers=admin.headers, timeout=10).status_code == 404
    publish_poison(stack, job["id"], dispatch=1)
    done = alice.wait(job["id"], timeout=30)
    assert done["status"] == "dead_lettered" and done["error"]["type"] == "PoisonMessage"
