"""Google-shaped OIDC ID tokens for the local stack, signed with a local RSA key.

Cloud Tasks, Cloud Scheduler and Pub/Sub push sign their requests with Google ID tokens; services verify
them with google-auth against Google's certificate endpoint. Locally, `LocalSigner` plays Google: it
mints tokens of the same shape (RS256, `kid` header, iss https://accounts.google.com, aud, azp, sub,
email, email_verified, iat, exp) and publishes `certs()` in the format of
https://www.googleapis.com/oauth2/v1/certs, so the unchanged verifier
`google.oauth2.id_token.verify_token(token, request, audience=..., certs_url=LOCAL_URL)` accepts them.

Several processes share one key by pointing at the same key file; the first creates it (mode 0600,
atomically, never overwriting a key another process wrote first).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

ISSUER = "https://accounts.google.com"


class LocalSigner:
    """An RSA key that mints Google-shaped ID tokens and publishes its certificate."""

    def __init__(self, key_path: Path | str | None = None) -> None:
        """Load the PEM key at `key_path`, creating it if absent; with None the key lives in memory only."""
        key = _new_key() if key_path is None else _load_or_create(Path(key_path))
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:40]
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        self._cert_pem = _self_signed_cert(key).public_bytes(serialization.Encoding.PEM).decode()

    def mint(self, audience: str, email: str, *, lifetime_seconds: int = 3600) -> str:
        """A signed ID token for service account `email`, addressed to `audience`."""
        now = int(time.time())
        subject = subject_for(email)
        payload = {
            "iss": ISSUER,
            "aud": audience,
            "azp": subject,
            "sub": subject,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime_seconds,
        }
        token: bytes = jwt.encode(self._signer, payload)
        return token.decode()

    def certs(self) -> dict[str, str]:
        """kid -> PEM X.509 certificate, the JSON body of Google's v1 certs endpoint."""
        return {self.kid: self._cert_pem}


def subject_for(email: str) -> str:
    """A stable 21-digit numeric id for an account, shaped like Google's unique ids."""
    digest = hashlib.sha256(email.lower().encode()).digest()
    return "1" + f"{int.from_bytes(digest[:9], 'big') % 10**20:020d}"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load_or_create(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        _create(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def _create(path: Path) -> None:
    """Write a new key next to `path`, then link it into place; losing the race keeps the winner's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = _new_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        # If another process linked its key first, keep theirs: every process must sign with one key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _self_signed_cert(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobrelay local OIDC signer")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
