"""Start-up refusals, token parsing and verification that need no emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from firebase_admin import credentials as firebase_credentials

from jobrelay.auth import CLOCK_SKEW_SECONDS, EMULATOR_VARS, Authenticator, Caller, assert_deployable, bearer, peek
from jobrelay.errors import PermissionDenied, Unauthenticated, Unavailable
from jobrelay.infra_files import load_infra
from jobrelay.process_settings import RuntimeSettings
from jobrelay.wsgi import status_of


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


# -- tokens whose keys come from a certificate endpoint (a local HTTP server stands in for Google's) --------


class CertEndpoint:
    """Serves `status` and `body` at /certs, as Google's certificate endpoints answer (or fail to)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.status = 200
        self.body = b"{}"
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(endpoint.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        self.open = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[CertEndpoint]:
    e = CertEndpoint()
    yield e
    e.close()


class Key:
    """An RSA key with a self-signed certificate: signs tokens the way Google does."""

    def __init__(self) -> None:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        from google.auth import crypt

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
        at = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(at - dt.timedelta(days=1))
            .not_valid_after(at + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.kid = "test-key"
        self.signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        self.certs = json.dumps({self.kid: cert.public_bytes(serialization.Encoding.PEM).decode()}).encode()

    def token(self, **claims: Any) -> str:
        from google.auth import jwt

        return jwt.encode(self.signer, claims).decode()


@pytest.fixture(scope="module")
def key() -> Key:
    return Key()


SA = "jobrelay-scheduler@singular-dream-dev.iam.gserviceaccount.com"
AUD = "http://api.test"


def google_claims(**extra: Any) -> dict[str, Any]:
    at = int(time.time())
    return {
        "iss": "https://accounts.google.com",
        "aud": AUD,
        "sub": "1",
        "email": SA,
        "iat": at,
        "exp": at + 600,
        **extra,
    }


@pytest.mark.parametrize(
    "verified",
    [{}, {"email_verified": "false"}, {"email_verified": "true"}, {"email_verified": False}, {"email_verified": 1}],
    ids=["missing", "string-false", "string-true", "false", "one"],
)
def test_an_oidc_token_needs_email_verified_exactly_true(
    endpoint: CertEndpoint, key: Key, verified: dict[str, Any]
) -> None:
    endpoint.body = key.certs
    auth = Authenticator(RuntimeSettings(oidc_certs_url=endpoint.url))
    claims = {k: v for k, v in google_claims().items()} | verified
    with pytest.raises(Unauthenticated, match="no verified email"):
        auth.verify_google(key.token(**claims), audience=AUD, allowed=(SA,))
    assert auth.verify_google(key.token(**google_claims(email_verified=True)), audience=AUD, allowed=(SA,)) == SA


def test_a_token_seen_before_is_not_checked_again_but_still_expires_and_keeps_its_audience(
    endpoint: CertEndpoint, key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth import jwt

    endpoint.body = key.certs
    auth = Authenticator(RuntimeSettings(oidc_certs_url=endpoint.url))
    token = key.token(**google_claims(email_verified=True))
    decoded: list[str] = []
    real = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda t, **kw: decoded.append(t) or real(t, **kw))
    assert auth.verify_google(token, audience=AUD, allowed=(SA,)) == SA
    assert auth.verify_google(token, audience=AUD, allowed=(SA,)) == SA
    assert decoded == [token]  # the signature was checked once
    with pytest.raises(PermissionDenied):  # the allow-list is checked on every use
        auth.verify_google(token, audience=AUD, allowed=("someone@else.test",))
    with pytest.raises(Unauthenticated):  # another audience is verified in full, and refused
        auth.verify_google(token, audience="http://elsewhere.test", allowed=(SA,))
    import datetime as dt

    import google.auth._helpers

    later = 600 + 2 * CLOCK_SKEW_SECONDS  # the clock moves past the token's expiry, for both checks
    at, utcnow = time.time(), google.auth._helpers.utcnow
    monkeypatch.setattr(time, "time", lambda: at + later)
    monkeypatch.setattr(google.auth._helpers, "utcnow", lambda: utcnow() + dt.timedelta(seconds=later))
    with pytest.raises(Unauthenticated):  # past its expiry the cached token is refused
        auth.verify_google(token, audience=AUD, allowed=(SA,))


@pytest.mark.parametrize("failure", ["answers 500", "answers no JSON", "is down"])
def test_an_oidc_token_whose_keys_cannot_be_fetched_is_a_retryable_503(
    endpoint: CertEndpoint, key: Key, failure: str
) -> None:
    url = endpoint.url
    if failure == "answers 500":
        endpoint.status = 500
    elif failure == "answers no JSON":
        endpoint.body = b"<html>maintenance</html>"
    else:
        endpoint.close()
    auth = Authenticator(RuntimeSettings(oidc_certs_url=url))
    with pytest.raises(Unavailable, match="cannot check the token now") as err:
        auth.verify_google(key.token(**google_claims(email_verified=True)), audience=AUD, allowed=(SA,))
    assert status_of(err.value) == 503 and err.value.retry_after > 0


class Anonymous(firebase_credentials.Base):
    def get_credential(self) -> Any:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()


def test_a_firebase_token_whose_keys_cannot_be_fetched_is_a_retryable_503(
    endpoint: CertEndpoint, key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    import firebase_admin
    from firebase_admin import _token_gen

    endpoint.status = 503
    monkeypatch.setattr(_token_gen, "ID_TOKEN_CERT_URI", endpoint.url)
    infra = load_infra()
    env = infra.env("dev")
    at = int(time.time())
    token = key.token(
        iss=f"https://securetoken.google.com/{env.project}",
        aud=env.project,
        sub="alice",
        iat=at,
        exp=at + 600,
        auth_time=at,
    )
    # As on Cloud Run, the app has credentials (here anonymous ones: checking a token needs none).
    firebase_admin.initialize_app(Anonymous(), options={"projectId": env.project}, name=f"jobrelay-{env.name}")
    auth = Authenticator(RuntimeSettings())
    try:
        with pytest.raises(Unavailable, match="Firebase's signing keys could not be fetched") as err:
            auth.caller(env, f"Bearer {token}")
        assert status_of(err.value) == 503 and err.value.retry_after > 0
    finally:
        firebase_admin.delete_app(firebase_admin.get_app(f"jobrelay-{env.name}"))
