"""Firebase App Check on submits: where an env requires it, an app's call must come from a genuine app.

An env says `app_check: required` in `infra/environments.yaml`. Then a submit (single or batch) by a
Firebase user must carry `X-Firebase-AppCheck: <token>`, the token the app's Firebase SDK gets from
App Check (`getToken(appCheck)`), verified with firebase-admin's `app_check` against the env's own
project: signature (Firebase's JWKS), RS256, issuer, audience `projects/<project>`, expiry. Missing
or invalid answers 401 naming App Check, before anything is written. Operators (the `admin` claim,
operator service accounts) and services (Cloud Scheduler, OIDC) are exempt: they are not apps.
Reads and cancels need no App Check token: they create no work, and the owner check already limits
them to the caller's own jobs.

A job request written in an app's own transaction (jobrelay.intake) carries the token in its `app_check`
field; jobrelay may read it minutes later (after an outage, by the sweep), so there the token must have
been valid when the request was committed (`at`, the document's create time, which the app cannot set).

firebase-admin fetches the JWKS from Google and keeps it 6 hours; `JOBRELAY_APP_CHECK_JWKS_URL`
points it elsewhere (the tests serve keys of their own on 127.0.0.1).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from jobrelay.auth import Caller
from jobrelay.errors import Unauthenticated, Unavailable
from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import AppCheckMode, Environment

HEADER = "X-Firebase-AppCheck"
KEYS_RETRY_AFTER_SECONDS = 5
JWKS_LIFESPAN_SECONDS = 6 * 3600  # as firebase-admin's own client


def exempt(caller: Caller) -> bool:
    """Operators and services call from tools, not from an app: App Check does not apply to them."""
    return caller.admin or caller.kind == "service"


class AppCheckVerifier:
    """Checks App Check tokens for the envs that require them; one firebase-admin app per env."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.jwks_url = settings.app_check_jwks_url
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()

    def check(
        self,
        env: Environment,
        caller: Caller,
        token: str | None,
        *,
        at: datetime | None = None,
        where: str = f"the {HEADER} header",
    ) -> dict[str, Any] | None:
        """The token's claims, None where App Check does not apply; Unauthenticated naming the problem.

        `at`: the token must have been valid then (a request read after it was committed), not now.
        """
        if env.app_check is not AppCheckMode.REQUIRED or exempt(caller):
            return None
        if not isinstance(token, str) or not token.strip():
            raise Unauthenticated(
                f"App Check token missing: env {env.name!r} requires App Check for submits from apps; "
                f"send the token of the app's App Check (firebase/app-check getToken) in {where}",
                {"header": HEADER} if at is None else {"field": "app_check"},
                code="app_check_required",
            )
        return self._verify(env, token.strip(), at)

    def _verify(self, env: Environment, token: str, at: datetime | None = None) -> dict[str, Any]:
        import jwt

        service = self._service(env)
        try:
            claims: dict[str, Any] = service.verify_token(token) if at is None else _verify_at(service, token, at)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable(
                f"cannot check the App Check token now: its signing keys could not be fetched from {self.jwks_url}",
                retry_after=KEYS_RETRY_AFTER_SECONDS,
            ) from exc
        except (jwt.PyJWKClientError, jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated(
                f"invalid App Check token for env {env.name!r}: {_reason(exc)}",
                {"header": HEADER} if at is None else {"field": "app_check"},
                code="app_check_invalid",
            ) from exc
        return claims

    def _service(self, env: Environment) -> Any:
        with self._lock:
            service = self._services.get(env.name)
            if service is None:
                service = self._services[env.name] = self._make_service(env)
            return service

    def _make_service(self, env: Environment) -> Any:
        import firebase_admin
        import jwt
        from firebase_admin import app_check, credentials
        from google.auth.credentials import AnonymousCredentials

        class Anonymous(credentials.Base):  # type: ignore[misc]
            def get_credential(self) -> Any:
                return AnonymousCredentials()

        name = f"jobrelay-appcheck-{env.name}"
        try:
            app = firebase_admin.get_app(name)
        except ValueError:
            # Verifying needs only the public JWKS; a credential is used only to consume limited-use
            # tokens, which jobrelay does not. Anonymous, so no process needs Application Default
            # Credentials just to check a token.
            app = firebase_admin.initialize_app(Anonymous(), options={"projectId": env.project}, name=name)
        service = app_check._get_app_check_service(app)
        if self.jwks_url != service._JWKS_URL:
            service._jwks_client = jwt.PyJWKClient(self.jwks_url, lifespan=JWKS_LIFESPAN_SECONDS)
        return service


def _verify_at(service: Any, token: str, at: datetime) -> dict[str, Any]:
    """firebase-admin's checks (header, signature, audience, issuer, subject), expiry judged at `at`."""
    import time

    import jwt

    key = service._jwks_client.get_signing_key_from_jwt(token)
    service._has_valid_token_headers(jwt.get_unverified_header(token))
    # PyJWT judges exp against now; the leeway moves "now" back to `at` (never forward).
    leeway = max(0.0, time.time() - at.timestamp())
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=service._scoped_project_id, leeway=leeway
    )
    if not str(claims.get("iss", "")).startswith(service._APP_CHECK_ISSUER) or not claims.get("sub"):
        raise ValueError("The App Check token's issuer or subject is not Firebase App Check's")
    if float(claims.get("iat", 0)) > at.timestamp() + 5:
        raise ValueError("The App Check token was issued after the request was written")
    return claims


def _reason(exc: Exception) -> str:
    text = str(exc).removeprefix("Verifying App Check token failed. Error: ")
    return text.split(". ")[0].rstrip(".") or exc.__class__.__name__
