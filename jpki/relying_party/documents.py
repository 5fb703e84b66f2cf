"""Signed documents as a relying party checks them: the CMS signature, then its signer."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from jpki import cms
from jpki.certificates import CertificateKind
from jpki.relying_party.verify import (
    NO_REVOCATION_CHECK,
    Revocation,
    TrustStore,
    VerificationError,
    VerifiedCertificate,
    verify_certificate,
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
    purpose: CertificateKind = CertificateKind.SIGNATURE,
    at: datetime.datetime | None = None,
    revocation: Revocation = NO_REVOCATION_CHECK,
) -> VerifiedDocument:
    """The signature, then its signer's certificate; VerificationError says what failed."""
    try:
        document = cms.verify_signed_data(signature, data)
    except cms.CmsError as error:
        raise VerificationError("bad-signature", str(error)) from None
    signer = verify_certificate(document.certificate, purpose, trust, at=at, revocation=revocation)
    return VerifiedDocument(signer, document.signing_time)
