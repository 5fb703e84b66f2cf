"""The JPKI certificate profile: names, extensions and validity of the CA, signature and
authentication certificates, reproduced as the real J-LIS certificates encode them.

Pure functions only (no file or network I/O); `jpki.issuer.ca` keeps keys and state on disk.
See /work/shared/spec/jpki-certificates.md for the profile and the confidence of each field.
"""

from __future__ import annotations

import datetime
import enum
import re
import secrets
import string
from collections.abc import Sequence

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from jpki.certificates import (
    ADDRESS_OID,
    ADDRESS_SUBSTITUTE_FLAGS_OID,
    AUTHENTICATION_POLICY_OID,
    BIRTH_DATE_OID,
    NAME_OID,
    NAME_SUBSTITUTE_FLAGS_OID,
    SEX_OID,
    SIGNATURE_POLICY_OID,
    SIGNATURE_TEST_POLICY_OID,
    CertificateKind,
)
from jpki.issuer.holder import Holder

UTC = datetime.UTC
# Validity ends at 23:59:59 Japan time, and the dates in names and expiry are Japanese dates.
JST = datetime.timezone(datetime.timedelta(hours=9), "JST")
END_OF_JAPANESE_DAY_UTC = datetime.time(14, 59, 59, tzinfo=UTC)

CA_VALIDITY_YEARS = 10
# End-entity certificates expire on the holder's fifth birthday after issuance.
CERTIFICATE_LIFETIME_BIRTHDAYS = 5

# Serials are 4-byte positive DER integers: the top byte is non-zero and below 0x80.
SERIAL_MIN = 0x01000000
SERIAL_MAX = 0x7FFFFFFF

CPS_URL = "http://www.jpki.go.jp/cps.html"
DEFAULT_OCSP_URL = "http://127.0.0.1:8080/ocsp"

# The order of the otherNames on real cards (not numeric order).
SUBJECT_ALT_NAME_ORDER = (
    NAME_OID,
    BIRTH_DATE_OID,
    SEX_OID,
    ADDRESS_OID,
    NAME_SUBSTITUTE_FLAGS_OID,
    ADDRESS_SUBSTITUTE_FLAGS_OID,
)

SUBSTITUTE_CHARACTER = "\u3013"  # 〓 GETA MARK
IDEOGRAPHIC_SPACE = "\u3000"
MAX_ADDRESS_LENGTH = 200

JLIS_OU = "Japan Agency for Local Authority Information Systems"
TEST_MARKER_OU = "JPKI card emulator - not for production use"
CRL_DISTRIBUTION_POINTS_OU = "CRL Distribution Points"
JAPANESE_SERVICE_NAME = "公的個人認証サービス"
JAPANESE_JLIS_NAME = "地方公共団体情報システム機構"
COUNTRY = "JP"

WINDOW_ID_PATTERN = re.compile(r"[0-9]{5}[0-9]{3}[A-Z]")
SIGNATURE_TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
SEQUENCE_DIGITS = 5
AUTHENTICATION_CODE_LENGTH = 14
AUTHENTICATION_CODE_ALPHABET = string.digits + string.ascii_uppercase

# EUC-JP lead bytes: SS2 starts JIS X 0201 half-width kana, which is not JIS X 0208/0212.
EUC_JP_SINGLE_SHIFT_2 = 0x8E
EUC_JP_MULTIBYTE_LENGTHS = (2, 3)


class Hierarchy(enum.Enum):
    """Production-looking or test CA names; the value is the CA's O attribute."""

    PRODUCTION = "JPKI"
    TEST = "JPKI-TEST"

    @classmethod
    def of(cls, production_dn: bool) -> Hierarchy:
        return cls.PRODUCTION if production_dn else cls.TEST


def policy_oid(kind: CertificateKind, hierarchy: Hierarchy) -> x509.ObjectIdentifier:
    """The certificate policy that keeps signature and authentication certificates apart."""
    if kind is CertificateKind.AUTHENTICATION:
        return AUTHENTICATION_POLICY_OID
    if hierarchy is Hierarchy.PRODUCTION:
        return SIGNATURE_POLICY_OID
    return SIGNATURE_TEST_POLICY_OID


