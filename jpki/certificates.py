"""JPKI certificates as every role sees them: the two kinds, their policy and attribute OIDs,
key identifiers, and a certificate described for people (names, serial, the four attributes).
"""

from __future__ import annotations

import enum
from typing import Any

from asn1crypto import core, keys
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

SIGNATURE_POLICY_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.1.1.20")
SIGNATURE_TEST_POLICY_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.1.0.20")
# The spec knows no test-hierarchy authentication policy, so both hierarchies use this one.
AUTHENTICATION_POLICY_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.1.3.30")

NAME_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.5.1")
NAME_SUBSTITUTE_FLAGS_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.5.2")
SEX_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.5.3")
BIRTH_DATE_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.5.4")
ADDRESS_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.5.5")
ADDRESS_SUBSTITUTE_FLAGS_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.5.6")


class CertificateKind(enum.Enum):
    """Which of the two JPKI hierarchies a certificate belongs to."""

    SIGNATURE = "signature"
    AUTHENTICATION = "authentication"

    @property
    def key(self) -> str:
        """The short name used on the command line and on the card (`sign`, `auth`)."""
        return "sign" if self is CertificateKind.SIGNATURE else "auth"

    @classmethod
    def named(cls, key: str) -> CertificateKind:
        return next(kind for kind in cls if kind.key == key)

    @property
    def policies(self) -> frozenset[x509.ObjectIdentifier]:
        """The certificate policies (production and test) that mark this kind."""
        if self is CertificateKind.SIGNATURE:
            return frozenset({SIGNATURE_POLICY_OID, SIGNATURE_TEST_POLICY_OID})
        return frozenset({AUTHENTICATION_POLICY_OID})

    @property
    def organizational_unit(self) -> str:
        """The English OU that names the CA (and its CRL partitions)."""
        return {
            CertificateKind.SIGNATURE: "JPKI for digital signature",
            CertificateKind.AUTHENTICATION: "JPKI for user authentication",
        }[self]

    @property
    def japanese_service_unit(self) -> str:
        """The Japanese OU in the CA's subjectAltName and the end entity's issuerAltName."""
        return {
            CertificateKind.SIGNATURE: "公的個人認証サービス署名用",
            CertificateKind.AUTHENTICATION: "公的個人認証サービス利用者証明用",
        }[self]


ATTRIBUTE_NAMES = {
    NAME_OID: "name",
    BIRTH_DATE_OID: "birth_date",
    SEX_OID: "sex",
    ADDRESS_OID: "address",
    NAME_SUBSTITUTE_FLAGS_OID: "name_substitute_flags",
    ADDRESS_SUBSTITUTE_FLAGS_OID: "address_substitute_flags",
}
ERA_NAMES = {"0": "unknown era", "1": "Meiji", "2": "Taisho", "3": "Showa", "4": "Heisei",
             "5": "Reiwa"}  # fmt: skip
SEX_NAMES = {"1": "male", "2": "female", "3": "unknown"}


def parse_whole(certificate: x509.Certificate) -> None:
    """Parse every part now: cryptography parses some lazily, and would fail later, elsewhere."""
    certificate.public_key()
    for extension in certificate.extensions:
        _ = extension.value
    _ = (certificate.issuer, certificate.subject, certificate.signature_hash_algorithm)
    _ = (certificate.not_valid_before_utc, certificate.not_valid_after_utc)


def readable_name(name: x509.Name) -> str:
    """A DN in certificate order (`C=JP, O=…`), as openssl prints it."""
    return ", ".join(rdn.rfc4514_string() for rdn in name.rdns)


def subject_key_id(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        return None


def authority_key_id(certificate: x509.Certificate) -> bytes | None:
    try:
        value = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return value.key_identifier


def ocsp_issuer_hashes(
    issuer_certificate: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """issuerNameHash and issuerKeyHash of an OCSP CertID naming this issuer."""
    spki = issuer_certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The key hash covers the subjectPublicKey BIT STRING's contents, not the whole SPKI.
    key_bits = bytes(keys.PublicKeyInfo.load(spki)["public_key"])
    return _digest(algorithm, issuer_certificate.subject.public_bytes()), _digest(
        algorithm, key_bits
    )


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    context = hashes.Hash(algorithm)
    context.update(data)
    return context.finalize()


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` names and signed `certificate`."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def basic_attributes(certificate: x509.Certificate) -> dict[str, str]:
    """The four basic attributes from a signature certificate's SAN (empty for others)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    attributes = {}
    for other in names.get_values_for_type(x509.OtherName):
        key = ATTRIBUTE_NAMES.get(other.type_id)
        if key is not None:
            attributes[key] = str(core.UTF8String.load(other.value).native)
    if "birth_date" in attributes:
        raw = attributes["birth_date"]
        attributes["birth_date"] = (
            f"{raw[1:5]}-{raw[5:7]}-{raw[7:9]} ({ERA_NAMES.get(raw[0], '?')})"
        )
    if "sex" in attributes:
        attributes["sex"] = SEX_NAMES.get(attributes["sex"], attributes["sex"])
    return attributes


def describe(certificate: x509.Certificate) -> dict[str, Any]:
    description: dict[str, Any] = {
        "subject": readable_name(certificate.subject),
        "issuer": readable_name(certificate.issuer),
        "serial": f"{certificate.serial_number:X}",
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }
    attributes = basic_attributes(certificate)
    if attributes:
        description["holder"] = attributes
    return description
