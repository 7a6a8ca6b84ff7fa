"""Who is calling: Firebase ID tokens of the env's project, Google OIDC tokens of allowed accounts.

A Firebase user token is checked by firebase-admin against the env's own project, so a token of
another env's project is refused. Locally (FIREBASE_AUTH_EMULATOR_HOST set, `JOBRELAY_MODE=local`)
firebase-admin accepts unsigned emulator tokens and skips the expiry check; we check expiry and
issue time ourselves so local behaves like the cloud. A deployed process with any emulator variable
set refuses to start (`assert_deployable`).
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from jobrelay.errors import PermissionDenied, Unauthenticated, Unavailable
from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import Environment

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
FIREBASE_ISSUER = "https://securetoken.google.com/"
EMULATOR_VARS = (
    "FIREBASE_AUTH_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
)
CLOCK_SKEW_SECONDS = 5
# When the keys that check a token cannot be fetched, the caller is not at fault: 503, try again soon.
KEYS_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of one env."""

    uid: str
    kind: Literal["user", "service"]
    admin: bool = False
    roles: frozenset[str] = field(default_factory=frozenset)
    email: str | None = None

    def may_use(self, required_roles: tuple[str, ...]) -> bool:
        """Admins may do anything; otherwise one of the roles is needed (none listed = anyone)."""
        return self.admin or not required_roles or bool(self.roles & set(required_roles))


def assert_deployable(settings: RuntimeSettings) -> None:
    """Refuse to start a cloud process configured for emulators (unsigned tokens would pass)."""
    deployed = settings.mode == "cloud" or bool(os.environ.get("K_SERVICE"))
    present = [v for v in EMULATOR_VARS if os.environ.get(v)]
    if deployed and present:
        raise RuntimeError(
            f"refusing to start: {', '.join(present)} set in a deployed configuration "
            f"(JOBRELAY_MODE={settings.mode}, K_SERVICE={os.environ.get('K_SERVICE', '')!r}); "
            "emulator variables let unsigned tokens through and must never reach production"
        )
    if settings.mode == "local" and not os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"):
        raise RuntimeError("JOBRELAY_MODE=local needs FIREBASE_AUTH_EMULATOR_HOST (the local stack sets it)")


def bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing Authorization header; send 'Authorization: Bearer <ID token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <ID token>'")
    return token.strip()