def _name(attributes: Sequence[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    # One attribute per RDN; cryptography encodes C as PrintableString and the rest as UTF8String.
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def ca_name(kind: CertificateKind, *, production_dn: bool = False) -> x509.Name:
    """Subject and issuer of a CA certificate; the test hierarchy adds an emulator OU last."""
    hierarchy = Hierarchy.of(production_dn)
    attributes = [
        (NameOID.COUNTRY_NAME, COUNTRY),
        (NameOID.ORGANIZATION_NAME, hierarchy.value),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, kind.organizational_unit),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, JLIS_OU),
    ]
    if hierarchy is Hierarchy.TEST:
        attributes.append((NameOID.ORGANIZATIONAL_UNIT_NAME, TEST_MARKER_OU))
    return _name(attributes)


def ca_alternative_name(kind: CertificateKind) -> x509.Name:
    """The Japanese directoryName in the CA's subjectAltName and end entities' issuerAltName."""
    return _name(
        [
            (NameOID.COUNTRY_NAME, COUNTRY),
            (NameOID.ORGANIZATION_NAME, JAPANESE_SERVICE_NAME),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, kind.japanese_service_unit),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, JAPANESE_JLIS_NAME),
        ]
    )


def crl_partition_name(
    kind: CertificateKind, hierarchy: Hierarchy, prefecture: str, municipality: str
) -> x509.Name:
    """The per-municipality CRL partition an end-entity certificate points to."""
    return _name(
        [
            (NameOID.COUNTRY_NAME, COUNTRY),
            (NameOID.ORGANIZATION_NAME, hierarchy.value),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, kind.organizational_unit),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, CRL_DISTRIBUTION_POINTS_OU),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, prefecture),
            (NameOID.COMMON_NAME, f"{municipality} CRLDP"),
        ]
    )


def window_id(municipality_code: str, window_number: int = 1, letter: str = "A") -> str:
    """Nine-character issuing-window id: municipality code, 3-digit window, letter."""
    identifier = f"{municipality_code}{window_number:03d}{letter}"
    if not WINDOW_ID_PATTERN.fullmatch(identifier):
        raise ValueError(f"not a window id (5 digits, 3 digits, one capital): {identifier!r}")
    return identifier


def signature_subject(
    holder: Holder, *, issued: datetime.datetime, sequence: int, window: str
) -> x509.Name:
    """`C=JP, L=<prefecture>, L=<municipality>, CN=<timestamp><sequence><window id>`."""
    if not WINDOW_ID_PATTERN.fullmatch(window):
        raise ValueError(f"not a window id: {window!r}")
    sequence_number = sequence % 10**SEQUENCE_DIGITS
    timestamp = require_aware(issued).astimezone(JST).strftime(SIGNATURE_TIMESTAMP_FORMAT)
    common_name = f"{timestamp}{sequence_number:0{SEQUENCE_DIGITS}d}{window}"
    return _name(
        [
            (NameOID.COUNTRY_NAME, COUNTRY),
            (NameOID.LOCALITY_NAME, holder.prefecture),
            (NameOID.LOCALITY_NAME, holder.municipality),
            (NameOID.COMMON_NAME, common_name),
        ]
    )


def random_authentication_code() -> str:
    """Fourteen random upper-case alphanumerics for an authentication subject."""
    return "".join(
        secrets.choice(AUTHENTICATION_CODE_ALPHABET) for _ in range(AUTHENTICATION_CODE_LENGTH)
    )


def authentication_subject(code: str, window: str) -> x509.Name:
    """Exactly `C=JP, CN=<14 upper-case alphanumerics><window id>`: no personal data."""
    if len(code) != AUTHENTICATION_CODE_LENGTH or any(
        character not in AUTHENTICATION_CODE_ALPHABET for character in code
    ):
        raise ValueError(f"authentication code must be 14 upper-case alphanumerics: {code!r}")
    if not WINDOW_ID_PATTERN.fullmatch(window):
        raise ValueError(f"not a window id: {window!r}")
    return _name([(NameOID.COUNTRY_NAME, COUNTRY), (NameOID.COMMON_NAME, code + window)])


