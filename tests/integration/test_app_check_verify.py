"""App Check verification (jobrelay.appcheck) with firebase-admin against keys served on 127.0.0.1.

No emulator is involved: App Check has none. The JWKS is a real HTTP endpoint of the test's own key,
so firebase-admin fetches and checks exactly as it does against Google's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jobrelay.appcheck import AppCheckVerifier, exempt
from jobrelay.auth import Caller
from jobrelay.errors import Unauthenticated, Unavailable
from jobrelay.infra_files import load_infra
from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import AppCheckMode
from jobrelay.wsgi import status_of
from tests.appcheck_keys import APP_ID, AppCheckKeys

INFRA = load_infra()
REQUIRED = INFRA.env("stg").model_copy(update={"app_check": AppCheckMode.REQUIRED})
UNENFORCED = INFRA.env("dev")
APP_USER = Caller(uid="alice", kind="user")


@pytest.fixture(scope="module")
def keys() -> Iterator[AppCheckKeys]:
    k = AppCheckKeys().start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def verifier(keys: AppCheckKeys) -> AppCheckVerifier:
    return AppCheckVerifier(RuntimeSettings(app_check_jwks_url=keys.url))


def test_a_valid_token_of_the_envs_project_passes_and_names_the_app(
    verifier: AppCheckVerifier, keys: AppCheckKeys
) -> None:
    claims = verifier.check(REQUIRED, APP_USER, keys.token(REQUIRED.project))
    assert claims is not None and claims["app_id"] == APP_ID
    assert keys.fetches >= 1  # firebase-admin really fetched our JWKS


OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
BAD = [
    ("missing", lambda k: None, "App Check token missing"),
    ("blank", lambda k: "  ", "App Check token missing"),
    ("not a JWT", lambda k: "not-a-jwt", "invalid App Check token"),
    ("expired", lambda k: k.token(REQUIRED.project, issued_at=1_000_000, lifetime=60), "expired"),
    ("another project", lambda k: k.token("singular-dream"), "audience"),
    ("signed by another key", lambda k: k.token(REQUIRED.project, key=OTHER_KEY), "signature"),
    ("unknown key id", lambda k: k.token(REQUIRED.project, kid="rotated-away"), "invalid App Check token"),
    ("HMAC instead of RS256", lambda k: k.token(REQUIRED.project, alg="HS256"), "invalid App Check token"),
    ("foreign issuer", lambda k: k.token(REQUIRED.project, extra={"iss": "https://evil.example/"}), "issuer"),
]


@pytest.mark.parametrize(("name", "make", "says"), BAD, ids=[b[0] for b in BAD])
def test_a_missing_or_bad_token_is_refused_naming_app_check(
    verifier: AppCheckVerifier, keys: AppCheckKeys, name: str, make: object, says: str
) -> None:
    with pytest.raises(Unauthenticated) as err:
        verifier.check(REQUIRED, APP_USER, make(keys))  # type: ignore[operator]
    assert "App Check" in err.value.message and says in err.value.message, err.value.message
    assert status_of(err.value) == 401 and err.value.details == {"header": "X-Firebase-AppCheck"}


def test_operators_services_and_unenforcing_envs_need_no_token(verifier: AppCheckVerifier) -> None:
    operator = Caller(uid="root", kind="user", admin=True)
    scheduler = Caller(uid="jobrelay-scheduler@x.iam.gserviceaccount.com", kind="service", admin=True)
    assert exempt(operator) and exempt(scheduler) and not exempt(APP_USER)
    for caller in (operator, scheduler):
        assert verifier.check(REQUIRED, caller, None) is None
    assert verifier.check(UNENFORCED, APP_USER, None) is None


def test_unreachable_keys_answer_503_not_a_refusal(keys: AppCheckKeys) -> None:
    down = AppCheckVerifier(RuntimeSettings(app_check_jwks_url="http://127.0.0.1:9/v1/jwks"))
    with pytest.raises(Unavailable) as err:
        down.check(REQUIRED, APP_USER, keys.token(REQUIRED.project))
    assert status_of(err.value) == 503 and "App Check" in err.value.message


def test_the_jwks_url_defaults_to_firebases_own() -> None:
    assert RuntimeSettings().app_check_jwks_url == "https://firebaseappcheck.googleapis.com/v1/jwks"
