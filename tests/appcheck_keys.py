"""A Firebase App Check stand-in for the keys only: a key pair the test makes, its JWKS served on 127.0.0.1.

App Check tokens are RS256 JWTs that Firebase signs with keys published as a JWKS; firebase-admin
fetches that JWKS and verifies the token. Tests cannot reach Google, so the API is pointed at this
JWKS (JOBRELAY_APP_CHECK_JWKS_URL) and tokens are signed with the matching private key, exactly as
App Check shapes them. Verification itself stays firebase-admin's.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://firebaseappcheck.googleapis.com/"
PROJECT_NUMBER = "123456789012"
APP_ID = "1:123456789012:web:0123456789abcdef"


class AppCheckKeys:
    """A signing key, its JWKS on a free port of 127.0.0.1, and App Check tokens signed with it."""

    def __init__(self, kid: str = "test-app-check-key") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]}
        self.fetches = 0
        body = json.dumps(self.jwks).encode()
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keys.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="app-check-jwks", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/jwks"

    def start(self) -> AppCheckKeys:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def token(
        self,
        project: str,
        *,
        app_id: str = APP_ID,
        lifetime: int = 3600,
        issued_at: float | None = None,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An App Check token of `project` as Firebase issues them (iss, aud, sub = app id, exp)."""
        iat = int(issued_at if issued_at is not None else time.time())
        claims = {
            "iss": f"{ISSUER}{PROJECT_NUMBER}",
            "aud": [f"projects/{PROJECT_NUMBER}", f"projects/{project}"],
            "sub": app_id,
            "iat": iat,
            "exp": iat + lifetime,
            **(extra or {}),
        }
        signing = key or self.key
        if alg == "HS256":
            return jwt.encode(
                claims, "an-hmac-secret-of-thirty-two-bytes!!", algorithm="HS256", headers={"kid": kid or self.kid}
            )
        return jwt.encode(claims, signing, algorithm=alg, headers={"kid": kid or self.kid, "typ": "JWT"})
