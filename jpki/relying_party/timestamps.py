"""RFC 3161 timestamps as a relying party checks them: a token over a signature value, signed by
a time-stamping authority (TSA) whose certificate is pinned.

A verified token's genTime is a signing time the verifier can trust (the signature existed
then), unlike the CMS signingTime attribute, which is only the signer's claim.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jpki import clock, cms
from jpki.certificates import issued_by, readable_name
from jpki.relying_party.verify import VerificationError

BAD_TIMESTAMP = "bad-timestamp"
UNTRUSTED_TIMESTAMP = "untrusted-timestamp"
# Tolerated difference between the TSA's clock and ours for a genTime "in the future".
CLOCK_SKEW = datetime.timedelta(minutes=5)
IMPRINT_HASHES = ("sha256", "sha384", "sha512")
ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


@dataclass(frozen=True)
class VerifiedTimestamp:
    """A token that checked out: when, by which TSA (its certificate's CN, else its DN)."""

    time: datetime.datetime
    authority: str
    certificate: x509.Certificate
    serial_number: int
    policy: str


def authority_name(certificate: x509.Certificate) -> str:
    """How a TSA is named to a reader: its certificate's CN, else its whole DN."""
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names and isinstance(common_names[0].value, str):
        return common_names[0].value
    return readable_name(certificate.subject)


def verify_timestamp(
    token: bytes, signature: bytes, anchors: Sequence[x509.Certificate]
) -> VerifiedTimestamp:
    """Check that `token` (a DER TimeStampToken) stamps `signature` (a SignerInfo's signature
    value) and comes from a TSA whose certificate is in `anchors` or issued by one of them.

    Raises VerificationError: "bad-timestamp" for a token that does not verify or stamps other
    data, "untrusted-timestamp" for one from a TSA that is not pinned.
    """
    try:
        signed = cms.verify_signed_data(
            token, None, content_type=cms.TST_INFO, certificates=anchors
        )
    except cms.CmsError as error:
        raise VerificationError(BAD_TIMESTAMP, f"the timestamp does not verify: {error}") from None
    info = _tst_info(signed.content)
    imprint = info["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm not in IMPRINT_HASHES:
        raise VerificationError(
            BAD_TIMESTAMP, f"the timestamp uses an unsupported hash {algorithm}"
        )
    if imprint["hashed_message"].native != hashlib.new(algorithm, signature).digest():
        raise VerificationError(
            BAD_TIMESTAMP,
            "the timestamp is over other data, not this signature (its message imprint differs)",
        )
    certificate = signed.certificate
    _check_names_its_certificate(token, certificate)
    anchor = _trusted_anchor(certificate, anchors)
    generated = info["gen_time"].native
    if not isinstance(generated, datetime.datetime) or generated.utcoffset() is None:
        raise VerificationError(BAD_TIMESTAMP, "the timestamp's genTime cannot be read")
    for chained in (certificate, anchor):
        if not chained.not_valid_before_utc <= generated <= chained.not_valid_after_utc:
            raise VerificationError(
                BAD_TIMESTAMP,
                f"the timestamp's time {generated:%Y-%m-%d %H:%M:%SZ} is outside the validity "
                f"of the TSA certificate {readable_name(chained.subject)}",
            )
    if generated > clock.now() + CLOCK_SKEW:
        raise VerificationError(
            BAD_TIMESTAMP, f"the timestamp's time {generated:%Y-%m-%d %H:%M:%SZ} is in the future"
        )
    return VerifiedTimestamp(
        time=generated,
        authority=authority_name(certificate),
        certificate=certificate,
        serial_number=int(info["serial_number"].native),
        policy=str(info["policy"].native),
    )


def _tst_info(content: bytes) -> tsp.TSTInfo:
    try:
        info = tsp.TSTInfo.load(content, strict=True)
        if info["version"].native != "v1":
            raise ValueError("not version 1")
        _ = info.native  # parses every field now: damage anywhere is a bad timestamp, not a crash
    except ASN1_ERRORS:
        raise VerificationError(BAD_TIMESTAMP, "the timestamp's TSTInfo cannot be read") from None
    return info


def _check_names_its_certificate(token: bytes, certificate: x509.Certificate) -> None:
    """RFC 3161 2.4.1 / RFC 5816: the ESS signing-certificate attribute, signed, names the TSA's
    certificate by hash, so that another certificate of the same key cannot stand in."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    named = []
    try:
        signer_info = asn1_cms.ContentInfo.load(token)["content"]["signer_infos"][0]
        for attribute in signer_info["signed_attrs"]:
            kind = attribute["type"].native
            if kind not in ("signing_certificate", "signing_certificate_v2"):
                continue
            for value in attribute["values"]:
                first = value["certs"][0]
                # ESSCertID is SHA-1 by definition; ESSCertIDv2 names its hash (default SHA-256)
                algorithm = (
                    "sha1"
                    if kind == "signing_certificate"
                    else first["hash_algorithm"]["algorithm"].native
                )
                named.append(hashlib.new(algorithm, der).digest() == first["cert_hash"].native)
    except ASN1_ERRORS:
        raise VerificationError(
            BAD_TIMESTAMP, "the timestamp's signing-certificate attribute cannot be read"
        ) from None
    if not named or not all(named):
        raise VerificationError(
            BAD_TIMESTAMP,
            "the timestamp does not name its TSA's certificate (ESS signing-certificate)",
        )


def _trusted_anchor(
    certificate: x509.Certificate, anchors: Sequence[x509.Certificate]
) -> x509.Certificate:
    """The pinned certificate that is the TSA's or issued it; the TSA's must be for
    time-stamping."""
    name = readable_name(certificate.subject)
    if not anchors:
        raise VerificationError(
            UNTRUSTED_TIMESTAMP,
            f"the timestamp is signed by {name}, and no time-stamping authority is trusted",
        )
    trusted = next(
        (a for a in anchors if certificate == a or issued_by(certificate, a)),
        None,
    )
    if trusted is None:
        raise VerificationError(
            UNTRUSTED_TIMESTAMP,
            f"the timestamp is signed by {name}, which is not a trusted time-stamping authority",
        )
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.TIME_STAMPING not in usages:
        raise VerificationError(
            UNTRUSTED_TIMESTAMP,
            f"the timestamp is signed by {name}, whose certificate is not for time-stamping",
        )
    return trusted
