"""Helpers the integration and e2e tests share: API callers signed in through the Auth emulator, waiting, counting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from jobrelay.local import authemu
from jobrelay.local.stack import Stack
from jobrelay.settings import AppCheckMode
from tests.appcheck_keys import AppCheckKeys

FINAL = {"succeeded", "dead_lettered", "cancelled", "skipped"}
# The session's App Check keys (tests/conftest.py): where an env requires App Check, ApiUser is an app
# that sends a valid token, as a real app with App Check does on every call.
APP_CHECK: AppCheckKeys | None = None
# Signed-in users' tokens, so that the suite signs each (user, claims) in once, not once a request.
_TOKENS: dict[tuple[str, str, str, bool, tuple[str, ...]], authemu.SignedIn] = {}


def id_token(stack: Stack, env: str, uid: str, *, admin: bool = False, roles: Iterable[str] = ()) -> str:
    """An ID token of `uid` in `env`, signed in through the stack's Auth emulator with these claims."""
    return project_token(stack, stack.infra.env(env).project, uid, admin=admin, roles=roles)


def project_token(stack: Stack, project: str, uid: str, *, admin: bool = False, roles: Iterable[str] = ()) -> str:
    """The same for any Firebase project id, one of no env included (the emulator serves them all)."""
    key = (stack.auth_host, project, uid, admin, tuple(sorted(roles)))
    signed = _TOKENS.get(key)
    if signed is None or signed.expires_at - time.time() < 300:
        signed = _TOKENS[key] = authemu.sign_in(stack.auth_host, project, uid, admin=admin, roles=key[4])
    return signed.id_token


@dataclass
class ApiUser:
    """A signed-in user of one env, calling the local API."""

    stack: Stack
    env: str
    uid: str
    admin: bool = False
    roles: tuple[str, ...] = ()

    @property
    def project(self) -> str:
        return self.stack.infra.env(self.env).project

    def token(self) -> str:
        return id_token(self.stack, self.env, self.uid, admin=self.admin, roles=self.roles)

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        if APP_CHECK is not None and self.stack.infra.env(self.env).app_check is AppCheckMode.REQUIRED:
            headers["X-Firebase-AppCheck"] = APP_CHECK.token(self.project)
        return headers

    def url(self, path: str) -> str:
        return f"{self.stack.url('api')}/v1/envs/{self.env}{path}"

    def submit(self, spec: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(self.url("/jobs"), json=spec, headers={**self.headers, **(headers or {})}, timeout=30)

    def batch(self, specs: list[dict[str, Any]]) -> requests.Response:
        return requests.post(self.url("/jobs:batch"), json={"jobs": specs}, headers=self.headers, timeout=60)

    def get(self, job_id: str) -> requests.Response:
        return requests.get(self.url(f"/jobs/{job_id}"), headers=self.headers, timeout=30)

    def list(self, **params: Any) -> requests.Response:
        return requests.get(self.url("/jobs"), params=params, headers=self.headers, timeout=30)

    def cancel(self, job_id: str) -> requests.Response:
        return requests.post(self.url(f"/jobs/{job_id}:cancel"), headers=self.headers, timeout=30)

    def wait(
        self, job_id: str, statuses: Iterable[str] = FINAL, timeout: float = 60, seen: list[str] | None = None
    ) -> dict[str, Any]:
        """Poll until the job reaches one of `statuses`; `seen` collects every status observed."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = self.get(job_id)
            assert r.status_code == 200, r.text
            job = r.json()
            if seen is not None and (not seen or seen[-1] != job["status"]):
                seen.append(job["status"])
            if job["status"] in wanted:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout}s: {job}")


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached after {timeout}s")


def client_read(stack: Stack, env: str, path: str, token: str) -> requests.Response:
    """Read a document as a Firebase client would (security rules apply), via the emulator's REST API."""
    project = stack.infra.env(env).project
    url = f"http://127.0.0.1:{stack.ports['firestore']}/v1/projects/{project}/databases/(default)/documents/{path}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def count_jobs(stack: Stack, env: str) -> int:
    from jobrelay import clients

    db = clients.firestore_client(stack.infra.env(env).project)
    return int(db.collection("jobs").count().get()[0][0].value)


def task_names(stack: Stack, env: str) -> set[str]:
    """Every task waiting in the env's queues."""
    from jobrelay import clients

    tasks = clients.tasks_client()
    env_s = stack.infra.env(env)
    names: set[str] = set()
    for queue in (q for job_class in stack.infra.classes.values() for q in job_class.queues):
        parent = tasks.queue_path(env_s.project, env_s.region, queue)
        names.update(t.name for t in tasks.list_tasks(parent=parent))
    return names
