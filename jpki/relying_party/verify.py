"""Certificate verification as a JPKI relying party does it, with a reason for every failure.

Chain to *pinned* CA certificates, matched by key identifier (JPKI generations share one DN),
validity, key usage, the policy OID that keeps signature and authentication certificates apart,
and revocation by CRL or OCSP.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from jpki import clock
from jpki.certificates import (
    CertificateKind,
    authority_key_id,
    issued_by,
    parse_whole,
    readable_name,
    subject_key_id,
)
from jpki.errors import JpkiError
from jpki.relying_party.revocation import RevocationCheckError, check_crl, check_ocsp

# Parsing errors of a certificate that cryptography may raise lazily, on first use of a part.
CERTIFICATE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)
WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


class TrustAnchorError(JpkiError):
    """A pinned CA certificate file that cannot be trusted: unreadable, damaged, or writable by
    others (who could have put their own CA in its place)."""


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
        """The certificates in PEM or DER files; raises TrustAnchorError naming a file that is
        unreadable, damaged, or group- or world-writable."""
        certificates = []
        for path in paths:
            certificates.extend(_read_anchors(Path(path)))
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


def _read_anchors(path: Path) -> list[x509.Certificate]:
    data = _read_anchor_file(path)
    try:
        if b"-----BEGIN" in data:
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = [x509.load_der_x509_certificate(data)]
        for certificate in certificates:
            parse_whole(certificate)
    except CERTIFICATE_ERRORS:
        raise TrustAnchorError(f"{path} is damaged: not a readable certificate") from None
    # A self-issued CA certificate carries its own signature: damage anywhere breaks it.
    if any(c.issuer == c.subject and not issued_by(c, c) for c in certificates):
        raise TrustAnchorError(f"{path} is damaged: its self-signature does not verify")
    return certificates


def _read_anchor_file(path: Path) -> bytes:
    """The file's bytes, checked on the open file so that it cannot be swapped in between."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_mode & WRITABLE_BY_OTHERS:
                raise TrustAnchorError(
                    f"{path} is group- or world-writable: anyone could replace the CA it pins "
                    f"(chmod go-w {path})"
                )
            return handle.read()
    except OSError as error:
        raise TrustAnchorError(f"cannot read {path}: {error.strerror}") from None


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
    at = at or clock.now()
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
