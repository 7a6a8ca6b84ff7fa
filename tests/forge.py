"""Forged Firebase ID tokens: attack inputs for tests, never a way to sign in.

Users sign in through the local stack's Auth emulator (`jobrelay.local.authemu`, `tests.support`).
These hand-made tokens are what an attacker could send instead: expired, issued in the future, of a
foreign issuer, without a subject, or unsigned where the emulator is not in use. They are shaped like
the emulator's (alg "none") so that each one fails on the one claim a test means.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from typing import Any


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def forged_id_token(
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
    """An unsigned Firebase ID token for `uid` in `project`, made by hand (not by the emulator)."""
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
