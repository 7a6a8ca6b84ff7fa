"""`jobrelay access grant|revoke|list|log` against the Auth emulator: claims, token refresh, access_log.

The CLI calls the API's operator routes; the API sets custom claims with firebase-admin in the env's
project (the Auth emulator here) and records each change in the env's Firestore `access_log`. A user
sees new claims after their ID token refreshes: the test refreshes it as the Firebase SDKs do
(securetoken's refresh_token grant, what `getIdToken(true)` calls).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from typer.testing import CliRunner, Result

from jobrelay import cli, clients
from jobrelay.local import authemu
from jobrelay.local.stack import Stack
from tests.support import id_token

runner = CliRunner()
ENV = "dev"


def access_cli(stack: Stack, uid: str, *args: str, admin: bool = True) -> Result:
    """`jobrelay --api URL --local-user UID [--admin] access ARGS... --json` in this process."""
    base = ["--api", stack.url("api"), "--local-user", uid, *(["--admin"] if admin else [])]
    return runner.invoke(cli.app, [*base, "access", *args, "--json"], env={"COLUMNS": "200"})


def refresh(stack: Stack, refresh_token: str) -> str:
    """A new ID token from the refresh token, as the Firebase JS SDK's getIdToken(true) gets it."""
    r = requests.post(
        f"http://{stack.auth_host}/securetoken.googleapis.com/v1/token?key=local",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id_token"])


def stats(stack: Stack, token: str) -> requests.Response:
    """An operator-only route: 200 for an admin, 403 for anyone else."""
    return requests.get(
        f"{stack.url('api')}/v1/envs/{ENV}/stats", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def log_count(stack: Stack) -> int:
    db = clients.firestore_client(stack.infra.env(ENV).project)
    return int(db.collection("access_log").count().get()[0][0].value)


def claims_of(stack: Stack, uid: str) -> dict[str, Any]:
    """The user's custom claims as the Auth emulator holds them."""
    r = requests.post(
        f"http://{stack.auth_host}/identitytoolkit.googleapis.com/v1/projects/{stack.infra.env(ENV).project}/accounts:lookup",
        json={"localId": [uid]},
        headers=authemu.OWNER,
        timeout=10,
    )
    user = r.json()["users"][0]
    return dict(json.loads(user.get("customAttributes") or "{}"))


@pytest.fixture
def dana(stack: Stack) -> authemu.SignedIn:
    """A fresh user who signed in to the app once, with no claims."""
    uid = f"dana-{uuid.uuid4().hex[:8]}"
    return authemu.sign_in(stack.auth_host, stack.infra.env(ENV).project, uid)


def test_grant_makes_a_user_an_operator_after_token_refresh_and_revoke_undoes_it(
    stack: Stack, dana: authemu.SignedIn
) -> None:
    assert stats(stack, dana.id_token).status_code == 403

    granted = access_cli(stack, "access-root", "grant", dana.email, "--env", ENV, "--admin")
    assert granted.exit_code == 0, granted.output
    body = json.loads(granted.stdout)
    assert body["changed"] is True and body["before"] == {"admin": False, "roles": []}
    assert body["after"] == {"admin": True, "roles": []} and "getIdToken(true)" in body["note"]
    # The token she holds was issued before: it still says what it said.
    assert stats(stack, dana.id_token).status_code == 403
    fresh = refresh(stack, dana.refresh_token)
    assert stats(stack, fresh).status_code == 200

    listed = json.loads(access_cli(stack, "access-root", "list", "--env", ENV).stdout)
    assert {"uid": dana.uid, "email": dana.email, "admin": True, "roles": [], "disabled": False} in listed["users"]

    revoked = access_cli(stack, "access-root", "revoke", dana.email, "--env", ENV, "--admin")
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["after"] == {"admin": False, "roles": []}
    assert stats(stack, refresh(stack, dana.refresh_token)).status_code == 403
    listed = json.loads(access_cli(stack, "access-root", "list", "--env", ENV).stdout)
    assert dana.uid not in {u["uid"] for u in listed["users"]}

    entries = json.loads(access_cli(stack, "access-root", "log", "--env", ENV, "--limit", "50").stdout)["entries"]
    mine = [e for e in entries if e["target"]["uid"] == dana.uid]
    assert [e["action"] for e in mine] == ["revoke", "grant"]  # newest first
    revoke, grant = mine
    for entry in mine:
        assert entry["by"]["uid"] == "access-root" and entry["status"] == "applied" and entry["env"] == ENV
        assert entry["at"] and entry["target"]["email"] == dana.email
    assert grant["before"] == {"admin": False, "roles": []} and grant["after"] == {"admin": True, "roles": []}
    assert revoke["before"] == grant["after"] and revoke["after"] == grant["before"]


def test_a_granted_role_lets_the_user_submit_that_job_type(stack: Stack, dana: authemu.SignedIn) -> None:
    report = {"type": "report", "payload": {"collection": "access-test"}}
    jobs = f"{stack.url('api')}/v1/envs/{ENV}/jobs"

    def submit(token: str) -> requests.Response:
        return requests.post(jobs, json=report, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    assert submit(dana.id_token).status_code == 403
    granted = access_cli(stack, "access-root", "grant", dana.email, "--env", ENV, "--role", "reporter")
    assert granted.exit_code == 0, granted.output
    assert submit(refresh(stack, dana.refresh_token)).status_code == 202
    # Granting what she has changes nothing and records nothing.
    before = log_count(stack)
    again = json.loads(access_cli(stack, "access-root", "grant", dana.email, "--env", ENV, "--role", "reporter").stdout)
    assert again["changed"] is False and again["log_id"] is None
    assert log_count(stack) == before


def test_claims_the_app_set_itself_are_kept(stack: Stack, dana: authemu.SignedIn) -> None:
    authemu.ensure_user(stack.auth_host, stack.infra.env(ENV).project, dana.uid, claims={"plan": "pro"})
    assert access_cli(stack, "access-root", "grant", dana.email, "--env", ENV, "--admin").exit_code == 0
    assert claims_of(stack, dana.uid) == {"plan": "pro", "admin": True}
    assert access_cli(stack, "access-root", "revoke", dana.email, "--env", ENV, "--admin").exit_code == 0
    assert claims_of(stack, dana.uid) == {"plan": "pro"}


REFUSALS = [
    # (name, status, words in the message, how to ask)
    ("grant by a non-operator", 403, "not an operator", lambda s, d: post(s, id_token(s, ENV, d.uid), grant(d))),
    (
        "grant of an unknown role",
        422,
        "unknown role 'wizard'",
        lambda s, d: post(s, root(s), grant(d, roles=["wizard"])),
    ),
    (
        "grant of jobrelay's own role",
        422,
        "unknown role 'jobrelay-system'",
        lambda s, d: post(s, root(s), grant(d, roles=["jobrelay-system"])),
    ),
    (
        "an email with no user",
        404,
        "no user with email nobody-",
        lambda s, d: post(s, root(s), {"email": f"nobody-{uuid.uuid4().hex[:6]}@example.com", "admin": True}),
    ),
    ("nothing asked", 422, '"admin": true and/or "roles"', lambda s, d: post(s, root(s), {"email": d.email})),
    ("not an email", 422, "email: not an email", lambda s, d: post(s, root(s), {"email": "dana", "admin": True})),
    ("unknown field", 422, "owner: Extra inputs", lambda s, d: post(s, root(s), {**grant(d), "owner": True})),
    ("body not an object", 422, "JSON object", lambda s, d: post(s, root(s), ["x"])),
    ("no token", 401, "Authorization", lambda s, d: post(s, None, grant(d))),
    (
        "an operator of another env",
        401,
        "not 'singular-dream-dev'",
        lambda s, d: post(s, id_token(s, "prod", "access-root", admin=True), grant(d)),
    ),
]


def grant(user: authemu.SignedIn, **kw: Any) -> dict[str, Any]:
    return {"email": user.email, "admin": True, **kw}


def root(stack: Stack) -> str:
    return id_token(stack, ENV, "access-root", admin=True)


def post(stack: Stack, token: str | None, body: Any, action: str = "grant") -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{stack.url('api')}/v1/envs/{ENV}/access:{action}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("name", "status", "says", "ask"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_access_changes_name_the_problem_and_change_nothing(
    stack: Stack, dana: authemu.SignedIn, name: str, status: int, says: str, ask: Any
) -> None:
    before_log, before_claims = log_count(stack), claims_of(stack, dana.uid)
    r = ask(stack, dana)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"], r.json()
    assert log_count(stack) == before_log
    assert claims_of(stack, dana.uid) == before_claims == {}


def test_reading_access_is_for_operators_only(stack: Stack, dana: authemu.SignedIn) -> None:
    for path in ("/access", "/access/log"):
        r = requests.get(
            f"{stack.url('api')}/v1/envs/{ENV}{path}",
            headers={"Authorization": f"Bearer {dana.id_token}"},
            timeout=30,
        )
        assert r.status_code == 403 and "not an operator" in r.json()["error"]["message"]
    refused = access_cli(stack, dana.uid, "grant", "x@example.com", "--admin", admin=False)
    assert refused.exit_code == cli.AUTH


@pytest.mark.parametrize("limit", ["0", "201", "-5"])
def test_an_access_log_limit_outside_the_documented_range_is_refused(stack: Stack, limit: str) -> None:
    """The OpenAPI document says 1-200; the fuzz run found 201 clamped and answered 200 (failed before)."""
    r = requests.get(
        f"{stack.url('api')}/v1/envs/{ENV}/access/log",
        params={"limit": limit},
        headers={"Authorization": f"Bearer {root(stack)}"},
        timeout=30,
    )
    assert r.status_code == 422 and "limit must be between 1 and 200" in r.json()["error"]["message"], r.text
