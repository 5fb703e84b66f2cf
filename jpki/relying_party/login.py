"""The JPKI login, the server's half: send a nonce, then check what the card signed.

`verify_login` checks the signature over the nonce, the chain to the pinned authentication CA,
validity, the authentication policy and revocation; the holder is identified by issuer + serial.
The client's half is `jpki.client.signing.answer_login`.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.certificates import CertificateKind
from jpki.login import NONCE_LENGTH, LoginResponse
from jpki.relying_party.verify import (
    NO_REVOCATION_CHECK,
    Revocation,
    TrustStore,
    VerificationError,
    VerifiedCertificate,
    verify_certificate,
)


def new_challenge() -> bytes:
    """A fresh random nonce, as the server sends it."""
    return os.urandom(NONCE_LENGTH)


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
        certificate, CertificateKind.AUTHENTICATION, trust, at=at, revocation=revocation
    )
