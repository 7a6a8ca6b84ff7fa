"""`jobrelay dev up` as a new user runs it, from a project of their own.

One run walks the README: the team's job-type package and its tests are the README's own code
blocks (linted with the repo's ruff, then run); `dev up --job-modules` serves that package; the
README's test file passes against the running stack through the `jobrelay_stack` fixture; `dev seed`
loads data and refuses jobrelay's collections; `dev reload` picks up changed code and keeps the data;
SIGTERM stops every process; a second `dev up` gets the same API port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from jobrelay.local.stack import REPO
from jobrelay.local.tokens import emulator_id_token

BIN = Path(sys.executable).parent
SERVICES = ("api", "worker", "deadletter", "muscle")
EMULATORS = ("firestore", "pubsub", "cloudtasks")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def readme_files() -> dict[str, str]:
    """The README's Python blocks that start with `# <path>`: the files a team would write."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    files = {}
    for block in blocks:
        first = block.partition("\n")[0]
        if first.startswith("# ") and first[2:].strip().endswith(".py"):
            files[first[2:].strip()] = block
    return files


def test_the_readme_job_type_example_passes_the_repo_lint(tmp_path: Path) -> None:
    files = readme_files()
    assert {"acme_jobs/__init__.py", "tests/conftest.py", "tests/test_invoices.py"} <= set(files)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    config = ["--config", str(REPO / "pyproject.toml")]
    paths = [str(tmp_path / rel) for rel in files]
    check = subprocess.run([str(BIN / "ruff"), "check", *config, *paths], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([str(BIN / "ruff"), "format", "--check", *config, *paths], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


class DevUp:
    """One `jobrelay dev up` process, its output collected line by line."""

    def __init__(self, project: Path, state: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(BIN / "jobrelay"), "dev", "up", "--state-dir", str(state), *args],
            cwd=project,
            env={**env, "JOBRELAY_TICK_SECONDS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.state = state

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("Ctrl-C stops") for line in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines[-40:])
            assert time.monotonic() < deadline, "dev up never said it was ready:\n" + "\n".join(self.lines[-40:])
            time.sleep(0.2)
        return json.loads((self.state / "local.json").read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def jobrelay(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    return subprocess.run(
        [str(BIN / "jobrelay"), *args], cwd=project, env={**clean, **(env or {})}, capture_output=True, text=True
    )


def submit_and_wait(api: str, spec: dict[str, Any], roles: tuple[str, ...] = ()) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {emulator_id_token('singular-dream-dev', 'alice', roles=roles)}"}
    r = requests.post(f"{api}/v1/envs/dev/jobs", json=spec, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while True:
        job = requests.get(f"{api}/v1/envs/dev/jobs/{r.json()['id']}", headers=headers, timeout=10).json()
        if job["status"] in ("succeeded", "dead_lettered", "cancelled", "skipped"):
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_dev_up_serves_a_team_package_reloads_it_seeds_data_and_keeps_its_port(tmp_path: Path) -> None:
    project = tmp_path / "acme"
    for rel, text in readme_files().items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    state = project / ".jobrelay"
    up = DevUp(project, state, "--job-modules", "jobs,acme_jobs")
    try:
        info = up.wait_ready()
        # What a person reads: "ready" on top, one line per service and emulator, no JSON.
        shown = up.lines[up.lines.index(next(line for line in up.lines if line.startswith("ready"))) :]
        assert shown[0].startswith("ready in ") and "local.json" in shown[0]
        for name in (*SERVICES, *EMULATORS):
            assert any(line.split()[:1] == [name] and f"pid {info['pids'][name]}" in line for line in shown), name
        for line in up.lines:
            assert not line.lstrip().startswith("{"), f"JSON on the console: {line}"
        assert json.loads((state / "logs" / "stack.log").read_text().splitlines()[0])["severity"]
        api_port = int(info["api"].rsplit(":", 1)[1])
        assert json.loads((state / "dev.json").read_text())["api_port"] == api_port
        assert set(info["pids"]) >= {*SERVICES, *EMULATORS}
        assert all(alive(pid) for pid in info["pids"].values())

        # The team's own job type, from the package in the directory dev up ran in.
        first = submit_and_wait(
            info["api"], {"type": "invoices", "payload": {"month": "2026-01", "customers": ["c1"]}}, ("billing",)
        )
        assert first["status"] == "succeeded" and first["result"] == {"invoices": 1}, first

        # The README's tests, against this stack (the fixture attaches to it: no second stack).
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=project,
            env={
                **{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")},
                "JOBRELAY_TEST_STACK": str(state),
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
        assert "3 passed" in tests.stdout

        # Seed data: all checked before anything is written.
        seeded = jobrelay(project, "dev", "seed", str(REPO / "examples" / "seed.yaml"), "--state-dir", str(state))
        assert seeded.returncode == 0 and "seeded 4 documents into dev" in seeded.stdout, seeded.stderr
        bad = project / "bad.json"
        bad.write_text(json.dumps({"customers": {"c9": {"name": "Eve"}}, "jobs": {"forged": {"status": "succeeded"}}}))
        refused = jobrelay(project, "dev", "seed", str(bad), "--state-dir", str(state))
        assert refused.returncode == 4 and "'jobs' belongs to jobrelay" in refused.stderr, refused
        db = firestore_of(info)
        assert db.document("customers/c1").get().to_dict()["name"] == "Ada"
        assert not db.document("customers/c9").get().exists and not db.document("jobs/forged").get().exists

        # Reload: changed code is served on the same ports; the data stays.
        module = project / "acme_jobs" / "__init__.py"
        module.write_text(
            module.read_text().replace(
                'return {"invoices": len(payload.customers)}', 'return {"invoices": len(payload.customers), "v": 2}'
            )
        )
        reloaded = jobrelay(project, "dev", "reload", "--state-dir", str(state))
        assert reloaded.returncode == 0 and "reloaded" in reloaded.stdout, reloaded.stdout + reloaded.stderr
        after = json.loads((state / "local.json").read_text())
        assert after["api"] == info["api"]
        assert all(after["pids"][s] != info["pids"][s] for s in SERVICES)
        assert all(after["pids"][e] == info["pids"][e] for e in EMULATORS)
        second = submit_and_wait(
            after["api"], {"type": "invoices", "payload": {"month": "2026-02", "customers": ["c1"]}}, ("billing",)
        )
        assert second["result"] == {"invoices": 1, "v": 2}, second
        headers = {"Authorization": f"Bearer {emulator_id_token('singular-dream-dev', 'alice')}"}
        kept = requests.get(f"{after['api']}/v1/envs/dev/jobs/{first['id']}", headers=headers, timeout=10)
        assert kept.status_code == 200 and db.document("customers/c1").get().exists

        assert up.stop() == 0
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in after["pids"].values()):
            assert time.monotonic() < deadline, {n: p for n, p in after["pids"].items() if alive(p)}
            time.sleep(0.2)
        assert not (state / "local.json").exists()
    finally:
        up.kill()

    again = DevUp(project, state)
    try:
        assert again.wait_ready()["api"] == info["api"]  # the same port after a restart
        assert again.stop() == 0
    finally:
        again.kill()


def firestore_of(info: dict[str, Any]) -> Any:
    """The dev env's Firestore on that stack (the client takes the emulator's address when made)."""
    from google.cloud import firestore

    saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = info["firestore"]
    try:
        return firestore.Client(project=info["envs"]["dev"]["project"])
    finally:
        if saved is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST")
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved
