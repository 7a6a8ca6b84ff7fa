"""The Firebase web client (examples/web) in headless Chromium against the local stack.

The page submits over the HTTP API (CORS from its own origin) and watches `jobs/{id}` with the Firebase
JS SDK's onSnapshot against the Firestore emulator, under infra/firestore.rules. Fixtures here start
their own stack, because the page's origin (a free port) must be in the env's app_origins.
Chromium missing is a failure with the way to install it, never a skip.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from jobrelay import clients
from jobrelay.local.stack import Stack, StackOptions
from jobrelay.local.tokens import emulator_id_token
from tests.e2e import web_site
from tests.e2e.web_browser import Browser, Page

ENV = "dev"
PAGE_READY = "document.getElementById('app-state').dataset.state"
STATUSES = "[...document.querySelectorAll('#statuses li')].map(li => li.dataset.status)"
UPDATES = (
    "[...document.querySelectorAll('#updates li')].map(li => "
    "({status: li.dataset.status, done: li.dataset.done, total: li.dataset.total}))"
)
STATUS = "document.getElementById('job-status').dataset.status"
# The progress bar moves (is indeterminate) where a person can see it.
BAR_MOVES = (
    "(() => { const b = document.getElementById('job-progress');"
    " return !b.closest('[hidden]') && b.position === -1; })()"
)


@pytest.fixture(scope="module")
def site() -> Iterator[web_site.StaticServer]:
    try:
        web_site.build()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = web_site.StaticServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def web_stack(site: web_site.StaticServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local stack whose dev env lets the page's origin call the API."""
    tmp = tmp_path_factory.mktemp("web-stack")
    infra = web_site.infra_allowing(site.origin, ENV, tmp / "infra")
    saved = dict(os.environ)  # Stack.start points this process's Google clients at its emulators
    stack = Stack(
        StackOptions(state_dir=tmp / "state", infra_dir=infra, tick_seconds=0, services=("api", "worker", "deadletter"))
    )
    stack.start()
    try:
        _warm_up(stack)
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        clients.reset()


def _warm_up(stack: Stack) -> None:
    """Run one job through, so that the first submit from a page does not pay the API's cold start."""
    headers = {"Authorization": f"Bearer {emulator_id_token(stack.infra.env(ENV).project, 'warm-up')}"}
    jobs = f"{stack.url('api')}/v1/envs/{ENV}/jobs"
    r = requests.post(jobs, json={"type": "echo", "payload": {"message": "warm-up"}}, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while requests.get(f"{jobs}/{r.json()['id']}", headers=headers, timeout=30).json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the warm-up job did not succeed in 30 s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    tmp = tmp_path_factory.mktemp("chromium")
    missing = ""
    try:
        chromium = Browser.launch(tmp / "profile", tmp / "chromium.log")
    except FileNotFoundError as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    try:
        yield chromium
    finally:
        chromium.close()
        assert chromium.popen.poll() is not None, f"Chromium {chromium.pid} still running"


class WebUser:
    """A user of the page: their own browser context, signed in with a token the local stack accepts."""

    def __init__(
        self, stack: Stack, site: web_site.StaticServer, browser: Browser, uid: str, admin: bool = False
    ) -> None:
        self.stack, self.site, self.browser, self.uid = stack, site, browser, uid
        self.token = emulator_id_token(stack.infra.env(ENV).project, uid, admin=admin)
        self.pages: list[Page] = []

    def open(self) -> Page:
        query = urlencode(
            {
                "api": self.stack.url("api"),
                "env": ENV,
                "project": self.stack.infra.env(ENV).project,
                "firestore": f"127.0.0.1:{self.stack.ports['firestore']}",
                "uid": self.uid,
                "token": self.token,
            }
        )
        page = self.browser.new_page(f"{self.site.origin}/index.html?{query}")
        self.pages.append(page)
        state = page.wait_for(f"{PAGE_READY} !== 'loading' && {PAGE_READY}", timeout=20, what="the page starting")
        assert state == "ready", page.describe()
        return page

    def submit_api(self, spec: dict[str, object]) -> str:
        """Submit without the page (the job another user's page will try to watch)."""
        r = requests.post(
            f"{self.stack.url('api')}/v1/envs/{ENV}/jobs",
            json=spec,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def get_api(self, job_id: str) -> dict[str, object]:
        r = requests.get(
            f"{self.stack.url('api')}/v1/envs/{ENV}/jobs/{job_id}",
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def close(self) -> None:
        for page in self.pages:
            page.close()


@pytest.fixture
def users(browser: Browser, web_stack: Stack, site: web_site.StaticServer) -> Iterator[dict[str, WebUser]]:
    # Chromium first: if it is missing, fail before spending seconds on the stack.
    made = {uid: WebUser(web_stack, site, browser, uid) for uid in ("alice", "bob")}
    made["root"] = WebUser(web_stack, site, browser, "root", admin=True)
    try:
        yield made
    finally:
        for user in made.values():
            user.close()


def submit(page: Page, job_type: str, payload: dict[str, object], delay_seconds: float | None = None) -> str:
    """Fill in the form and press Submit; returns the id the page then watches."""
    page.fill("#job-type", job_type)
    page.fill("#job-payload", json.dumps(payload))
    if delay_seconds is not None:
        page.fill("#job-delay", str(delay_seconds))
    page.click("#submit-button")
    job_id = page.wait_for(
        "!document.getElementById('job').hidden && document.getElementById('job-id').textContent"
        " || document.getElementById('submit-error').textContent",
        timeout=15,
        what="the submitted job",
    )
    assert page.evaluate("document.getElementById('submit-error').hidden"), f"submit refused: {job_id}"
    return str(job_id)


def test_page_watches_its_job_go_queued_running_succeeded_with_progress(users: dict[str, WebUser]) -> None:
    page = users["alice"].open()
    # A short delay keeps the job queued until the page's listener is attached, so that the page's first
    # snapshot is the queued job (without it the worker may claim the job before the listener is up).
    job_id = submit(page, "sleep", {"seconds": 3}, delay_seconds=2)
    page.wait_for(f"{STATUS} === 'succeeded'", timeout=30, what="status succeeded")

    assert page.evaluate(STATUSES) == ["queued", "running", "succeeded"], (
        f"{page.describe()}\nthe API's record: {users['alice'].get_api(job_id)}"
    )
    updates = page.evaluate(UPDATES)
    partial = [
        u for u in updates if u["status"] == "running" and u["done"] != "" and float(u["done"]) < float(u["total"])
    ]
    assert partial, f"no progress update with done < total before success: {updates}"
    assert updates.index(partial[0]) < next(i for i, u in enumerate(updates) if u["status"] == "succeeded")
    assert page.evaluate(
        "[document.getElementById('job-progress').value, document.getElementById('job-progress').max]"
    ) == [3, 3]
    assert page.evaluate("document.getElementById('job-message').textContent") == "slept 3s of 3s"
    assert json.loads(page.evaluate("document.getElementById('job-result-json').textContent")) == {"slept": 3}
    assert page.evaluate("document.getElementById('job-error').hidden")


def watch(page: Page, job_id: str) -> None:
    page.fill("#watch-id", job_id)
    page.click("#watch-button")


def test_another_users_page_is_denied_the_job(users: dict[str, WebUser]) -> None:
    alice, bob, admin = users["alice"], users["bob"], users["root"]
    job_id = alice.submit_api({"type": "echo", "payload": {"message": "for alice only"}})

    bobs = bob.open()
    watch(bobs, job_id)
    code = bobs.wait_for("document.getElementById('watch-error').dataset.code", timeout=15, what="a watch error")
    assert code == "permission-denied", bobs.describe()
    assert "Permission denied" in bobs.evaluate("document.getElementById('watch-error').textContent")
    assert bobs.evaluate(STATUSES) == [] and bobs.evaluate(STATUS) == "", "bob's page shows alice's job"
    assert bobs.evaluate(BAR_MOVES) is False, "the bar still moves for a job bob may not read"

    # The same watch from the owner's page, and from an admin's (the token's admin claim reaches the
    # rules through mockUserToken), works: the denial is about who asks.
    for user in (alice, admin):
        page = user.open()
        watch(page, job_id)
        page.wait_for(f"{STATUS} === 'succeeded'", timeout=20, what=f"{user.uid} seeing the job succeed")
        assert page.evaluate("document.getElementById('watch-error').hidden"), page.describe()
        assert json.loads(page.evaluate("document.getElementById('job-result-json').textContent")) == {
            "message": "for alice only"
        }
        assert page.evaluate(BAR_MOVES) is False, "the bar still moves for a finished job without progress"
        assert page.evaluate("document.getElementById('job-progress').value") == 1


def test_failing_job_shows_its_error(users: dict[str, WebUser]) -> None:
    page = users["alice"].open()
    submit(page, "flaky", {"fatal": True, "message": "disk on fire"})
    page.wait_for(f"{STATUS} === 'dead_lettered'", timeout=30, what="status dead_lettered")

    assert page.evaluate(STATUSES)[-1] == "dead_lettered", page.describe()
    assert page.evaluate("document.getElementById('job-error').hidden") is False
    assert page.evaluate("document.getElementById('job-error-text').textContent") == (
        "Fatal: disk on fire (run 1, fatal)"
    )
    assert page.evaluate("document.getElementById('job-result').hidden")
    assert page.evaluate(BAR_MOVES) is False, "the bar still moves for a dead-lettered job"


def test_missing_chromium_fails_with_install_hint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y chromium"):
        Browser.launch(tmp_path / "profile", tmp_path / "log", executable=tmp_path / "no-chromium")