def _representable(character: str) -> bool:
    """Approximates "in JIS X 0208 or JIS X 0212" with Python's EUC-JP codec."""
    if character.isascii() or character == IDEOGRAPHIC_SPACE:
        return True
    try:
        encoded = character.encode("euc_jp")
    except UnicodeEncodeError:
        return False
    return len(encoded) in EUC_JP_MULTIBYTE_LENGTHS and encoded[0] != EUC_JP_SINGLE_SHIFT_2


def substitute_unrepresentable(text: str) -> tuple[str, str]:
    """Replace characters outside JIS X 0208/0212 by 〓; return the text and one 0/1 flag each."""
    characters: list[str] = []
    flags: list[str] = []
    for character in text:
        if _representable(character):
            characters.append(character)
            flags.append("0")
        else:
            characters.append(SUBSTITUTE_CHARACTER)
            flags.append("1")
    return "".join(characters), "".join(flags)


def require_aware(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (use UTC)")
    return moment


def _same_day_in_year(day: datetime.date, year: int) -> datetime.date:
    try:
        return day.replace(year=year)
    except ValueError:
        # Only February 29 fails; it falls on February 28 in common years.
        return day.replace(year=year, day=28)


def _end_of_japanese_day(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, END_OF_JAPANESE_DAY_UTC)


def expiry_for(holder: Holder, issued: datetime.datetime) -> datetime.datetime:
    """14:59:59Z (end of day in Japan) on the holder's fifth birthday after the issuance date.

    The issuance date is taken in Japan time; a birthday on that date does not count.
    """
    issued_day = require_aware(issued).astimezone(JST).date()
    if holder.birth_date > issued_day:
        raise ValueError("the holder is born after the issuance date")
    first_year = issued_day.year
    if _same_day_in_year(holder.birth_date, first_year) <= issued_day:
        first_year += 1
    last_year = first_year + CERTIFICATE_LIFETIME_BIRTHDAYS - 1
    return _end_of_japanese_day(_same_day_in_year(holder.birth_date, last_year))


def ca_expiry(issued: datetime.datetime) -> datetime.datetime:
    """14:59:59Z on the same Japanese date ten years after the CA's issuance."""
    issued_day = require_aware(issued).astimezone(JST).date()
    return _end_of_japanese_day(_same_day_in_year(issued_day, issued_day.year + CA_VALIDITY_YEARS))


def _check_serial(serial: int) -> None:
    if not SERIAL_MIN <= serial <= SERIAL_MAX:
        raise ValueError(f"serial must be a 4-byte positive integer, got {serial:#x}")


def _not_before(now: datetime.datetime) -> datetime.datetime:
    # Certificates carry whole seconds.
    return require_aware(now).astimezone(UTC).replace(microsecond=0)


def _utf8_other_name(oid: x509.ObjectIdentifier, text: str) -> x509.OtherName:
    # cryptography wraps the value in [0] EXPLICIT; the value itself is a DER UTF8String.
    encoded: bytes = core.UTF8String(text).dump()
    return x509.OtherName(oid, encoded)


def holder_alternative_names(holder: Holder) -> list[x509.GeneralName]:
    """The six otherNames of a signature certificate, in the order real cards use."""
    if len(holder.address) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"address longer than {MAX_ADDRESS_LENGTH} characters")
    name, name_flags = substitute_unrepresentable(holder.name)
    address, address_flags = substitute_unrepresentable(holder.address)
    values = {
        NAME_OID: name,
        BIRTH_DATE_OID: holder.certificate_birth_date,
        SEX_OID: holder.sex.certificate_code,
        ADDRESS_OID: address,
        NAME_SUBSTITUTE_FLAGS_OID: name_flags,
        ADDRESS_SUBSTITUTE_FLAGS_OID: address_flags,
    }
    return [_utf8_other_name(oid, values[oid]) for oid in SUBJECT_ALT_NAME_ORDER]


def _policies(oid: x509.ObjectIdentifier) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(oid, [CPS_URL])])


def _key_usage(
    *, digital_signature: bool = False, non_repudiation: bool = False, ca: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey) -> x509.Certificate:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("JPKI CAs sign with RSA keys")
    # RSA keys sign with PKCS#1 v1.5 by default: sha256WithRSAEncryption.
    return builder.sign(key, hashes.SHA256())


