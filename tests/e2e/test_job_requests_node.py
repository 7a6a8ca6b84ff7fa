"""1,000 app transactions through @jobrelay/client (Node, Firebase JS SDK), the API killed mid-run.

Each transaction writes an order and its job request; about half abort on purpose. While they commit
the API is SIGKILLed (`Stack.kill`) and the supervisor starts it again; the stack's Eventarc keeps
trying its events meanwhile. At the end, read with the admin SDK: exactly the committed requests became
jobs, each exactly once and each request marked with its job; no aborted transaction left a request,
an order or a job. The Node side (clients/web/test/requests.test.mjs) also checks what the rules
refuse, a refusal by jobrelay (the API's error, no job) and watchRequest through to the job's end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from google.cloud import firestore

from jobrelay import clients
from jobrelay.local import authemu
from jobrelay.local.stack import REPO, Stack
from jobrelay.requests import REQUESTS, job_id_for
from tests.support import wait_for

LIB = REPO / "clients" / "web"
ENV = "dev"
TRANSACTIONS = 1000


def chunks(ids: list[str], n: int = 300) -> list[list[str]]:
    return [ids[i : i + n] for i in range(0, len(ids), n)]


def existing(db: firestore.Client, collection: str, ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in chunks(ids):
        for snap in db.get_all([db.collection(collection).document(i) for i in part]):
            if snap.exists:
                out[snap.id] = snap.to_dict() or {}
    return out


def test_a_thousand_app_transactions_with_the_api_killed_make_exactly_the_committed_jobs(
    stack: Stack, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the client library's tests need Node 20", pytrace=False)
    built = subprocess.run(["bash", str(LIB / "install.sh")], capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, f"clients/web/install.sh failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    project = stack.infra.env(ENV).project
    tag = uuid.uuid4().hex[:8]
    emails = {
        who: authemu.ensure_user(stack.auth_host, project, f"{who}-{tag}", claims={})
        for who in ("buyer", "other", "watcher")
    }
    mark, result_file = tmp_path / "mark", tmp_path / "result.json"
    env = {
        **os.environ,
        "JOBRELAY_TEST_API": stack.url("api"),
        "JOBRELAY_TEST_AUTH": stack.auth_host,
        "JOBRELAY_TEST_FIRESTORE": f"127.0.0.1:{stack.ports['firestore']}",
        "JOBRELAY_TEST_PROJECT": project,
        "JOBRELAY_TEST_ENV": ENV,
        "JOBRELAY_TEST_PASSWORD": authemu.LOCAL_PASSWORD,
        **{f"JOBRELAY_TEST_{w.upper()}": e for w, e in emails.items()},
        "JOBRELAY_TEST_COUNT": str(TRANSACTIONS),
        "JOBRELAY_TEST_MARK": str(mark),
        "JOBRELAY_TEST_RESULT": str(result_file),
    }
    for var in ("FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        env.pop(var, None)  # the SDKs reach the emulators by the addresses above
    started = time.monotonic()
    proc = subprocess.Popen(
        [node, "--test", "--test-reporter=spec", "test/requests.test.mjs"],
        cwd=LIB,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: mark.exists() or proc.poll() is not None, timeout=120, what="a third of the checkouts")
        marked = time.monotonic() - started
        killed = stack.kill("api")  # SIGKILL while requests are being decided; the supervisor restarts it
        stack.wait_restarted("api", killed, timeout=120)
        print(f"API killed at {marked:.1f} s, back at {time.monotonic() - started:.1f} s")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"{out[-6000:]}\n{err[-3000:]}"
    result = json.loads(result_file.read_text())
    committed, aborted = result["committed"], result["aborted"]
    assert 400 <= len(committed) <= 600 and len(committed) + len(set(aborted)) >= TRANSACTIONS

    db = clients.firestore_client(project)
    buyer = db.collection(REQUESTS).where(filter=firestore.FieldFilter("labels.order", ">", ""))
    pending = buyer.where(filter=firestore.FieldFilter("status", "==", "pending"))
    wait_for(lambda: int(pending.count().get()[0][0].value) == 0 or None, timeout=120, what="every request decided")
    took = time.monotonic() - started

    requests = existing(db, REQUESTS, committed)
    assert set(requests) == set(committed)
    assert {r["status"] for r in requests.values()} == {"accepted"}
    assert all(requests[i]["job_id"] == job_id_for(i) for i in committed)
    jobs = existing(db, "jobs", [job_id_for(i) for i in committed])
    assert len(jobs) == len(committed)
    assert sorted(j["request_id"] for j in jobs.values()) == sorted(committed)  # each request once
    owner = next(iter(jobs.values()))["owner"]
    owned = db.collection("jobs").where(filter=firestore.FieldFilter("owner", "==", owner))
    # and no job besides them (the buyer's one request outside the checkouts, in the rules test)
    assert int(owned.count().get()[0][0].value) == len(committed) + len(result["extra"])
    assert all(jobs[job_id_for(i)]["labels"]["order"] == result["orders"][i] for i in committed)
    assert len(existing(db, "orders", list(result["orders"].values()))) == len(committed)

    assert existing(db, REQUESTS, aborted) == {}
    assert existing(db, "jobs", [job_id_for(i) for i in aborted]) == {}
    for refused in result["refused"]:
        assert not db.collection("jobs").document(job_id_for(refused)).get().exists
    print(f"{TRANSACTIONS} transactions, {len(committed)} committed, every request decided in {took:.1f} s")
    print(out[-3000:])
