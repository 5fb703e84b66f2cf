"""A certificate described for people: names, serial, validity, and the holder's four attributes."""

from __future__ import annotations

from typing import Any

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from jpki import certprofile

ATTRIBUTE_NAMES = {
    certprofile.NAME_OID: "name",
    certprofile.BIRTH_DATE_OID: "birth_date",
    certprofile.SEX_OID: "sex",
    certprofile.ADDRESS_OID: "address",
    certprofile.NAME_SUBSTITUTE_FLAGS_OID: "name_substitute_flags",
    certprofile.ADDRESS_SUBSTITUTE_FLAGS_OID: "address_substitute_flags",
}
ERA_NAMES = {"0": "unknown era", "1": "Meiji", "2": "Taisho", "3": "Showa", "4": "Heisei",
             "5": "Reiwa"}  # fmt: skip
SEX_NAMES = {"1": "male", "2": "female", "3": "unknown"}


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