def build_ca_certificate(
    kind: CertificateKind,
    key: rsa.RSAPrivateKey,
    serial: int,
    now: datetime.datetime,
    production_dn: bool = False,
) -> x509.Certificate:
    """A self-signed JPKI CA certificate valid for ten years."""
    _check_serial(serial)
    name = ca_name(kind, production_dn=production_dn)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .serial_number(serial)
        .issuer_name(name)
        .subject_name(name)
        .not_valid_before(_not_before(now))
        .not_valid_after(ca_expiry(now))
        .public_key(public_key)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DirectoryName(ca_alternative_name(kind))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.DirectoryName(name)], None, None, None)]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return _sign(builder, key)


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attributes = name.get_attributes_for_oid(oid)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else None


def issuer_profile(issuer_certificate: x509.Certificate) -> tuple[CertificateKind, Hierarchy]:
    """Which kind of JPKI CA (and which hierarchy) a CA certificate is, from its subject."""
    subject = issuer_certificate.subject
    organization = _attribute(subject, NameOID.ORGANIZATION_NAME)
    unit = _attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    hierarchies = {hierarchy.value: hierarchy for hierarchy in Hierarchy}
    kinds = {kind.organizational_unit: kind for kind in CertificateKind}
    if organization not in hierarchies or unit not in kinds:
        raise ValueError(f"not a JPKI CA certificate: {subject.rfc4514_string()}")
    return kinds[unit], hierarchies[organization]


def key_matches(key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bool:
    """True when `key` is the private half of the certificate's public key."""
    public_key = certificate.public_key()
    return (
        isinstance(public_key, rsa.RSAPublicKey)
        and public_key.public_numbers() == key.public_key().public_numbers()
    )


def end_of_validity(
    holder: Holder,
    issued: datetime.datetime,
    issuer_certificate: x509.Certificate,
    card_expiry: datetime.date | None = None,
) -> datetime.datetime:
    """A certificate's notAfter: the holder's fifth birthday after issuance, or the card's
    expiry (end of that day in Japan) if earlier; never after its CA's own notAfter.
    ValueError when the CA has expired by the issuance time."""
    ends = [expiry_for(holder, issued), issuer_certificate.not_valid_after_utc]
    if card_expiry is not None:
        ends.append(_end_of_japanese_day(card_expiry))
    if issuer_certificate.not_valid_after_utc <= require_aware(issued):
        raise ValueError(
            f"the issuing CA expired on {issuer_certificate.not_valid_after_utc:%Y-%m-%d}: "
            "start a new generation with `jpki ca rollover`"
        )
    return min(ends)


def _end_entity_builder(
    kind: CertificateKind,
    issuer_certificate: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    subject: x509.Name,
    subject_public_key: rsa.RSAPublicKey,
    holder: Holder,
    serial: int,
    now: datetime.datetime,
    card_expiry: datetime.date | None,
) -> tuple[x509.CertificateBuilder, Hierarchy]:
    _check_serial(serial)
    issuer_kind, hierarchy = issuer_profile(issuer_certificate)
    if issuer_kind is not kind:
        raise ValueError(f"a {kind.value} certificate needs the {kind.value} CA")
    if not key_matches(issuer_key, issuer_certificate):
        raise ValueError("the issuer key does not belong to the issuer certificate")
    if not isinstance(subject_public_key, rsa.RSAPublicKey):
        raise TypeError("JPKI card keys are RSA keys")
    builder = (
        x509.CertificateBuilder()
        .serial_number(serial)
        .issuer_name(issuer_certificate.subject)
        .subject_name(subject)
        .not_valid_before(_not_before(now))
        .not_valid_after(end_of_validity(holder, now, issuer_certificate, card_expiry))
        .public_key(subject_public_key)
    )
    return builder, hierarchy


def _crl_distribution_points(
    kind: CertificateKind, hierarchy: Hierarchy, holder: Holder, crl_url: str | None
) -> x509.CRLDistributionPoints:
    partition = crl_partition_name(kind, hierarchy, holder.prefecture, holder.municipality)
    full_name: list[x509.GeneralName] = [x509.DirectoryName(partition)]
    if crl_url is not None:
        full_name.append(x509.UniformResourceIdentifier(crl_url))
    return x509.CRLDistributionPoints([x509.DistributionPoint(full_name, None, None, None)])


def _ocsp_access(ocsp_url: str) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(ocsp_url),
            )
        ]
    )


