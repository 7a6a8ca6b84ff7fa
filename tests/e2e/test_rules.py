"""Firestore security rules, checked on the emulator with client tokens (the REST path the SDKs use)."""

from __future__ import annotations

import requests

from jobrelay.local.stack import Stack
from tests.support import ApiUser, client_read, id_token

PROJECT = "singular-dream-dev"


def rest_write(stack: Stack, path: str, token: str, method: str = "PATCH") -> requests.Response:
    url = f"http://127.0.0.1:{stack.ports['firestore']}/v1/projects/{PROJECT}/databases/(default)/documents/{path}"
    body = {"fields": {"status": {"stringValue": "succeeded"}}}
    return requests.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_owner_reads_own_job_and_others_are_denied(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "echo", "payload": {"message": "rules"}, "delay_seconds": 60}).json()
    assert client_read(stack, "dev", f"jobs/{job['id']}", alice.token()).status_code == 200
    other = client_read(stack, "dev", f"jobs/{job['id']}", id_token(stack, "dev", "mallory"))
    assert other.status_code == 403
    admin = client_read(stack, "dev", f"jobs/{job['id']}", id_token(stack, "dev", "root", admin=True))
    assert admin.status_code == 200


def test_no_client_may_write_a_job_not_even_its_owner_or_an_admin(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "echo", "payload": {"message": "rules"}, "delay_seconds": 60}).json()
    for token in (alice.token(), id_token(stack, "dev", "root", admin=True)):
        assert rest_write(stack, f"jobs/{job['id']}", token).status_code == 403
        assert rest_write(stack, f"jobs/{job['id']}", token, method="DELETE").status_code == 403
    assert alice.get(job["id"]).json()["status"] == "queued"


def test_dead_letters_are_for_admins_only(stack: Stack) -> None:
    assert client_read(stack, "dev", "dead_letters/any", id_token(stack, "dev", "alice")).status_code == 403


def test_unauthenticated_clients_read_nothing(stack: Stack, alice: ApiUser) -> None:
    job = alice.submit({"type": "echo", "payload": {"message": "rules"}, "delay_seconds": 60}).json()
    url = (
        f"http://127.0.0.1:{stack.ports['firestore']}/v1/projects/{PROJECT}/databases/(default)/documents/"
        f"jobs/{job['id']}"
    )
    assert requests.get(url, timeout=10).status_code == 403


def test_schedules_are_for_admins_to_read_and_nobody_writes_them(stack: Stack, admin: ApiUser) -> None:
    # A tick records schedules/test-echo; the operator console listens to it.
    from tests.e2e.test_cron import minute, tick

    assert tick(stack, "test-echo", minute(-30)).status_code in (200, 202)
    root = id_token(stack, "dev", "root", admin=True)
    assert client_read(stack, "dev", "schedules/test-echo", root).status_code == 200
    assert client_read(stack, "dev", "schedules/test-echo", id_token(stack, "dev", "alice")).status_code == 403
    for token in (root, id_token(stack, "dev", "alice")):
        assert rest_write(stack, "schedules/test-echo", token).status_code == 403
        assert rest_write(stack, "schedules/test-echo", token, method="DELETE").status_code == 403
    assert client_read(stack, "dev", "schedules/test-echo", root).json()["fields"]["name"]["stringValue"] == "test-echo"
