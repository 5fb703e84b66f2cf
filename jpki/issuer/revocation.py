"""Revocation as the test CA publishes it: the CRLs and OCSP responses its two CAs sign, in
every generation (each generation's CRL lists what it issued; OCSP answers are signed by the
generation that issued the certificate).

Pure (state in, DER out); `jpki.issuer.server` puts it on HTTP, answering from a copy of the
record it holds in memory. The relying party's checks are in `jpki.relying_party.revocation`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from jpki import clock
from jpki.certificates import CertificateKind, ocsp_issuer_hashes
from jpki.issuer.ca import CertificateAuthority, Generation, IssuedCertificate, RevocationReason
from jpki.issuer.profile import require_aware

UTC = datetime.UTC
CRL_VALIDITY = datetime.timedelta(days=1)
OCSP_VALIDITY = datetime.timedelta(hours=1)
OCSP_RESPONSE_MEDIA_TYPE = "application/ocsp-response"
CRL_MEDIA_TYPE = "application/pkix-crl"


class IssuerRecord(Protocol):
    """What CRLs and OCSP answers are made from: a `TestCA`, or a copy of its record."""

    @property
    def generations(self) -> tuple[Generation, ...]: ...

    def authority(
        self, kind: CertificateKind, generation: int | None = None
    ) -> CertificateAuthority: ...

    def find_issued(self, serial: int) -> IssuedCertificate | None: ...

    def revoked(
        self, kind: CertificateKind, generation: int | None = None
    ) -> tuple[IssuedCertificate, ...]: ...


def _now(now: datetime.datetime | None) -> datetime.datetime:
    moment = clock.now() if now is None else require_aware(now)
    # CRLs and OCSP responses carry whole seconds.
    return moment.astimezone(UTC).replace(microsecond=0)


def _revocation_of(entry: IssuedCertificate) -> tuple[datetime.datetime, x509.ReasonFlags | None]:
    revocation = entry.revocation
    if revocation is None:
        raise ValueError(f"certificate {entry.serial:#x} is not revoked")
    # RFC 5280 5.3.1: the reason code should be absent rather than unspecified.
    unspecified = revocation.reason is RevocationReason.UNSPECIFIED
    return revocation.time, None if unspecified else revocation.reason.flag


def _authority_key_identifier(authority: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    key_id = authority.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id)


def build_crl(
    ca: IssuerRecord,
    kind: CertificateKind,
    *,
    generation: int | None = None,
    now: datetime.datetime | None = None,
    next_update: datetime.timedelta = CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """The complete CRL of one CA as of `now`: the `kind` CA of `generation` (default: the
    current one), listing the certificates it revoked of those it issued and that have not
    expired yet, signed by its key with
    sha256WithRSAEncryption (its authorityKeyIdentifier names the generation)."""
    if next_update <= datetime.timedelta(0):
        raise ValueError("next_update must be positive")
    authority = ca.authority(kind, generation)
    this_update = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + next_update)
        .add_extension(_authority_key_identifier(authority), critical=False)
        # The CRL is made afresh on demand and nothing is stored, so the number is the time:
        # it increases from one CRL to the next as RFC 5280 asks.
        .add_extension(x509.CRLNumber(int(this_update.timestamp())), critical=False)
    )
    for entry in ca.revoked(kind, authority.generation):
        if entry.not_after < this_update:
            continue  # expired: dropped from the CRL, as J-LIS does (lifecycle.md §4)
        revocation_time, reason = _revocation_of(entry)
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(revocation_time)
        )
        if reason is not None:
            revoked = revoked.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(authority.private_key, hashes.SHA256())


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def _request_nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


@dataclass(frozen=True)
class OcspQuestion:
    """What a well-formed OCSP request asks: one certificate, named by its issuer's hashes."""

    serial: int
    name_hash: bytes
    key_hash: bytes
    algorithm: hashes.HashAlgorithm
    nonce: bytes | None


def read_ocsp_request(request_der: bytes) -> OcspQuestion | bytes:
    """The question of a DER request, or (bytes) the unsigned answer to a request that cannot
    be answered: malformedRequest if it does not parse, unauthorized if its hash algorithm is
    unknown (we cannot tell whether it names one of our CAs)."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        serial = request.serial_number
        name_hash = request.issuer_name_hash
        key_hash = request.issuer_key_hash
        nonce = _request_nonce(request)
    except ValueError:
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    try:
        algorithm = request.hash_algorithm
    except UnsupportedAlgorithm:
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    return OcspQuestion(serial, name_hash, key_hash, algorithm, nonce)


def answer_ocsp(
    ca: IssuerRecord, question: OcspQuestion, *, now: datetime.datetime | None = None
) -> bytes:
    """The DER response to `question`, signed by the CA that issued the certificate (of the
    generation the request's issuer key hash names); a nonce is echoed. One naming none of the
    CAs (by issuer key hash and name hash) gets unauthorized; a serial that CA never issued (or
    that another CA or generation issued), or a certificate past its notAfter, is answered
    unknown."""
    this_update = _now(now)
    # Both CAs have DNs of one pattern and CA generations share a DN: the key decides.
    authority = next(
        (
            candidate
            for generation in reversed(ca.generations)
            for candidate in generation.authorities
            if ocsp_issuer_hashes(candidate.certificate, question.algorithm)
            == (question.name_hash, question.key_hash)
        ),
        None,
    )
    if authority is None:
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    entry = ca.find_issued(question.serial)
    revocation_time: datetime.datetime | None = None
    reason: x509.ReasonFlags | None = None
    if (
        entry is None
        or entry.kind is not authority.kind
        or entry.generation != authority.generation
        or entry.not_after < this_update  # expired: no longer answered (lifecycle.md §4)
    ):
        status = ocsp.OCSPCertStatus.UNKNOWN
    elif entry.revoked:
        status = ocsp.OCSPCertStatus.REVOKED
        revocation_time, reason = _revocation_of(entry)
    else:
        status = ocsp.OCSPCertStatus.GOOD
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=question.name_hash,
            issuer_key_hash=question.key_hash,
            serial_number=question.serial,
            algorithm=question.algorithm,
            cert_status=status,
            this_update=this_update,
            next_update=this_update + OCSP_VALIDITY,
            revocation_time=revocation_time,
            revocation_reason=reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, authority.certificate)
    )
    if question.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(question.nonce), critical=False)
    response = builder.sign(authority.private_key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


def build_ocsp_response(
    ca: IssuerRecord, request_der: bytes, *, now: datetime.datetime | None = None
) -> bytes:
    """The DER OCSP response to one DER request (`read_ocsp_request`, then `answer_ocsp`)."""
    question = read_ocsp_request(request_der)
    if isinstance(question, bytes):
        return question
    return answer_ocsp(ca, question, now=now)