def _authority_key_identifier(issuer_certificate: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    # Chains are built by key id: CA generations share one DN.
    issuer_key_id = issuer_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value.digest
    return x509.AuthorityKeyIdentifier(
        key_identifier=issuer_key_id,
        authority_cert_issuer=[x509.DirectoryName(issuer_certificate.subject)],
        authority_cert_serial_number=issuer_certificate.serial_number,
    )


def build_signature_certificate(
    issuer_certificate: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    subject_public_key: rsa.RSAPublicKey,
    holder: Holder,
    *,
    serial: int,
    now: datetime.datetime,
    sequence: int,
    window: str | None = None,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    card_expiry: datetime.date | None = None,
) -> x509.Certificate:
    """A signature certificate (EF 0001) carrying the holder's four basic attributes.

    `sequence` goes into the CN (modulo 100000); `window` defaults to window 001A of the
    holder's municipality; `crl_url` adds a URI to the CRL distribution point and
    `ocsp_url` adds an AIA OCSP entry (absent on real signature certificates, probably).
    """
    kind = CertificateKind.SIGNATURE
    window = window_id(holder.municipality_code) if window is None else window
    subject = signature_subject(holder, issued=now, sequence=sequence, window=window)
    builder, hierarchy = _end_entity_builder(
        kind,
        issuer_certificate,
        issuer_key,
        subject,
        subject_public_key,
        holder,
        serial,
        now,
        card_expiry,
    )
    builder = (
        builder.add_extension(
            _key_usage(digital_signature=True, non_repudiation=True), critical=True
        )
        .add_extension(
            x509.SubjectAlternativeName(holder_alternative_names(holder)), critical=False
        )
        .add_extension(_policies(policy_oid(kind, hierarchy)), critical=True)
        .add_extension(
            x509.IssuerAlternativeName([x509.DirectoryName(ca_alternative_name(kind))]),
            critical=False,
        )
        .add_extension(_crl_distribution_points(kind, hierarchy, holder, crl_url), critical=False)
    )
    if ocsp_url is not None:
        builder = builder.add_extension(_ocsp_access(ocsp_url), critical=False)
    builder = builder.add_extension(
        _authority_key_identifier(issuer_certificate), critical=False
    ).add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_public_key), critical=False)
    return _sign(builder, issuer_key)


def build_authentication_certificate(
    issuer_certificate: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    subject_public_key: rsa.RSAPublicKey,
    holder: Holder,
    *,
    serial: int,
    now: datetime.datetime,
    ocsp_url: str = DEFAULT_OCSP_URL,
    crl_url: str | None = None,
    code: str | None = None,
    window: str | None = None,
    card_expiry: datetime.date | None = None,
) -> x509.Certificate:
    """An authentication certificate (EF 000A): no personal data, only the holder's expiry.

    `code` is the 14-character CN prefix (random when None); `window` as for signature.
    """
    kind = CertificateKind.AUTHENTICATION
    window = window_id(holder.municipality_code) if window is None else window
    subject = authentication_subject(code or random_authentication_code(), window)
    builder, hierarchy = _end_entity_builder(
        kind,
        issuer_certificate,
        issuer_key,
        subject,
        subject_public_key,
        holder,
        serial,
        now,
        card_expiry,
    )
    builder = (
        builder.add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_policies(policy_oid(kind, hierarchy)), critical=True)
        .add_extension(
            x509.IssuerAlternativeName([x509.DirectoryName(ca_alternative_name(kind))]),
            critical=False,
        )
        .add_extension(_crl_distribution_points(kind, hierarchy, holder, crl_url), critical=False)
        .add_extension(_ocsp_access(ocsp_url), critical=False)
        .add_extension(_authority_key_identifier(issuer_certificate), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_public_key), critical=False
        )
    )
    return _sign(builder, issuer_key)
