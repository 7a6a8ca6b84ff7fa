"""@jobrelay/client (clients/web) under Node's test runner, against this session's local stack.

The Node tests sign users in for real through the stack's Auth emulator with the Firebase JS SDK, then
submit, watch (onSnapshot on the Firestore emulator), cancel, list and read jobs through the library.
This test builds the library if needed, makes the users, tells the Node tests where everything is and
whether the API serves pipelines, and fails with Node's report if any Node test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
import requests

from jobrelay.local import authemu
from jobrelay.local.stack import REPO, Stack
from tests.support import id_token

LIB = REPO / "clients" / "web"
ENV = "dev"


def serves_pipelines(stack: Stack) -> bool:
    """Does this API have issue 16's pipelines route? (An unknown route answers 404 "no route".)"""
    r = requests.post(
        f"{stack.url('api')}/v1/envs/{ENV}/pipelines",
        json={},
        headers={"Authorization": f"Bearer {id_token(stack, ENV, 'pipeline-probe')}"},
        timeout=30,
    )
    return not (r.status_code == 404 and "no route" in r.text)


def test_the_client_library_against_the_local_stack(stack: Stack) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the client library's tests need Node 20", pytrace=False)
    built = subprocess.run(["bash", str(LIB / "install.sh")], capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, f"clients/web/install.sh failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"

    project = stack.infra.env(ENV).project
    # The JS SDK signs in to the Auth emulator's default project; the stack makes that dev's.
    assert stack.auth_project == project
    tag = uuid.uuid4().hex[:8]
    emails = {}
    for who in ("alice", "bob"):
        emails[who] = authemu.ensure_user(stack.auth_host, project, f"node-{who}-{tag}", claims={})
    env = {
        **os.environ,
        "JOBRELAY_TEST_API": stack.url("api"),
        "JOBRELAY_TEST_AUTH": stack.auth_host,
        "JOBRELAY_TEST_FIRESTORE": f"127.0.0.1:{stack.ports['firestore']}",
        "JOBRELAY_TEST_PROJECT": project,
        "JOBRELAY_TEST_ENV": ENV,
        "JOBRELAY_TEST_PASSWORD": authemu.LOCAL_PASSWORD,
        "JOBRELAY_TEST_ALICE": emails["alice"],
        "JOBRELAY_TEST_BOB": emails["bob"],
        "JOBRELAY_TEST_PIPELINES": "1" if serves_pipelines(stack) else "0",
    }
    # The SDKs must reach the emulators by the addresses above, not by variables of this process.
    for var in ("FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        env.pop(var, None)
    done = subprocess.run(
        [node, "--test", "--test-reporter=spec", "test/unit.test.mjs", "test/stack.test.mjs"],
        cwd=LIB,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, report
    assert "# fail 0" in done.stdout or "fail 0" in done.stdout, report