def peek(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT, only to choose how to verify it."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("malformed token: a JWT has three dot-separated parts")
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthenticated("malformed token: its claims are not base64url JSON") from exc
    if not isinstance(claims, dict):
        raise Unauthenticated("malformed token: its claims are not a JSON object")
    return claims


class Authenticator:
    """Verifies callers for the envs this process serves."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._request: Any = None
        self._certs = CertCache(settings.oidc_certs_url)
        self._verified = VerifiedTokens()

    def _firebase_app(self, env: Environment) -> Any:
        with self._lock:
            app = self._apps.get(env.name)
            if app is None:
                import firebase_admin

                try:
                    app = firebase_admin.get_app(f"jobrelay-{env.name}")
                except ValueError:
                    # Application Default Credentials load lazily; verifying tokens needs none.
                    app = firebase_admin.initialize_app(options={"projectId": env.project}, name=f"jobrelay-{env.name}")
                self._apps[env.name] = app
            return app

    def _google_request(self) -> Any:
        if self._request is None:
            import google.auth.transport.requests

            self._request = google.auth.transport.requests.Request()
        return self._request

    def caller(self, env: Environment, authorization: str | None) -> Caller:
        """The verified caller of `env`, or Unauthenticated/PermissionDenied naming the problem."""
        token = bearer(authorization)
        claims = peek(token)
        iss = str(claims.get("iss", ""))
        if iss.startswith(FIREBASE_ISSUER):
            project = iss[len(FIREBASE_ISSUER) :]
            if project != env.project:
                raise Unauthenticated(
                    f"token is for Firebase project {project!r}, not {env.project!r} of env {env.name!r}"
                )
            caller = self._firebase_caller(env, token)
        elif iss in GOOGLE_ISSUERS:
            email = self.verify_google(token, audience=self.settings.api_url, allowed=env.access.operators)
            caller = Caller(uid=email, kind="service", admin=True, email=email)
        else:
            raise Unauthenticated(f"token issuer {iss!r} is not accepted: use a Firebase ID token of the env")
        if not caller.may_use(env.access.roles):
            raise PermissionDenied(
                f"user {caller.uid} may not use env {env.name!r}: it needs one of the roles {list(env.access.roles)}"
            )
        return caller

    def _firebase_caller(self, env: Environment, token: str) -> Caller:
        from firebase_admin import auth as fb_auth

        try:
            claims = fb_auth.verify_id_token(token, app=self._firebase_app(env), clock_skew_seconds=CLOCK_SKEW_SECONDS)
        except fb_auth.ExpiredIdTokenError as exc:
            raise Unauthenticated("token expired; get a fresh ID token") from exc
        except fb_auth.CertificateFetchError as exc:
            raise Unavailable(
                "cannot check the token now: Firebase's signing keys could not be fetched "
                f"({_first_sentence(str(exc))})",
                retry_after=KEYS_RETRY_AFTER_SECONDS,
            ) from exc
        except (fb_auth.InvalidIdTokenError, ValueError) as exc:
            raise Unauthenticated(f"invalid token: {_first_sentence(str(exc))}") from exc
        if _emulated():
            _check_times(claims)
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            roles = []
        return Caller(
            uid=str(claims["uid"]),
            kind="user",
            admin=claims.get("admin") is True,
            roles=frozenset(str(r) for r in roles),
            email=claims.get("email"),
        )

    def verify_google(self, token: str, *, audience: str | list[str], allowed: tuple[str, ...] | frozenset[str]) -> str:
        """Verify a Google-signed OIDC token for `audience` (or any of a list); its email must be one of `allowed`."""
        import google.auth.exceptions
        from google.auth import jwt

        try:
            claims = self._verified.get(token, audience)
            if claims is None:
                kid = _header(token).get("kid")
                claims = jwt.decode(
                    token,
                    certs=self._certs.get(kid, self._google_request()),
                    audience=audience,
                    clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
                )
                self._verified.put(token, audience, claims)
        except google.auth.exceptions.TransportError as exc:
            raise Unavailable(
                f"cannot check the token now: its signing keys could not be fetched ({exc})",
                retry_after=KEYS_RETRY_AFTER_SECONDS,
            ) from exc
        except ValueError as exc:
            raise Unauthenticated(f"invalid Google OIDC token: {_first_sentence(str(exc))}") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthenticated("invalid Google OIDC token: wrong issuer")
        email = claims.get("email")
        # Exactly true: a missing claim or the string "false" is not a verified email.
        if not email or claims.get("email_verified") is not True:
            raise Unauthenticated("Google OIDC token carries no verified email")
        if email not in allowed:
            raise PermissionDenied(f"service account {email} is not allowed here")
        return str(email)


class VerifiedTokens:
    """Google OIDC tokens whose signature this process checked already, until they expire.

    Cloud Tasks (like the local emulator) reuses one ID token per service account and audience for
    up to an hour, so a worker would parse the signing certificate and check the same RSA signature
    on every delivery. The exact same token string for the same audience needs neither again; its
    expiry is checked on every use, and everything after the signature (issuer, email, allowed
    accounts) is checked by the caller every time. At most `size` tokens are kept.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._claims: dict[tuple[str, str | tuple[str, ...]], dict[str, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str, audience: str | list[str]) -> tuple[str, str | tuple[str, ...]]:
        return (token, audience if isinstance(audience, str) else tuple(audience))

    def get(self, token: str, audience: str | list[str]) -> dict[str, Any] | None:
        key = self._key(token, audience)
        with self._lock:
            claims = self._claims.get(key)
        if claims is None:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp + CLOCK_SKEW_SECONDS < time.time():
            with self._lock:
                self._claims.pop(key, None)
            return None  # verified again in full, which refuses it as expired
        return claims

    def put(self, token: str, audience: str | list[str], claims: dict[str, Any]) -> None:
        with self._lock:
            if len(self._claims) >= self.size:
                self._claims.pop(next(iter(self._claims)))  # the oldest: dicts keep insertion order
            self._claims[self._key(token, audience)] = dict(claims)


class CertCache:
    """Google's token signing certificates, fetched once per max-age instead of once per request.

    google-auth's `verify_token` downloads them on every call; a worker would pay an HTTP request to
    googleapis.com per delivery. A token signed by a key we do not know yet triggers a refetch (keys
    rotate), at most once every `min_refetch_seconds`.
    """

    def __init__(self, url: str, *, default_max_age: float = 3600, min_refetch_seconds: float = 30) -> None:
        self.url = url
        self.default_max_age = default_max_age
        self.min_refetch_seconds = min_refetch_seconds
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = -math.inf
        self._lock = threading.Lock()

    def get(self, kid: str | None, request: Any) -> dict[str, str]:
        with self._lock:
            at = time.monotonic()
            stale = at >= self._expires
            unknown = kid is not None and kid not in self._certs and at - self._fetched >= self.min_refetch_seconds
            if stale or unknown:
                self._fetch(request, at)
            return dict(self._certs)

    def _fetch(self, request: Any, at: float) -> None:
        import google.auth.exceptions

        response = request(self.url, method="GET")
        if response.status != 200:
            raise google.auth.exceptions.TransportError(f"{self.url} answered {response.status}")
        try:
            data = json.loads(response.data.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise google.auth.exceptions.TransportError(f"{self.url} answered no JSON") from exc
        if not isinstance(data, dict) or "keys" in data:
            raise google.auth.exceptions.TransportError(f"{self.url} is not a map of key id to certificate")
        self._certs = {str(k): str(v) for k, v in data.items()}
        self._fetched = at
        self._expires = at + _max_age(response.headers.get("cache-control", ""), self.default_max_age)


def _max_age(cache_control: str, default: float) -> float:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isdigit():
            return float(value)
    return default


def _header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthenticated("malformed token: its header is not base64url JSON") from exc
    return header if isinstance(header, dict) else {}


def _emulated() -> bool:
    return bool(os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"))


def _check_times(claims: dict[str, Any]) -> None:
    """The checks firebase-admin skips in emulator mode, so local tokens expire as in the cloud."""
    at = time.time()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise Unauthenticated("invalid token: exp and iat must be numbers")
    if exp < at - CLOCK_SKEW_SECONDS:
        raise Unauthenticated("token expired; get a fresh ID token")
    if iat > at + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("invalid token: issued in the future")


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")
