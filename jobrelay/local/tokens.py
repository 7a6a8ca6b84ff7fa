"""Tokens the local stack accepts: unsigned Firebase ID tokens shaped like the Auth emulator's.

firebase-admin in emulator mode accepts these (alg "none"); the API still checks project, issuer,
subject, expiry and issue time. They are worthless anywhere else: a deployed API refuses to start
with FIREBASE_AUTH_EMULATOR_HOST set.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from typing import Any


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def emulator_id_token(
    project: str,
    uid: str,
    *,
    admin: bool = False,
    roles: Iterable[str] = (),
    email: str | None = None,
    lifetime_seconds: int = 3600,
    issued_at: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """An unsigned Firebase ID token for `uid` in `project`, as the Auth emulator issues them."""
    iat = int(issued_at if issued_at is not None else time.time())
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "auth_time": iat,
        "user_id": uid,
        "sub": uid,
        "iat": iat,
        "exp": iat + lifetime_seconds,
        "email": email or f"{uid}@example.com",
        "email_verified": True,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
    }
    if admin:
        claims["admin"] = True
    roles = list(roles)
    if roles:
        claims["roles"] = roles
    if extra:
        claims.update(extra)
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
