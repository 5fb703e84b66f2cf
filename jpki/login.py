"""The JPKI login: a relying party's nonce, signed by the card's authentication key, verified.

Client side (`respond`): verify the 4-digit PIN, sign the nonce with the authentication key
(RSA PKCS#1 v1.5, SHA-256), hand back the signature and the authentication certificate.
Server side (`verify_login`): check the signature, the chain to the pinned authentication CA,
validity, the authentication policy and revocation; the holder is identified by issuer + serial.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.session import Certificate, JpkiSession, Key, Pin
from jpki.verify import (
    NO_REVOCATION_CHECK,
    Purpose,
    Revocation,
    TrustStore,
    VerificationError,
    VerifiedCertificate,
    verify_certificate,
)

NONCE_LENGTH = 32


def new_challenge() -> bytes:
    """A fresh random nonce, as the server sends it."""
    return os.urandom(NONCE_LENGTH)


@dataclass(frozen=True)
class LoginResponse:
    """What the client sends back: the signature over the nonce and the auth certificate (DER)."""

    signature: bytes
    certificate: bytes


def respond(session: JpkiSession, challenge: bytes, pin: str) -> LoginResponse:
    """The client's half: unlock the authentication key and sign the server's nonce."""
    session.verify_pin(Pin.AUTH, pin)
    certificate = session.read_certificate_der(Certificate.AUTH)
    return LoginResponse(session.sign(Key.AUTH, challenge), certificate)


def verify_login(
    challenge: bytes,
    response: LoginResponse,
    trust: TrustStore,
    *,
    at: datetime.datetime | None = None,
    revocation: Revocation = NO_REVOCATION_CHECK,
) -> VerifiedCertificate:
    """The server's half: who logged in, or VerificationError saying why not."""
    try:
        certificate = x509.load_der_x509_certificate(response.certificate)
    except ValueError:
        raise VerificationError("bad-certificate", "the login certificate is not DER") from None
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise VerificationError("bad-certificate", "the login certificate has no RSA key")
    try:
        public_key.verify(response.signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise VerificationError(
            "bad-signature", "the signature over the nonce does not verify"
        ) from None
    return verify_certificate(
        certificate, Purpose.AUTHENTICATION, trust, at=at, revocation=revocation
    )
