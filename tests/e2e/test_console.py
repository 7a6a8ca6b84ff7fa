"""The operator console (console/) in headless Chromium, served by the session stack's API at /console/.

One browser, one page, in order: a non-operator is refused; an operator signs in through the page's form
(the stack's Auth emulator) and, without the page ever reloading, watches a submitted job go queued ->
running -> succeeded in the live job list, opens it, moves through the list with the keyboard, redrives
a dead-letter group after its dry run, watches a pipeline's steps as a graph (a fan-out's children
counted live) fail and succeed after a retry from the page, cancels another, pauses a type (its job
waits) and resumes it (the job runs), sees a circuit breaker open and an operator's resume close it,
sees schedules and the pool, renders 1,000 jobs, and promotes a job and a pipeline to stg. Every page is
photographed at 1280x800 (and the job list on a phone); the pictures are kept in docs/console/ when
JOBRELAY_CONSOLE_SCREENSHOTS=docs (`make console-screenshots`), and docs/console.md must show each of
them. Chromium missing is a failure with the way to install it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from jobrelay import clients
from jobrelay.local import authemu
from jobrelay.local.stack import Stack
from tests.e2e.web_browser import Browser, Page
from tests.support import ApiUser, wait_for

REPO = Path(__file__).resolve().parents[2]
CONSOLE = REPO / "console"
DOCS = REPO / "docs" / "console"
RUN = uuid.uuid4().hex[:8]
OPS, BOB = "console-ops", "console-bob"
STATE = "document.getElementById('app-state').dataset.state"
SHOTS = (
    "sign-in",
    "refused",
    "jobs",
    "job",
    "dead-letters",
    "redrive",
    "queues",
    "pipelines",
    "pipeline",
    "schedules",
    "pool",
    "promote",
    "jobs-phone",
)


def build_console() -> None:
    """npm ci when node_modules is missing, then the build (console/install.sh does both)."""
    if shutil.which("npm") is None:
        pytest.fail("npm is not on PATH: the console is built with Node 20 and npm (console/install.sh)", pytrace=False)
    install = ["bash", str(CONSOLE / "install.sh")]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"console/install.sh failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


class Console:
    """The one page of the test, and what it photographs."""

    def __init__(self, stack: Stack, page: Page, shots: Path) -> None:
        self.stack, self.page, self.shots = stack, page, shots
        self.base = f"{stack.url('api')}/console/"

    def go(self, hash_route: str) -> None:
        """Another page of the console: a hash change, never a reload."""
        self.page.evaluate(f"location.hash = {json.dumps(hash_route)}")

    def wait(self, expression: str, what: str, timeout: float = 30) -> None:
        # Boolean(): an element is not returned by value (it would read as {}, falsy in Python).
        self.page.wait_for(f"Boolean({expression})", timeout=timeout, what=what)

    def key(self, key: str) -> None:
        code = {"Enter": 13}.get(key, ord(key.upper()) if len(key) == 1 else 0)
        params = {"key": key, "windowsVirtualKeyCode": code, "text": "\r" if key == "Enter" else key}
        self.page.send("Input.dispatchKeyEvent", {"type": "keyDown", **params})
        self.page.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "windowsVirtualKeyCode": code})

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def shoot(self, name: str) -> Path:
        assert name in SHOTS, name
        time.sleep(0.2)  # let the last snapshot paint
        data = self.page.send("Page.captureScreenshot", {"format": "png"})["data"]
        path = self.shots / f"{name}.png"
        path.write_bytes(base64.b64decode(data))
        if os.environ.get("JOBRELAY_CONSOLE_SCREENSHOTS") == "docs":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS / path.name)
        return path

    def sign_in(self, email: str) -> str:
        self.wait(f"{STATE} === 'signed-out'", "the sign-in form")
        self.page.fill("#email", email)
        self.page.fill("#password", authemu.LOCAL_PASSWORD)
        self.page.click("#email-sign-in-button")
        what = f"{email} signing in"
        return str(self.page.wait_for(f"['ready', 'refused'].includes({STATE}) && {STATE}", timeout=30, what=what))

    def sign_out(self) -> None:
        self.page.click("#sign-out")
        self.wait(f"{STATE} === 'signed-out'", "signing out")


@pytest.fixture(scope="module")
def users(stack: Stack) -> dict[str, ApiUser]:
    for env in ("dev", "stg"):
        project = stack.infra.env(env).project
        authemu.ensure_user(stack.auth_host, project, OPS, claims=authemu.claims_for(admin=True))
    authemu.ensure_user(stack.auth_host, stack.infra.env("dev").project, BOB, claims={})
    return {
        "ops": ApiUser(stack, "dev", OPS, admin=True),
        "alice": ApiUser(stack, "dev", "console-alice"),
        "stg-ops": ApiUser(stack, "stg", OPS, admin=True),
    }


@pytest.fixture(scope="module")
def console(stack: Stack, users: dict[str, ApiUser], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    build_console()
    tmp = tmp_path_factory.mktemp("console")
    try:
        browser = Browser.launch(tmp / "profile", tmp / "chromium.log")
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    shots = tmp / "shots"
    shots.mkdir()
    try:
        page = browser.new_page(f"{stack.url('api')}/console/")
        c = Console(stack, page, shots)
        c.viewport(1280, 800)
        yield c
    finally:
        browser.close()
        assert browser.popen.poll() is not None, f"Chromium {browser.pid} still running"


def test_a_non_operator_is_refused(console: Console) -> None:
    console.shoot("sign-in")
    assert console.sign_in(f"{BOB}@example.com") == "refused", console.page.describe()
    text = console.page.evaluate("document.getElementById('refused').innerText")
    assert "Not an operator" in text and "admin claim" in text and f"{BOB}@example.com" in text
    assert console.page.evaluate("document.getElementById('nav').hidden") is True
    assert console.page.evaluate("document.getElementById('main').children.length") == 0
    console.shoot("refused")
    console.sign_out()
    assert console.sign_in(f"{OPS}@example.com") == "ready", console.page.describe()
    console.page.evaluate("window.__noReload = 'still here'")


def test_a_submitted_job_goes_queued_running_succeeded_live(console: Console, users: dict[str, ApiUser]) -> None:
    label = f"run-{RUN}"
    console.go(f"#/dev/jobs?label=console={label}")
    console.wait("document.getElementById('jobs-count')?.textContent === 'no jobs match'", "an empty filtered list")
    # Record every status the row shows, as it shows it (a MutationObserver on the table).
    console.page.evaluate(
        "window.__seen = []; new MutationObserver(() => {"
        " const row = document.querySelector('#jobs-table tbody tr');"
        " const s = row && row.dataset.status; if (s && window.__seen.at(-1) !== s) window.__seen.push(s);"
        "}).observe(document.getElementById('jobs-table'), {subtree: true, childList: true, attributes: true})"
    )
    job = (
        users["alice"]
        .submit({"type": "sleep", "payload": {"seconds": 3}, "delay_seconds": 2, "labels": {"console": label}})
        .json()
    )
    console.wait("window.__seen.includes('running')", "the job running", timeout=30)
    console.shoot("jobs")
    console.wait("window.__seen.includes('succeeded')", "the job succeeded", timeout=30)
    assert console.page.evaluate("window.__seen") == ["queued", "running", "succeeded"]
    assert console.page.evaluate("window.__noReload") == "still here", "the page reloaded"

    # Keyboard: j selects the first row, Enter opens it.
    console.key("j")
    console.wait("document.querySelector('#jobs-table tr[aria-selected]')", "a selected row")
    console.key("Enter")
    console.wait(f"location.hash === '#/dev/jobs/{job['id']}'", "the job page, opened with Enter")
    console.wait("document.querySelector('#job-status .status')?.dataset.status === 'succeeded'", "the job page")
    assert console.page.evaluate("document.getElementById('job-result').textContent") == json.dumps(
        {"slept": 3}, indent=2
    )
    assert console.page.evaluate("document.getElementById('job-progress-text').textContent").startswith("3/3")
    logs = console.page.evaluate("document.getElementById('job-logs').href")
    assert "singular-dream-dev" in logs and job["id"] in requests.utils.unquote(logs)
    assert job["trace_id"] in console.page.evaluate("document.getElementById('job-trace').href")
    assert console.page.evaluate("document.querySelectorAll('#job-timeline .attempt').length") >= 1
    console.shoot("job")
    console.key("g")
    console.key("j")
    console.wait("location.hash === '#/dev/jobs'", "g j back to the jobs")


def test_a_dead_letter_group_is_redriven_after_its_dry_run(console: Console, users: dict[str, ApiUser]) -> None:
    alice, ops = users["alice"], users["ops"]
    message = f"console redrive {RUN}"
    ids = [
        alice.submit({"type": "flaky", "payload": {"fail_times": 1, "fatal": True, "message": message}}).json()["id"]
        for _ in range(2)
    ]
    for job_id in ids:
        alice.wait(job_id, {"dead_lettered"})
    letters = [
        wait_for(lambda j=job_id: ops_get(ops, f"/dead-letters/{j}"), what=f"dead letter of {job_id}") for job_id in ids
    ]
    fingerprint = letters[0]["fingerprint"]
    assert {d["fingerprint"] for d in letters} == {fingerprint}
    console.key("g")
    console.key("d")
    group = f"section.dlq-group[data-fingerprint='{fingerprint}']"
    console.wait(f"document.querySelector(\"{group}\")?.dataset.count === '2'", "the group of two")
    console.shoot("dead-letters")
    console.page.click(f"{group} button.redrive")
    console.wait("document.getElementById('redrive-dry-run')?.dataset.count === '2'", "the dry run")
    assert all(alice.get(j).json()["status"] == "dead_lettered" for j in ids), "the dry run redrove"
    console.shoot("redrive")
    console.page.click("#redrive-dialog-confirm")
    console.wait("document.getElementById('notice').textContent.startsWith('Redrove 2 of 2')", "the redrive")
    console.wait(f'!document.querySelector("{group}")', "the group leaving the list")
    for job_id in ids:
        assert alice.wait(job_id)["status"] == "succeeded"


def ops_get(ops: ApiUser, path: str) -> dict[str, object] | None:
    r = requests.get(ops.url(path), headers=ops.headers, timeout=10)
    return dict(r.json()) if r.status_code == 200 else None


def row_of(table: str, key: str, value: str) -> str:
    return f"document.querySelector('#{table} tr[data-{key}=\"{value}\"]')"


def test_a_pipeline_is_watched_live_as_a_graph_retried_from_the_console_and_succeeds(
    console: Console, users: dict[str, ApiUser]
) -> None:
    alice = users["alice"]
    console.key("g")
    console.key("p")
    console.wait("document.getElementById('pipelines-state')?.dataset.count !== undefined", "the live pipelines list")
    body = {
        "name": f"console-{RUN}",
        "steps": {
            "extract": {"type": "echo", "payload": {"message": "rows"}},
            # Three children of 3 s each: long enough to see them counted while the step waits.
            "fan": {
                "type": "fanout",
                "payload": {"count": 3, "child": {"type": "sleep", "payload": {"seconds": 3}}},
                "after": ["extract"],
            },
            "check": {"type": "flaky", "payload": {"fail_times": 1, "fatal": True}, "after": ["extract"]},
            "publish": {"type": "gather", "payload": {}, "after": ["fan", "check"]},
        },
    }
    r = requests.post(alice.url("/pipelines"), json=body, headers=alice.headers, timeout=60)
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    row = row_of("pipelines-table", "id", pid)
    console.wait(row, "the new pipeline in the live list")
    console.page.click(f"#pipelines-table tr[data-id='{pid}'] a")
    console.wait(f"location.hash === '#/dev/pipelines/{pid}'", "its page")
    console.wait("document.querySelectorAll('#pipeline-graph rect.step').length === 4", "the graph of four steps")
    edges = console.page.evaluate(
        "[...document.querySelectorAll('#pipeline-graph line.edge')]"
        ".map(e => `${e.dataset.from}>${e.dataset.to}`).sort()"
    )
    assert edges == ["check>publish", "extract>check", "extract>fan", "fan>publish"]
    # While the fan-out waits, the console counts its children itself (the document counts them at the end).
    console.wait(
        "document.querySelector('#pipeline-graph text.children.live')?.textContent.startsWith('3 children: ')",
        "the fan-out's children counted live",
    )
    status = "document.querySelector('#pipeline-status .status')?.dataset.status"
    console.wait(f"{status} === 'failed'", "the pipeline failed (its check step)", timeout=60)
    steps = (
        "Object.fromEntries([...document.querySelectorAll('#pipeline-steps tbody tr')]"
        ".map(r => [r.dataset.step, r.dataset.status]))"
    )
    assert console.page.evaluate(steps) == {
        "extract": "succeeded",
        "fan": "succeeded",
        "check": "dead_lettered",
        "publish": "skipped",
    }
    fan = "document.querySelector('#pipeline-steps tr[data-step=fan] .children').textContent"
    assert console.page.evaluate(fan) == "3 children: 3 succeeded, 0 failed"
    console.shoot("pipeline")
    console.page.click("#pipeline-retry")
    console.wait("document.getElementById('pipeline-retry-dialog-confirm')", "the retry dialog")
    assert "check" in console.page.evaluate("document.getElementById('dialog').innerText")
    console.page.click("#pipeline-retry-dialog-confirm")
    console.wait(f"{status} === 'succeeded'", "the retried pipeline succeeded", timeout=60)
    assert console.page.evaluate(steps) == dict.fromkeys(("extract", "fan", "check", "publish"), "succeeded")
    seen = console.page.evaluate("[...document.querySelectorAll('#pipeline-statuses li')].map(li => li.dataset.status)")
    assert seen[0] == "running" and seen[-1] == "succeeded" and seen.index("failed") < len(seen) - 1, seen
    done = requests.get(alice.url(f"/pipelines/{pid}"), headers=alice.headers, timeout=30).json()
    assert done["status"] == "succeeded" and done["retry_count"] == 1 and done["steps"]["check"]["attempt"] == 2
    assert console.page.evaluate("window.__noReload") == "still here", "the page reloaded"


def test_a_running_pipeline_is_cancelled_from_the_console(console: Console, users: dict[str, ApiUser]) -> None:
    alice = users["alice"]
    body = {
        "name": f"console-cancel-{RUN}",
        "steps": {
            "slow": {"type": "sleep", "payload": {"seconds": 60}},
            "next": {"type": "echo", "payload": {"message": "never"}, "after": ["slow"]},
        },
    }
    r = requests.post(alice.url("/pipelines"), json=body, headers=alice.headers, timeout=60)
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    console.go(f"#/dev/pipelines/{pid}")
    console.wait(f"{row_of('pipeline-steps', 'step', 'slow')}?.dataset.status === 'running'", "the slow step running")
    console.page.click("#pipeline-cancel")
    console.wait("document.getElementById('pipeline-cancel-dialog-confirm')", "the cancel dialog")
    console.page.click("#pipeline-cancel-dialog-confirm")
    console.wait(
        "document.querySelector('#pipeline-status .status')?.dataset.status === 'cancelled'", "cancelled", timeout=30
    )
    assert not console.page.evaluate("document.getElementById('pipeline-cancel')")  # nothing left to cancel
    done = requests.get(alice.url(f"/pipelines/{pid}"), headers=alice.headers, timeout=30).json()
    assert done["status"] == "cancelled" and done["cancelled_by"] == OPS
    assert {s["status"] for s in done["steps"].values()} == {"cancelled"}
    # Both pipelines in the live list, each with its status (g p: the list again).
    console.key("g")
    console.key("p")
    console.wait(f"{row_of('pipelines-table', 'id', pid)}?.dataset.status === 'cancelled'", "the list")
    assert console.page.evaluate("document.querySelectorAll('#pipelines-table tbody tr').length") >= 2
    console.shoot("pipelines")
    console.go("#/dev/pipelines?status=cancelled")  # one status: the (status, created_at, id) index
    console.wait(
        f"{row_of('pipelines-table', 'id', pid)} && [...document.querySelectorAll('#pipelines-table tbody tr')]"
        ".every(r => r.dataset.status === 'cancelled')",
        "only the cancelled pipelines",
    )


def types_row(console: Console, job_type: str) -> dict[str, str]:
    row = row_of("types-table", "type", job_type)
    found = console.page.evaluate(f"(() => {{ const r = {row}; return r && {{...r.dataset, text: r.innerText}}; }})()")
    return dict(found or {})


def test_a_type_paused_from_the_console_holds_its_job_until_resumed_there(
    console: Console, users: dict[str, ApiUser]
) -> None:
    alice, ops = users["alice"], users["ops"]
    console.key("g")
    console.key("q")
    console.wait("document.querySelectorAll('#queues-table tbody tr').length >= 4", "the queues")
    flaky = row_of("types-table", "type", "flaky")
    console.wait(f"{flaky}?.dataset.paused === 'false'", "flaky running")
    types = console.page.evaluate("[...document.querySelectorAll('#types-table tbody tr')].map(r => r.dataset.type)")
    assert {"echo", "sleep", "flaky", "report", "downstream"} <= set(types)
    assert types_row(console, "flaky")["breaker"] == "none"  # no breaker in infra/breakers.yaml
    assert types_row(console, "downstream")["breaker"] in ("closed", "open", "half_open")
    reason = f"incident {RUN}: the flaky API is down"
    try:
        console.page.click("#types-table tr[data-type=flaky] button.pause")
        console.wait("document.getElementById('pause-dialog-reason')", "the pause dialog")
        console.page.fill("#pause-dialog-reason", reason)
        console.page.click("#pause-dialog-confirm")
        console.wait(f"{flaky}?.dataset.paused === 'true'", "flaky paused")
        row = types_row(console, "flaky")
        assert row["source"] == "operator" and f"paused by {OPS}: {reason}" in row["text"], row
        [state] = [t for t in ops_get(ops, "/types")["types"] if t["type"] == "flaky"]  # type: ignore[index]
        assert state["paused"] and state["reason"] == reason and state["paused_by"] == OPS
        # Due a moment after the pause, so the worker's copy of the type states has it by then.
        job = alice.submit({"type": "flaky", "payload": {"fail_times": 0}, "delay_seconds": 2}).json()

        def waiting() -> dict[str, Any] | None:
            j: dict[str, Any] = alice.get(job["id"]).json()
            return j if (j.get("waiting_for") or {}).get("kind") == "paused" else None

        held = wait_for(waiting, timeout=30, what="the job waiting behind the pause")
        assert (held["status"], held["attempt"], held["waiting_for"]["reason"]) == ("queued", 0, reason)
        console.wait(f"Number({flaky}?.dataset.waiting) >= 1", "the waiting job counted")
        console.shoot("queues")
        assert alice.get(job["id"]).json()["status"] == "queued", "a paused type's job ran"
        console.page.click("#types-table tr[data-type=flaky] button.resume")
        console.wait("document.getElementById('resume-dialog-confirm')", "the resume dialog")
        console.page.click("#resume-dialog-confirm")
        console.wait(f"{flaky}?.dataset.paused === 'false'", "flaky resumed")
        done = alice.wait(job["id"])
        assert (done["status"], done["attempt"]) == ("succeeded", 1)  # the wait used no attempt
    finally:
        requests.post(ops.url("/types/flaky:resume"), json={}, headers=ops.headers, timeout=30)


def test_a_breaker_that_opens_shows_and_an_operators_resume_closes_it(
    console: Console, users: dict[str, ApiUser], stack: Stack
) -> None:
    alice, ops = users["alice"], users["ops"]
    db = clients.firestore_client(stack.infra.env("dev").project)
    switch = db.collection("jobrelay_downstreams").document(f"console-{RUN}")
    switch.set({"up": False})
    downstream = row_of("types-table", "type", "downstream")
    try:
        spec = {"type": "downstream", "payload": {"service": f"console-{RUN}"}}
        ids = [alice.submit(spec).json()["id"] for _ in range(5)]

        def parked() -> bool:
            return all((alice.get(i).json().get("waiting_for") or {}).get("kind") == "breaker" for i in ids)

        wait_for(parked, timeout=60, what="every job waiting behind the open breaker")
        console.wait(f"['open', 'half_open'].includes({downstream}?.dataset.breaker)", "the breaker open, live")
        row = types_row(console, "downstream")
        assert row["paused"] == "true" and row["source"] == "breaker" and "stopped by its breaker" in row["text"], row
        switch.set({"up": True})
        console.page.click("#types-table tr[data-type=downstream] button.resume")
        console.wait("document.getElementById('resume-dialog-confirm')", "the resume dialog")
        console.page.click("#resume-dialog-confirm")
        console.wait(
            f"{downstream}?.dataset.breaker === 'closed' && {downstream}?.dataset.paused === 'false'", "closed again"
        )
        assert {alice.wait(i)["status"] for i in ids} == {"succeeded"}
    finally:
        switch.set({"up": True})
        requests.post(ops.url("/types/downstream:resume"), json={}, headers=ops.headers, timeout=30)


def test_schedules_show_next_and_last_runs_and_health(console: Console) -> None:
    console.key("g")
    console.key("s")
    console.wait("document.querySelector('#schedules-table tr[data-name=\"test-echo\"]')", "the schedules")
    rows = console.page.evaluate(
        "[...document.querySelectorAll('#schedules-table tbody tr')].map(r => [r.dataset.name, r.dataset.healthy])"
    )
    names = {name for name, _ in rows}
    assert {"test-echo", "test-paused", "maintenance"} <= names
    console.shoot("schedules")


def test_the_pool_shows_running_jobs_against_the_cap(console: Console, users: dict[str, ApiUser]) -> None:
    job = users["alice"].submit({"type": "sleep", "payload": {"seconds": 4}, "class": "D"}).json()
    console.key("g")
    console.key("m")
    console.wait("Number(document.querySelector('.pool-env[data-env=dev]')?.dataset.running) >= 1", "a pool job")
    assert "of 4" in console.page.evaluate("document.querySelector('.pool-env[data-env=dev]').innerText")
    console.shoot("pool")
    users["alice"].wait(job["id"])
    console.wait("document.querySelector('.pool-env[data-env=dev]').dataset.running === '0'", "the pool job ending")


def test_a_thousand_jobs_render_in_the_list(console: Console, stack: Stack) -> None:
    label = f"render-{RUN}"
    spec = {"type": "echo", "payload": {"message": "1k"}, "delay_seconds": 3600, "labels": {"console": label}}
    made = []
    for uid in ("console-render-a", "console-render-b"):  # 500 each: within one user's submits a minute
        r = ApiUser(stack, "dev", uid).batch([spec] * 500)
        assert r.status_code == 202, r.text[:300]
        made += r.json()["jobs"]
    console.go(f"#/dev/jobs?label=console={label}&size=1000")
    console.wait("document.getElementById('jobs-table')?.dataset.rows === '1000'", "1,000 rows", timeout=60)
    ms = float(console.page.evaluate("document.getElementById('jobs-table').dataset.renderMs"))
    # Measured here as the issue asks; the figure goes in docs/console.md (timing is not asserted in tests).
    print(f"\nconsole: 1,000 jobs rendered in {ms:.0f} ms")
    (console.shots / "render.json").write_text(json.dumps({"rows": 1000, "render_ms": ms}))
    # The same page on a phone: readable, nothing wider than the screen but the table's own scroller.
    console.go(f"#/dev/jobs?label=console={label}")
    console.wait("document.getElementById('jobs-table')?.dataset.rows === '50'", "a page of 50")
    console.viewport(390, 844, mobile=True)
    assert console.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    console.shoot("jobs-phone")
    console.viewport(1280, 800)
    # Everyone's jobs are one query per index shard, merged: page after page, newest first as one list.
    newest = [j["id"] for j in sorted(made, key=lambda j: (datetime.fromisoformat(j["created_at"]), j["id"]))][::-1]
    shown = "[...document.querySelectorAll('#jobs-table tbody tr')].map(r => r.dataset.id)"
    assert console.page.evaluate(shown) == newest[:50]
    console.page.click("#jobs-older")
    console.wait(rows_counted(51, 100), "the second page")
    assert console.page.evaluate(shown) == newest[50:100]
    console.go(f"#/dev/jobs?label=console={label}&size=200")
    console.wait(rows_counted(1, 200), "a page of 200")
    for page in range(1, 5):
        console.page.click("#jobs-older")
        console.wait(rows_counted(page * 200 + 1, page * 200 + 200), f"page {page + 1}")
    assert console.page.evaluate(shown) == newest[800:]
    assert console.page.evaluate("document.getElementById('jobs-older').disabled"), "a page after the last"
    console.page.click("#jobs-newer")
    console.wait(rows_counted(601, 800), "back a page")
    assert console.page.evaluate(shown) == newest[600:800]


def rows_counted(first: int, last: int) -> str:
    """The pager saying rows first to last are shown (its en dash written as a JavaScript escape)."""
    return f"document.getElementById('jobs-count')?.textContent === '{first}\\u2013{last}'"


def test_a_job_is_promoted_to_stg_from_the_console(console: Console, users: dict[str, ApiUser], stack: Stack) -> None:
    source = users["ops"].submit({"type": "report", "payload": {"collection": f"console-{RUN}"}}).json()
    users["ops"].wait(source["id"])
    console.go(f"#/dev/jobs/{source['id']}")
    console.wait("document.getElementById('job-promote')", "the promote button")
    console.page.click("#job-promote")
    console.wait("document.getElementById('promote-spec')", "the spec to promote")
    assert json.loads(console.page.evaluate("document.getElementById('promote-spec').textContent"))["type"] == "report"
    console.shoot("promote")
    console.page.click("#promote-dialog-confirm")
    # stg is another project: the operator signs in to it (locally the Auth emulator's REST sign-in).
    console.wait("document.getElementById('env-sign-in-password')", "the stg sign-in")
    assert console.page.evaluate("document.getElementById('env-sign-in-email').value") == f"{OPS}@example.com"
    console.page.fill("#env-sign-in-password", authemu.LOCAL_PASSWORD)
    console.page.click("#env-sign-in-confirm")
    console.wait("document.getElementById('notice').textContent.startsWith('Promoted to stg')", "the promotion")
    new_id = console.page.evaluate("document.getElementById('promoted-link').getAttribute('href')").split("/")[-1]
    stg_job = users["stg-ops"].wait(new_id)
    assert stg_job["status"] == "succeeded" and stg_job["owner"] == OPS
    assert stg_job["promoted_from"]["env"] == "dev" and stg_job["promoted_from"]["id"] == source["id"]
    console.wait("document.getElementById('job-promoted-to')?.textContent.includes('stg')", "promoted_to, live")
    assert users["ops"].get(source["id"]).json()["promoted_to"][0]["id"] == new_id
    # The stg job in the console, read from stg's Firestore as the stg operator.
    console.page.click("#promoted-link")
    console.wait(f"location.hash === '#/stg/jobs/{new_id}'", "the stg job's page")
    console.wait(
        f"document.getElementById('job-id')?.textContent === '{new_id}'"
        " && document.querySelector('#job-status .status')?.dataset.status === 'succeeded'"
        " && document.getElementById('job-promoted-from')?.textContent.includes('dev')",
        "the stg job, read from stg's Firestore",
    )
    assert console.page.evaluate("window.__noReload") == "still here", "the page reloaded"


def test_a_pipeline_is_promoted_to_stg_from_the_console(console: Console, users: dict[str, ApiUser]) -> None:
    ops, stg_ops = users["ops"], users["stg-ops"]
    report = {"type": "report", "payload": {"collection": f"console-pipeline-{RUN}"}}
    body = {"name": "console-nightly", "steps": {"export": report, "summary": {**report, "after": ["export"]}}}
    r = requests.post(ops.url("/pipelines"), json=body, headers=ops.headers, timeout=60)
    assert r.status_code == 202, r.text
    source = r.json()["id"]
    console.go(f"#/dev/pipelines/{source}")
    console.wait(
        "document.querySelector('#pipeline-status .status')?.dataset.status === 'succeeded'"
        " && document.getElementById('pipeline-promote')",
        "the dev pipeline succeeded, and the promote button",
    )
    console.page.click("#pipeline-promote")
    console.wait("document.getElementById('promote-spec')", "the spec to promote")
    spec = json.loads(console.page.evaluate("document.getElementById('promote-spec').textContent"))
    assert list(spec["steps"]) == ["export", "summary"] and spec["steps"]["summary"]["after"] == ["export"]
    console.page.click("#promote-dialog-confirm")
    # Signed in to stg by the job's promotion before; run alone, this test signs in here.
    console.wait(
        "document.getElementById('notice').textContent.startsWith('Promoted to stg')"
        " || document.getElementById('env-sign-in-password')",
        "the promotion (or the stg sign-in)",
    )
    if console.page.evaluate("Boolean(document.getElementById('env-sign-in-password'))"):
        console.page.fill("#env-sign-in-password", authemu.LOCAL_PASSWORD)
        console.page.click("#env-sign-in-confirm")
    console.wait("document.getElementById('notice').textContent.startsWith('Promoted to stg: pipeline ')", "promoted")
    href = console.page.evaluate("document.getElementById('promoted-link').getAttribute('href')")
    assert href.startswith("#/stg/pipelines/"), href
    new_id = href.split("/")[-1]
    made = wait_for(
        lambda: (p := ops_get(stg_ops, f"/pipelines/{new_id}")) and p["status"] == "succeeded" and p,
        timeout=60,
        what="the stg pipeline succeeded",
    )
    assert (
        made["owner"] == OPS and made["promoted_from"]["id"] == source and made["promoted_from"]["kind"] == "pipeline"
    )
    console.wait("document.getElementById('pipeline-promoted-to')?.textContent.includes('stg')", "promoted_to, live")
    console.page.click("#promoted-link")
    console.wait(
        f"location.hash === '#/stg/pipelines/{new_id}'"
        " && document.querySelector('#pipeline-status .status')?.dataset.status === 'succeeded'"
        " && document.getElementById('pipeline-promoted-from')?.textContent.includes('dev')",
        "the stg pipeline, read from stg's Firestore",
    )


def test_every_screenshot_is_in_the_docs(console: Console) -> None:
    doc = (REPO / "docs" / "console.md").read_text()
    for name in SHOTS:
        assert f"console/{name}.png" in doc, f"docs/console.md does not show {name}.png"
        assert (DOCS / f"{name}.png").is_file(), f"docs/console/{name}.png missing: make console-screenshots"
