"""Certificate verification as a JPKI relying party does it, with a reason for every failure.

Chain to *pinned* CA certificates, matched by key identifier (JPKI generations share one DN),
validity, key usage, the policy OID that keeps signature and authentication certificates apart,
and revocation by CRL or OCSP.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from jpki.certificates import (
    CertificateKind,
    authority_key_id,
    issued_by,
    readable_name,
    subject_key_id,
)
from jpki.errors import JpkiError
from jpki.relying_party.revocation import RevocationCheckError, check_crl, check_ocsp


class VerificationError(JpkiError):
    """Why a signature or certificate is not valid: `reason` is a stable code, str() a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Revocation:
    """How to check revocation: a CRL (bytes), an OCSP URL, or neither (not checked)."""

    crl: bytes | None = None
    ocsp_url: str | None = None

    @property
    def checked(self) -> bool:
        return self.crl is not None or self.ocsp_url is not None


NO_REVOCATION_CHECK = Revocation()


@dataclass(frozen=True)
class VerifiedCertificate:
    certificate: x509.Certificate
    issuer: x509.Certificate
    revocation_checked: str  # "crl", "ocsp" or "not checked"

    @property
    def identity(self) -> str:
        """What identifies the holder to a relying party: issuer + serial number."""
        return f"{readable_name(self.issuer.subject)} / serial {self.certificate.serial_number:X}"


class TrustStore:
    """Pinned CA certificates (every live generation). Never the CA read from the card alone."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self.certificates = list(certificates)
        if not self.certificates:
            raise ValueError("no trusted CA certificates")

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> TrustStore:
        certificates = []
        for path in paths:
            data = Path(path).read_bytes()
            if b"-----BEGIN" in data:
                certificates.extend(x509.load_pem_x509_certificates(data))
            else:
                certificates.append(x509.load_der_x509_certificate(data))
        return cls(certificates)

    def issuer_of(self, certificate: x509.Certificate) -> x509.Certificate | None:
        """The pinned CA whose key signed `certificate` (by key identifier, then by signature)."""
        key_id = authority_key_id(certificate)
        for candidate in self.certificates:
            if key_id is not None and subject_key_id(candidate) not in (None, key_id):
                continue
            if issued_by(certificate, candidate):
                return candidate
        return None


def _check_validity(certificate: x509.Certificate, at: datetime.datetime, what: str) -> None:
    if at < certificate.not_valid_before_utc:
        raise VerificationError(
            "not-yet-valid",
            f"{what} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}",
        )
    if at > certificate.not_valid_after_utc:
        raise VerificationError(
            "expired", f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}"
        )


def _check_purpose(certificate: x509.Certificate, purpose: CertificateKind) -> None:
    try:
        policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
        oids = {policy.policy_identifier for policy in policies}
    except x509.ExtensionNotFound:
        oids = set()
    if not oids & purpose.policies:
        other = next((p for p in CertificateKind if p is not purpose and oids & p.policies), None)
        found = f"an {other.value} certificate" if other else "no JPKI policy"
        raise VerificationError(
            "wrong-purpose", f"certificate is {found}, not a JPKI {purpose.value} certificate"
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError("key-usage", "certificate has no key usage") from None
    allowed = (
        usage.content_commitment
        if purpose is CertificateKind.SIGNATURE
        else usage.digital_signature
    )
    if not allowed:
        raise VerificationError(
            "key-usage", f"certificate key usage does not allow {purpose.value}"
        )


def verify_certificate(
    certificate: x509.Certificate,
    purpose: CertificateKind,
    trust: TrustStore,
    *,
    at: datetime.datetime | None = None,
    revocation: Revocation = NO_REVOCATION_CHECK,
) -> VerifiedCertificate:
    """Check `certificate` for `purpose` at time `at` (default now); raise VerificationError."""
    at = at or datetime.datetime.now(datetime.UTC)
    issuer = trust.issuer_of(certificate)
    if issuer is None:
        raise VerificationError(
            "untrusted-issuer",
            f"certificate is not issued by a trusted CA ({readable_name(certificate.issuer)})",
        )
    _check_validity(issuer, at, "the issuing CA certificate")
    _check_validity(certificate, at, "certificate")
    _check_purpose(certificate, purpose)
    checked = "not checked"
    try:
        if revocation.crl is not None:
            status = check_crl(certificate, issuer, revocation.crl, at=at)
        elif revocation.ocsp_url is not None:
            status = check_ocsp(certificate, issuer, revocation.ocsp_url, at=at)
        else:
            status = None
    except RevocationCheckError as error:
        raise VerificationError("revocation-unknown", f"revocation check failed: {error}") from None
    if status is not None:
        checked = status.source
        if status.revoked:
            when = f" on {status.revocation_time:%Y-%m-%d}" if status.revocation_time else ""
            why = f" ({status.reason})" if status.reason else ""
            raise VerificationError("revoked", f"certificate was revoked{when}{why}")
    return VerifiedCertificate(certificate, issuer, checked)
