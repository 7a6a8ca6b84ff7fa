"""Start-up refusals and token parsing that need no emulator."""

from __future__ import annotations

import pytest

from jobrelay.auth import EMULATOR_VARS, Caller, assert_deployable, bearer, peek
from jobrelay.errors import Unauthenticated
from jobrelay.settings import RuntimeSettings


@pytest.fixture(autouse=True)
def no_emulators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a clean cloud process would: no emulator variables, not on Cloud Run."""
    for var in (*EMULATOR_VARS, "K_SERVICE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("var", ["FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "CLOUD_TASKS_EMULATOR_HOST"])
def test_a_deployed_configuration_with_an_emulator_variable_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, "127.0.0.1:9099")
    with pytest.raises(RuntimeError, match=f"refusing to start: {var}"):
        assert_deployable(RuntimeSettings(mode="cloud"))
    # Cloud Run sets K_SERVICE: even a process claiming to be local refuses there.
    monkeypatch.setenv("K_SERVICE", "jobrelay-api")
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(RuntimeError, match="refusing to start"):
        assert_deployable(RuntimeSettings(mode="local"))


def test_cloud_configuration_without_emulators_starts() -> None:
    assert_deployable(RuntimeSettings(mode="cloud"))


def test_local_mode_needs_the_auth_emulator_variable() -> None:
    with pytest.raises(RuntimeError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        assert_deployable(RuntimeSettings(mode="local"))


@pytest.mark.parametrize(
    ("header", "says"),
    [(None, "missing Authorization"), ("Token abc", "Bearer"), ("Bearer ", "Bearer"), ("bearer x.y.z", None)],
)
def test_bearer_header_forms(header: str | None, says: str | None) -> None:
    if says is None:
        assert bearer(header) == "x.y.z"
    else:
        with pytest.raises(Unauthenticated, match=says):
            bearer(header)


@pytest.mark.parametrize("token", ["abc", "a.b", "a.!!!.c", "a.WzFd.c"])
def test_malformed_tokens_are_refused_before_any_verification(token: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed token"):
        peek(token)


def test_roles_and_admin() -> None:
    assert Caller("u", "user").may_use(())
    assert not Caller("u", "user").may_use(("reporter",))
    assert Caller("u", "user", roles=frozenset({"reporter"})).may_use(("reporter", "x"))
    assert Caller("u", "user", admin=True).may_use(("anything",))


class FakeResponse:
    def __init__(self, certs: dict[str, str], max_age: int = 3600) -> None:
        import json

        self.status = 200
        self.data = json.dumps(certs).encode()
        self.headers = {"cache-control": f"public, max-age={max_age}, must-revalidate"}


class FakeRequest:
    def __init__(self, *responses: FakeResponse) -> None:
        self.responses = list(responses)
        self.calls = 0

    def __call__(self, url: str, method: str = "GET") -> FakeResponse:
        self.calls += 1
        return self.responses[min(self.calls, len(self.responses)) - 1]


def test_signing_certificates_are_fetched_once_per_max_age_and_on_an_unknown_key() -> None:
    from jobrelay.auth import CertCache

    request = FakeRequest(FakeResponse({"k1": "cert1"}), FakeResponse({"k1": "cert1", "k2": "cert2"}))
    cache = CertCache("http://certs.test", min_refetch_seconds=0)
    assert cache.get("k1", request) == {"k1": "cert1"}
    assert cache.get("k1", request) == {"k1": "cert1"}
    assert request.calls == 1  # cached
    assert cache.get("k2", request) == {"k1": "cert1", "k2": "cert2"}  # a rotated key: fetched again
    assert request.calls == 2


def test_unknown_keys_do_not_refetch_more_than_the_limit_allows() -> None:
    from jobrelay.auth import CertCache

    request = FakeRequest(FakeResponse({"k1": "cert1"}))
    cache = CertCache("http://certs.test", min_refetch_seconds=3600)
    for _ in range(5):
        cache.get("forged-kid", request)
    assert request.calls == 1


def test_expired_certificates_are_fetched_again() -> None:
    from jobrelay.auth import CertCache

    request = FakeRequest(FakeResponse({"k1": "cert1"}, max_age=0))
    cache = CertCache("http://certs.test")
    cache.get("k1", request)
    cache.get("k1", request)
    assert request.calls == 2
