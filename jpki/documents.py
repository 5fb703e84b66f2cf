"""Signed documents: CMS SignedData made with the card's key, and their full verification."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from jpki import cms
from jpki.session import JpkiSession, Key
from jpki.verify import (
    NO_REVOCATION_CHECK,
    Purpose,
    Revocation,
    TrustStore,
    VerificationError,
    VerifiedCertificate,
)
from jpki.verify import verify_certificate as verify_signer_certificate


def sign_document(session: JpkiSession, key: Key, data: bytes, *, detached: bool = True) -> bytes:
    """A CMS SignedData over `data` (SHA-256); the key's PIN must already be verified."""
    certificate = session.read_certificate(key.certificate)
    return cms.sign_detached(
        data,
        certificate,
        lambda digest_info: session.sign_digest_info(key, digest_info),
        detached=detached,
    )


@dataclass(frozen=True)
class VerifiedDocument:
    signer: VerifiedCertificate
    signing_time: datetime.datetime | None


def verify_document(
    data: bytes | None,
    signature: bytes,
    trust: TrustStore,
    *,
    purpose: Purpose = Purpose.SIGNATURE,
    at: datetime.datetime | None = None,
    revocation: Revocation = NO_REVOCATION_CHECK,
) -> VerifiedDocument:
    """The signature, then its signer's certificate; VerificationError says what failed."""
    try:
        document = cms.verify_signed_data(signature, data)
    except cms.CmsError as error:
        raise VerificationError("bad-signature", str(error)) from None
    signer = verify_signer_certificate(
        document.certificate, purpose, trust, at=at, revocation=revocation
    )
    return VerifiedDocument(signer, document.signing_time)
