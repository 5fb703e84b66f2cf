"""Revocation checking as a relying party does it: a CRL, or an OCSP responder, asked about one
certificate and verified against its issuer. Only `check_ocsp` does I/O (one HTTP POST).
"""

from __future__ import annotations

import datetime
import enum
import http.client
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from jpki.certificates import issued_by, ocsp_issuer_hashes, subject_key_id
from jpki.errors import JpkiError

# Tolerated difference between the responder's clock and ours for thisUpdate.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# RFC 8954: clients use 32-octet nonces.
NONCE_BYTES = 32
OCSP_REQUEST_MEDIA_TYPE = "application/ocsp-request"
OCSP_RESPONSE_MEDIA_TYPE = "application/ocsp-response"
# Far above any real response; stops a hostile responder from filling memory.
MAX_OCSP_RESPONSE_BYTES = 1024 * 1024
OCSP_URL_SCHEMES = ("http", "https")
PEM_MARKER = b"-----BEGIN"
UNSPECIFIED_REASON = x509.ReasonFlags.unspecified.value


class RevocationCheckError(JpkiError):
    """The revocation status could not be established; the message is one line saying why."""


class RevocationSource(enum.StrEnum):
    """Where a revocation status came from."""

    CRL = "crl"
    OCSP = "ocsp"


@dataclass(frozen=True)
class RevocationStatus:
    """A certificate's revocation status; `reason` is an RFC 5280 name such as "keyCompromise"."""

    revoked: bool
    reason: str | None
    revocation_time: datetime.datetime | None
    source: RevocationSource


_NOT_REVOKED = {source: RevocationStatus(False, None, None, source) for source in RevocationSource}


def _require_aware(moment: datetime.datetime) -> datetime.datetime:
    if moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (use UTC)")
    return moment


def _check_issued_by(certificate: x509.Certificate, issuer_certificate: x509.Certificate) -> None:
    # A status is only meaningful for the issuer the CRL or OCSP answer speaks for.
    if not issued_by(certificate, issuer_certificate):
        raise RevocationCheckError("the certificate was not issued by the given issuer certificate")


SigningKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def _signing_key(certificate: x509.Certificate, role: str) -> SigningKey:
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise RevocationCheckError(f"the {role} certificate holds neither an RSA nor an EC key")
    return public_key


def _load_crl(crl_bytes: bytes) -> x509.CertificateRevocationList:
    try:
        if crl_bytes.lstrip().startswith(PEM_MARKER):
            return x509.load_pem_x509_crl(crl_bytes)
        return x509.load_der_x509_crl(crl_bytes)
    except ValueError as error:
        raise RevocationCheckError("the CRL is neither a DER nor a PEM CRL") from error


def _reason_name(reason: x509.ReasonFlags | None) -> str:
    # A revoked entry without a reason code means unspecified (RFC 5280 5.3.1).
    return UNSPECIFIED_REASON if reason is None else reason.value


def _verify_crl(
    crl: x509.CertificateRevocationList, issuer_certificate: x509.Certificate, at: datetime.datetime
) -> None:
    if crl.issuer != issuer_certificate.subject:
        raise RevocationCheckError(
            f"the CRL is issued by {crl.issuer.rfc4514_string()}, "
            f"not by the certificate's issuer {issuer_certificate.subject.rfc4514_string()}"
        )
    for extension in crl.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            raise RevocationCheckError(
                f"the CRL has an unknown critical extension {extension.oid.dotted_string}"
            )
    issuer_key_id = subject_key_id(issuer_certificate)
    try:
        crl_key_id = crl.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except x509.ExtensionNotFound:
        crl_key_id = None
    if None not in (issuer_key_id, crl_key_id) and issuer_key_id != crl_key_id:
        raise RevocationCheckError("the CRL is signed by another key of the issuer's name")
    if not crl.is_signature_valid(_signing_key(issuer_certificate, "issuer")):
        raise RevocationCheckError("the CRL's signature does not verify with the issuer's key")
    next_update = crl.next_update_utc
    if next_update is None:
        raise RevocationCheckError("the CRL has no nextUpdate, so its freshness is unknown")
    if next_update < at:
        raise RevocationCheckError(
            f"the CRL is stale: its nextUpdate {next_update.isoformat()} is before {at.isoformat()}"
        )


