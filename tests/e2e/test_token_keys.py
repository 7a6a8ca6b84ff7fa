"""A token that cannot be checked because its keys are out of reach is a retryable 503, not a 401.

Locally the Cloud Tasks emulator serves the Google OIDC keys; when it is down, Cloud Scheduler's ticks
and Cloud Tasks' deliveries must be retried, not refused as if their tokens were bad. Here the API (in
this process) and a worker (its own process) are pointed at a certificate URL nothing listens on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobrelay.api import Api
from jobrelay.deployment import Deployment
from jobrelay.local import procs
from jobrelay.local.oidc import LocalSigner
from jobrelay.local.stack import REPO, Stack
from jobrelay.wsgi import Request
from tests.support import ApiUser, count_jobs


def nowhere() -> str:
    return f"http://127.0.0.1:{procs.free_port()}/certs"


def test_a_cron_tick_whose_token_cannot_be_checked_answers_503_and_writes_nothing(
    stack: Stack, test_infra: Path
) -> None:
    deployment = Deployment.from_env(
        schedules=True,
        infra_dir=test_infra,
        envs="dev",
        mode="local",
        api_url=stack.url("api"),
        oidc_certs_url=nowhere(),
    )
    token = LocalSigner(stack.key_file).mint(stack.url("api"), stack.infra.env("dev").service_accounts.scheduler)
    before = count_jobs(stack, "dev")
    resp = Api(deployment).handle(
        Request("POST", "/v1/cron/test-echo", {"authorization": f"Bearer {token}"}, query={"env": "dev"})
    )
    assert resp.status == 503, resp.body
    assert int(resp.headers["Retry-After"]) > 0
    assert "cannot check the token now" in resp.body["error"]["message"]
    assert count_jobs(stack, "dev") == before


@pytest.fixture(scope="module")
def blind_worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A worker of the stack whose certificate URL leads nowhere."""
    port = procs.free_port()
    env = {**stack.service_env(), "PORT": str(port), "HOST": "127.0.0.1", "JOBRELAY_OIDC_CERTS_URL": nowhere()}
    log = Path(tmp_path_factory.mktemp("blind-worker")) / "worker.log"
    proc = procs.start("blind-worker", [sys.executable, "-m", "services.worker"], env=env, log_path=log, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_until(
            lambda: requests.get(f"{url}/healthz", timeout=1).ok, timeout=60, what="blind worker", proc=proc
        )
        yield url
    finally:
        proc.stop()


def test_a_delivery_whose_token_cannot_be_checked_answers_503_and_leaves_the_job(
    stack: Stack, alice: ApiUser, blind_worker: str
) -> None:
    job = alice.submit({"type": "echo", "payload": {"message": "later"}, "delay_seconds": 600}).json()
    token = LocalSigner(stack.key_file).mint(stack.url("worker"), stack.infra.env("dev").service_accounts.tasks_invoker)
    r = requests.post(
        f"{blind_worker}/v1/run",
        json={"env": "dev", "job_id": job["id"], "dispatch": 0},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 503, r.text  # Cloud Tasks retries it with the queue's backoff
    assert int(r.headers["Retry-After"]) > 0
    assert "cannot check the token now" in r.json()["error"]["message"]
    after = alice.get(job["id"]).json()
    assert after["status"] == "queued" and after["attempt"] == 0
    assert alice.cancel(job["id"]).status_code == 200
