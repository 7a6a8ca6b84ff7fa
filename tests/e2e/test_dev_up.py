"""`jobrelay dev up` as a user runs it: a process that writes local.json and stops everything on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_dev_up_serves_the_stack_and_sigterm_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobrelay"), "dev", "up", "--state-dir", str(state)],
        env={**env, "JOBRELAY_TICK_SECONDS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (state / "local.json").exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            assert time.monotonic() < deadline, "local.json never appeared"
            time.sleep(0.2)
        info = json.loads((state / "local.json").read_text())
        assert set(info) >= {"api", "firestore", "pubsub", "cloudtasks", "auth", "envs", "pids"}
        assert info["envs"]["dev"]["project"] == "singular-dream-dev"
        services = {"auth", "firestore", "pubsub", "cloudtasks", "api", "worker", "deadletter", "muscle"}
        assert set(info["pids"]) >= services
        assert all(alive(pid) for pid in info["pids"].values())
        # A real sign-in through the stack's Auth emulator, as a developer gets one.
        signed = subprocess.run(
            [str(Path(sys.executable).parent / "jobrelay"), "dev", "token", "--state-dir", str(state), "--uid=alice"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert signed.returncode == 0, signed.stderr
        token = signed.stdout.strip()
        r = requests.post(
            f"{info['api']}/v1/envs/dev/jobs",
            json={"type": "echo", "payload": {"message": "up"}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while (
            requests.get(
                f"{info['api']}/v1/envs/dev/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ).json()["status"]
            != "succeeded"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in info["pids"].values()):
            assert time.monotonic() < deadline, {n: p for n, p in info["pids"].items() if alive(p)}
            time.sleep(0.2)
        assert not (state / "local.json").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