def check_crl(
    certificate: x509.Certificate,
    issuer_certificate: x509.Certificate,
    crl_bytes: bytes,
    *,
    at: datetime.datetime,
) -> RevocationStatus:
    """The certificate's status according to a CRL (DER or PEM) of its issuer, valid at `at`.

    Raises RevocationCheckError when the CRL does not parse, is not the issuer's, does not
    verify with the issuer's key or is stale (nextUpdate before `at`).
    """
    at = _require_aware(at)
    _check_issued_by(certificate, issuer_certificate)
    crl = _load_crl(crl_bytes)
    try:
        _verify_crl(crl, issuer_certificate, at)
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is None:
            return _NOT_REVOKED[RevocationSource.CRL]
        try:
            reason: x509.ReasonFlags | None = entry.extensions.get_extension_for_class(
                x509.CRLReason
            ).value.reason
        except x509.ExtensionNotFound:
            reason = None
        revocation_time = entry.revocation_date_utc
    except ValueError as error:
        # cryptography parses extensions and entries lazily, so corruption surfaces here.
        raise RevocationCheckError(f"the CRL is malformed: {error}") from error
    return RevocationStatus(True, _reason_name(reason), revocation_time, RevocationSource.CRL)


def _post_ocsp_request(url: str, request_der: bytes, timeout: float) -> bytes:
    # urllib would also open file: and ftp: URLs, which a certificate's AIA must not reach.
    if urllib.parse.urlsplit(url).scheme not in OCSP_URL_SCHEMES:
        raise RevocationCheckError(f"the OCSP URL {url} is not an http or https URL")
    request = urllib.request.Request(
        url,
        data=request_der,
        method="POST",
        headers={"Content-Type": OCSP_REQUEST_MEDIA_TYPE, "Accept": OCSP_RESPONSE_MEDIA_TYPE},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body: bytes = reply.read(MAX_OCSP_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise RevocationCheckError(
            f"OCSP responder at {url} answered HTTP {error.code} {error.reason}"
        ) from error
    except urllib.error.URLError as error:
        raise RevocationCheckError(
            f"OCSP responder at {url} unreachable: {error.reason}"
        ) from error
    except (OSError, http.client.HTTPException) as error:
        raise RevocationCheckError(f"OCSP responder at {url} unreachable: {error}") from error
    if len(body) > MAX_OCSP_RESPONSE_BYTES:
        raise RevocationCheckError(f"OCSP responder at {url} sent an oversized response")
    return body


def _responder_is(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == certificate.subject
    # byKey is always the SHA-1 of the key bits, the same value as a method-1 key id.
    key_hash = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
    return response.responder_key_hash == key_hash


def _within(certificate: x509.Certificate, at: datetime.datetime) -> bool:
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def _check_delegated_responder(
    responder: x509.Certificate, issuer_certificate: x509.Certificate, at: datetime.datetime
) -> None:
    """RFC 6960 4.2.2.2: a responder certificate the issuer signed, with the OCSPSigning EKU."""
    try:
        responder.verify_directly_issued_by(issuer_certificate)
    except (ValueError, TypeError, InvalidSignature) as error:
        raise RevocationCheckError(
            "the OCSP responder certificate is not issued by the certificate's issuer"
        ) from error
    try:
        usages = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        raise RevocationCheckError("the OCSP responder certificate lacks the OCSPSigning usage")
    if not _within(responder, at):
        raise RevocationCheckError("the OCSP responder certificate is not valid now")


def _responder_key(
    response: ocsp.OCSPResponse, issuer_certificate: x509.Certificate, at: datetime.datetime
) -> SigningKey:
    if _responder_is(response, issuer_certificate):
        return _signing_key(issuer_certificate, "issuer")
    for candidate in response.certificates:
        if _responder_is(response, candidate):
            _check_delegated_responder(candidate, issuer_certificate, at)
            return _signing_key(candidate, "OCSP responder")
    raise RevocationCheckError(
        "the OCSP response is signed neither by the issuer nor by a responder it authorised"
    )


def _verify_ocsp_signature(response: ocsp.OCSPResponse, public_key: SigningKey) -> None:
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and algorithm is not None:
            public_key.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm
            )
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm is not None:
            public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            raise RevocationCheckError("the OCSP response uses an unsupported signature algorithm")
    except InvalidSignature as error:
        raise RevocationCheckError(
            "the OCSP response's signature does not verify with the responder's key"
        ) from error


def _matching_single_response(
    response: ocsp.OCSPResponse,
    certificate: x509.Certificate,
    issuer_certificate: x509.Certificate,
) -> ocsp.OCSPSingleResponse:
    for single in response.responses:
        if single.serial_number != certificate.serial_number:
            continue
        try:
            expected = ocsp_issuer_hashes(issuer_certificate, single.hash_algorithm)
        except UnsupportedAlgorithm:
            continue
        if (single.issuer_name_hash, single.issuer_key_hash) == expected:
            return single
    raise RevocationCheckError("the OCSP response does not answer for this certificate")


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes) -> None:
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        # Responders may answer from precomputed responses, which carry no nonce.
        return
    if echoed != nonce:
        raise RevocationCheckError("the OCSP response's nonce is not the one we sent (a replay?)")


def _check_freshness(single: ocsp.OCSPSingleResponse, at: datetime.datetime) -> None:
    if single.this_update_utc > at + CLOCK_SKEW:
        raise RevocationCheckError(
            f"the OCSP response's thisUpdate {single.this_update_utc.isoformat()} is in the future"
        )
    next_update = single.next_update_utc
    if next_update is not None and next_update < at:
        raise RevocationCheckError(
            f"the OCSP response is stale: its nextUpdate {next_update.isoformat()} is before "
            f"{at.isoformat()}"
        )


def _status_from_ocsp(
    response_der: bytes,
    certificate: x509.Certificate,
    issuer_certificate: x509.Certificate,
    nonce: bytes,
    at: datetime.datetime,
) -> RevocationStatus:
    response = ocsp.load_der_ocsp_response(response_der)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RevocationCheckError(
            f"the OCSP responder refused the request ({response.response_status.name})"
        )
    _verify_ocsp_signature(response, _responder_key(response, issuer_certificate, at))
    single = _matching_single_response(response, certificate, issuer_certificate)
    _check_nonce(response, nonce)
    _check_freshness(single, at)
    status = single.certificate_status
    if status is ocsp.OCSPCertStatus.UNKNOWN:
        raise RevocationCheckError("OCSP responder does not know this certificate")
    if status is ocsp.OCSPCertStatus.GOOD:
        return _NOT_REVOKED[RevocationSource.OCSP]
    return RevocationStatus(
        True,
        _reason_name(single.revocation_reason),
        single.revocation_time_utc,
        RevocationSource.OCSP,
    )


def check_ocsp(
    certificate: x509.Certificate,
    issuer_certificate: x509.Certificate,
    url: str,
    *,
    at: datetime.datetime,
    timeout: float = 5,
) -> RevocationStatus:
    """Ask the OCSP responder at `url` about the certificate and verify its answer at `at`.

    The request uses a SHA-1 CertID (what responders universally accept) and a random nonce.
    Raises RevocationCheckError when the responder is unreachable, refuses, answers unknown, or
    its answer does not verify, is not about this certificate, echoes another nonce or is stale.
    """
    at = _require_aware(at)
    _check_issued_by(certificate, issuer_certificate)
    nonce = secrets.token_bytes(NONCE_BYTES)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer_certificate, hashes.SHA1())
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
    )
    response_der = _post_ocsp_request(
        url, request.public_bytes(serialization.Encoding.DER), timeout
    )
    try:
        return _status_from_ocsp(response_der, certificate, issuer_certificate, nonce, at)
    except ValueError as error:
        raise RevocationCheckError(
            f"OCSP responder at {url} sent no valid OCSP response: {error}"
        ) from error
