"""Tests of the JPKI certificate profile and the test CA, checked on the encoded certificates."""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki import certificates
from jpki.certificates import CertificateKind
from jpki.cvc import KeyId
from jpki.issuer import ca as ca_module
from jpki.issuer import profile
from jpki.issuer.ca import CAError, RevocationReason, TestCA
from jpki.issuer.holder import Holder, Sex, with_check_digit
from tests.conftest import CA_DIR

UTC = datetime.UTC
CA_CREATED = datetime.datetime(2024, 1, 10, 1, 0, tzinfo=UTC)
ISSUED = datetime.datetime(2024, 4, 1, 3, 0, 0, 123456, tzinfo=UTC)  # 12:00 JST

PRINTABLE_STRING_TAG = 0x13
UTF8_STRING_TAG = 0x0C
CONTEXT_CONSTRUCTED_0 = 0xA0

KEY_USAGE = "2.5.29.15"
SUBJECT_ALT_NAME = "2.5.29.17"
ISSUER_ALT_NAME = "2.5.29.18"
BASIC_CONSTRAINTS = "2.5.29.19"
CRL_DISTRIBUTION_POINTS = "2.5.29.31"
CERTIFICATE_POLICIES = "2.5.29.32"
AUTHORITY_KEY_ID = "2.5.29.35"
EXTENDED_KEY_USAGE = "2.5.29.37"
SUBJECT_KEY_ID = "2.5.29.14"
AUTHORITY_INFO_ACCESS = "1.3.6.1.5.5.7.1.1"

COUNTRY = "2.5.4.6"
ORGANIZATION = "2.5.4.10"
UNIT = "2.5.4.11"
LOCALITY = "2.5.4.7"
COMMON_NAME = "2.5.4.3"

NAME_WITH_NON_JIS = "山田\u3000𠮷男"  # 𠮷 (U+20BB7) is in neither JIS X 0208 nor 0212
ADDRESS_WITH_NON_JIS = "東京都渋谷区髙田一丁目２番３号"  # 髙 is an IBM extension only


def make_holder(**changes: Any) -> Holder:
    values: dict[str, Any] = {
        "name": NAME_WITH_NON_JIS,
        "birth_date": datetime.date(1980, 2, 17),
        "sex": Sex.MALE,
        "address": ADDRESS_WITH_NON_JIS,
        "my_number": with_check_digit("12345678901"),
    }
    values.update(changes)
    return Holder(**values)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    # A directory that does not exist yet: create() makes it.
    return TestCA.create(tmp_path_factory.mktemp("ca") / "jpki-ca", now=CA_CREATED)


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def holder() -> Holder:
    return make_holder()


@pytest.fixture(scope="module")
def signature_certificate(
    test_ca: TestCA, card_key: rsa.RSAPrivateKey, holder: Holder
) -> x509.Certificate:
    return test_ca.issue_signature_certificate(
        holder, card_key.public_key(), now=ISSUED, label="card-1"
    )


@pytest.fixture(scope="module")
def authentication_certificate(
    test_ca: TestCA, card_key: rsa.RSAPrivateKey, holder: Holder
) -> x509.Certificate:
    return test_ca.issue_authentication_certificate(
        holder, card_key.public_key(), now=ISSUED, label="card-1"
    )


def parse(certificate: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def extension_layout(certificate: x509.Certificate) -> list[tuple[str, bool]]:
    return [
        (extension["extn_id"].dotted, extension["critical"].native)
        for extension in parse(certificate)["tbs_certificate"]["extensions"]
    ]


def extension(certificate: x509.Certificate, oid: str) -> Any:
    for item in parse(certificate)["tbs_certificate"]["extensions"]:
        if item["extn_id"].dotted == oid:
            return item
    raise AssertionError(f"no extension {oid}")


def name_layout(name: Any) -> list[tuple[str, int, str]]:
    """(attribute OID, string tag, text) per RDN, asserting one attribute per RDN."""
    layout = []
    for rdn in name.chosen:
        assert len(rdn) == 1
        attribute = rdn[0]
        encoded = attribute["value"].dump()
        layout.append((attribute["type"].dotted, encoded[0], attribute["value"].native))
    return layout


def name_bytes(name: Any) -> bytes:
    """DER of the RDNSequence, without the [4] tag a directoryName adds around it."""
    encoded: bytes = name.chosen.dump()
    return encoded


def expected_ca_layout(kind: CertificateKind, *, production: bool) -> list[tuple[str, int, str]]:
    layout = [
        (COUNTRY, PRINTABLE_STRING_TAG, "JP"),
        (ORGANIZATION, UTF8_STRING_TAG, "JPKI" if production else "JPKI-TEST"),
        (UNIT, UTF8_STRING_TAG, kind.organizational_unit),
        (UNIT, UTF8_STRING_TAG, "Japan Agency for Local Authority Information Systems"),
    ]
    if not production:
        layout.append((UNIT, UTF8_STRING_TAG, "JPKI card emulator - not for production use"))
    return layout


def japanese_ca_layout(unit: str) -> list[tuple[str, int, str]]:
    return [
        (COUNTRY, PRINTABLE_STRING_TAG, "JP"),
        (ORGANIZATION, UTF8_STRING_TAG, "公的個人認証サービス"),
        (UNIT, UTF8_STRING_TAG, unit),
        (UNIT, UTF8_STRING_TAG, "地方公共団体情報システム機構"),
    ]


def openssl_extension_headers(certificate: x509.Certificate, tmp_path: Path) -> list[str]:
    pem = tmp_path / "certificate.pem"
    pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-text", "-noout"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    block = text.split("X509v3 extensions:\n", 1)[1].split("Signature Algorithm:", 1)[0]
    # Extension headers are the lines indented by exactly 12 spaces.
    return [line.strip() for line in block.splitlines() if re.match(r" {12}\S", line)]


def policy_oids(certificate: x509.Certificate) -> list[str]:
    policies = extension(certificate, CERTIFICATE_POLICIES)["extn_value"].parsed
    return [policy["policy_identifier"].dotted for policy in policies]


# --- CA certificates -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CertificateKind))
def test_ca_certificate_extensions_in_order(test_ca: TestCA, kind: CertificateKind) -> None:
    certificate = test_ca.authority(kind).certificate
    assert extension_layout(certificate) == [
        (KEY_USAGE, True),
        (SUBJECT_ALT_NAME, False),
        (BASIC_CONSTRAINTS, True),
        (CRL_DISTRIBUTION_POINTS, False),
        (SUBJECT_KEY_ID, False),
    ]


@pytest.mark.parametrize("kind", list(CertificateKind))
def test_ca_certificate_is_a_marked_test_hierarchy(test_ca: TestCA, kind: CertificateKind) -> None:
    tbs = parse(test_ca.authority(kind).certificate)["tbs_certificate"]
    assert name_layout(tbs["subject"]) == expected_ca_layout(kind, production=False)
    assert tbs["issuer"].dump() == tbs["subject"].dump()


@pytest.mark.parametrize("kind", list(CertificateKind))
def test_ca_certificate_contents(test_ca: TestCA, kind: CertificateKind) -> None:
    certificate = test_ca.authority(kind).certificate
    parsed = parse(certificate)
    tbs = parsed["tbs_certificate"]
    assert parsed["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    assert tbs["subject_public_key_info"]["public_key"].native["public_exponent"] == 65537
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    assert certificate.not_valid_before_utc == CA_CREATED
    assert certificate.not_valid_after_utc == datetime.datetime(2034, 1, 10, 14, 59, 59, tzinfo=UTC)
    assert certificate.serial_number.bit_length() in range(25, 32)  # 4-byte positive
    assert extension(certificate, KEY_USAGE)["extn_value"].contents == bytes.fromhex("03020106")
    constraints = extension(certificate, BASIC_CONSTRAINTS)["extn_value"].parsed.native
    assert constraints == {"ca": True, "path_len_constraint": None}
    (alternative,) = extension(certificate, SUBJECT_ALT_NAME)["extn_value"].parsed
    assert alternative.name == "directory_name"
    assert name_layout(alternative.chosen) == japanese_ca_layout(kind.japanese_service_unit)
    (point,) = extension(certificate, CRL_DISTRIBUTION_POINTS)["extn_value"].parsed
    (full_name,) = point["distribution_point"].chosen
    assert name_bytes(full_name.chosen) == name_bytes(tbs["subject"])
    key_id = extension(certificate, SUBJECT_KEY_ID)["extn_value"].parsed.native
    assert key_id == tbs["subject_public_key_info"].sha1  # RFC 5280 method 1
    certificate.verify_directly_issued_by(certificate)


def test_production_dn_on_request(test_ca: TestCA, card_key: rsa.RSAPrivateKey) -> None:
    authority = test_ca.signature
    production_ca = profile.build_ca_certificate(
        CertificateKind.SIGNATURE, authority.private_key, 0x01000000, CA_CREATED, production_dn=True
    )
    tbs = parse(production_ca)["tbs_certificate"]
    assert name_layout(tbs["subject"]) == expected_ca_layout(
        CertificateKind.SIGNATURE, production=True
    )
    certificate = profile.build_signature_certificate(
        production_ca,
        authority.private_key,
        card_key.public_key(),
        make_holder(),
        serial=0x01000001,
        now=ISSUED,
        sequence=1,
    )
    assert policy_oids(certificate) == ["1.2.392.200149.8.5.1.1.20"]
    (point,) = extension(certificate, CRL_DISTRIBUTION_POINTS)["extn_value"].parsed
    (full_name,) = point["distribution_point"].chosen
    assert name_layout(full_name.chosen)[1] == (ORGANIZATION, UTF8_STRING_TAG, "JPKI")


# --- signature certificate -------------------------------------------------------------------


def test_signature_certificate_extensions_in_order(
    signature_certificate: x509.Certificate,
) -> None:
    assert extension_layout(signature_certificate) == [
        (KEY_USAGE, True),
        (SUBJECT_ALT_NAME, False),
        (CERTIFICATE_POLICIES, True),
        (ISSUER_ALT_NAME, False),
        (CRL_DISTRIBUTION_POINTS, False),
        (AUTHORITY_KEY_ID, False),
        (SUBJECT_KEY_ID, False),
    ]
    key_usage = extension(signature_certificate, KEY_USAGE)["extn_value"].contents
    assert key_usage == bytes.fromhex("030206C0")


@pytest.mark.openssl
def test_signature_certificate_openssl_shows_extensions_in_order(
    signature_certificate: x509.Certificate, tmp_path: Path
) -> None:
    assert openssl_extension_headers(signature_certificate, tmp_path) == [
        "X509v3 Key Usage: critical",
        "X509v3 Subject Alternative Name:",
        "X509v3 Certificate Policies: critical",
        "X509v3 Issuer Alternative Name:",
        "X509v3 CRL Distribution Points:",
        "X509v3 Authority Key Identifier:",
        "X509v3 Subject Key Identifier:",
    ]


def test_signature_subject(test_ca: TestCA, signature_certificate: x509.Certificate) -> None:
    tbs = parse(signature_certificate)["tbs_certificate"]
    sequence = signature_certificate.serial_number % 100000
    assert name_layout(tbs["subject"]) == [
        (COUNTRY, PRINTABLE_STRING_TAG, "JP"),
        (LOCALITY, UTF8_STRING_TAG, "Tokyo-to"),
        (LOCALITY, UTF8_STRING_TAG, "Shibuya-ku"),
        (COMMON_NAME, UTF8_STRING_TAG, f"20240401120000{sequence:05d}13113001A"),
    ]
    ca_tbs = parse(test_ca.signature.certificate)["tbs_certificate"]
    assert tbs["issuer"].dump() == ca_tbs["subject"].dump()


def test_signature_alternative_names(signature_certificate: x509.Certificate) -> None:
    names = extension(signature_certificate, SUBJECT_ALT_NAME)["extn_value"].parsed
    found = []
    for general_name in names:
        assert general_name.name == "other_name"
        encoded = general_name.chosen["value"].dump()
        # [0] EXPLICIT wrapping one UTF8String
        assert encoded[0] == CONTEXT_CONSTRUCTED_0
        assert encoded[2] == UTF8_STRING_TAG
        found.append((general_name.chosen["type_id"].dotted, encoded[4:].decode("utf-8")))
    assert found == [
        ("1.2.392.200149.8.5.5.1", "山田\u3000〓男"),
        ("1.2.392.200149.8.5.5.4", "319800217"),
        ("1.2.392.200149.8.5.5.3", "1"),
        ("1.2.392.200149.8.5.5.5", "東京都渋谷区〓田一丁目２番３号"),
        ("1.2.392.200149.8.5.5.2", "00010"),
        ("1.2.392.200149.8.5.5.6", "000000100000000"),
    ]


@pytest.mark.parametrize(
    ("sex", "code"), [(Sex.MALE, "1"), (Sex.FEMALE, "2"), (Sex.NOT_APPLICABLE, "3")]
)
def test_sex_and_birth_date_codes(sex: Sex, code: str) -> None:
    holder = make_holder(sex=sex, birth_date=datetime.date(2019, 5, 1))
    values = {
        name.type_id.dotted_string: name.value
        for name in profile.holder_alternative_names(holder)
        if isinstance(name, x509.OtherName)
    }
    assert values[certificates.SEX_OID.dotted_string] == b"\x0c\x01" + code.encode()
    assert values[certificates.BIRTH_DATE_OID.dotted_string] == b"\x0c\x09520190501"


def test_signature_issuer_alternative_name_and_crl_partition(
    signature_certificate: x509.Certificate,
) -> None:
    (alternative,) = extension(signature_certificate, ISSUER_ALT_NAME)["extn_value"].parsed
    assert name_layout(alternative.chosen) == japanese_ca_layout("公的個人認証サービス署名用")
    (point,) = extension(signature_certificate, CRL_DISTRIBUTION_POINTS)["extn_value"].parsed
    (full_name,) = point["distribution_point"].chosen
    assert name_layout(full_name.chosen) == [
        (COUNTRY, PRINTABLE_STRING_TAG, "JP"),
        (ORGANIZATION, UTF8_STRING_TAG, "JPKI-TEST"),
        (UNIT, UTF8_STRING_TAG, "JPKI for digital signature"),
        (UNIT, UTF8_STRING_TAG, "CRL Distribution Points"),
        (UNIT, UTF8_STRING_TAG, "Tokyo-to"),
        (COMMON_NAME, UTF8_STRING_TAG, "Shibuya-ku CRLDP"),
    ]


def test_signature_certificate_optional_crl_url_and_ocsp(
    test_ca: TestCA, card_key: rsa.RSAPrivateKey
) -> None:
    certificate = profile.build_signature_certificate(
        test_ca.signature.certificate,
        test_ca.signature.private_key,
        card_key.public_key(),
        make_holder(),
        serial=0x01000001,
        now=ISSUED,
        sequence=1,
        crl_url="http://127.0.0.1:8080/crl/sign/13113.crl",
        ocsp_url="http://127.0.0.1:8080/ocsp",
    )
    layout = [oid for oid, _critical in extension_layout(certificate)]
    assert layout[4:] == [
        CRL_DISTRIBUTION_POINTS,
        AUTHORITY_INFO_ACCESS,
        AUTHORITY_KEY_ID,
        SUBJECT_KEY_ID,
    ]
    (point,) = extension(certificate, CRL_DISTRIBUTION_POINTS)["extn_value"].parsed
    kinds = [(name.name, name.native) for name in point["distribution_point"].chosen]
    assert kinds[1] == ("uniform_resource_identifier", "http://127.0.0.1:8080/crl/sign/13113.crl")
    assert kinds[0][0] == "directory_name"


# --- authentication certificate --------------------------------------------------------------


@pytest.mark.openssl
def test_authentication_certificate_extensions_in_order(
    test_ca: TestCA, authentication_certificate: x509.Certificate, tmp_path: Path
) -> None:
    assert extension_layout(authentication_certificate) == [
        (KEY_USAGE, True),
        (EXTENDED_KEY_USAGE, False),
        (CERTIFICATE_POLICIES, True),
        (ISSUER_ALT_NAME, False),
        (CRL_DISTRIBUTION_POINTS, False),
        (AUTHORITY_INFO_ACCESS, False),
        (AUTHORITY_KEY_ID, False),
        (SUBJECT_KEY_ID, False),
    ]
    assert openssl_extension_headers(authentication_certificate, tmp_path) == [
        "X509v3 Key Usage: critical",
        "X509v3 Extended Key Usage:",
        "X509v3 Certificate Policies: critical",
        "X509v3 Issuer Alternative Name:",
        "X509v3 CRL Distribution Points:",
        "Authority Information Access:",
        "X509v3 Authority Key Identifier:",
        "X509v3 Subject Key Identifier:",
    ]
    key_usage = extension(authentication_certificate, KEY_USAGE)["extn_value"].contents
    assert key_usage == bytes.fromhex("03020780")
    usages = extension(authentication_certificate, EXTENDED_KEY_USAGE)["extn_value"].parsed
    assert usages.native == ["client_auth"]
    (access,) = extension(authentication_certificate, AUTHORITY_INFO_ACCESS)["extn_value"].parsed
    assert access["access_method"].native == "ocsp"
    assert access["access_location"].native == test_ca.ocsp_url
    (alternative,) = extension(authentication_certificate, ISSUER_ALT_NAME)["extn_value"].parsed
    assert name_layout(alternative.chosen) == japanese_ca_layout("公的個人認証サービス利用者証明用")
    (point,) = extension(authentication_certificate, CRL_DISTRIBUTION_POINTS)["extn_value"].parsed
    (full_name,) = point["distribution_point"].chosen
    assert name_layout(full_name.chosen)[2] == (
        UNIT,
        UTF8_STRING_TAG,
        "JPKI for user authentication",
    )


def test_authentication_subject_has_no_personal_data(
    authentication_certificate: x509.Certificate,
) -> None:
    layout = name_layout(parse(authentication_certificate)["tbs_certificate"]["subject"])
    assert [(oid, tag) for oid, tag, _text in layout] == [
        (COUNTRY, PRINTABLE_STRING_TAG),
        (COMMON_NAME, UTF8_STRING_TAG),
    ]
    assert layout[0][2] == "JP"
    assert re.fullmatch(r"[0-9A-Z]{14}13113001A", layout[1][2])


# --- common to both end-entity certificates --------------------------------------------------


@pytest.fixture(params=list(CertificateKind))
def issued_pair(
    request: pytest.FixtureRequest,
    test_ca: TestCA,
    signature_certificate: x509.Certificate,
    authentication_certificate: x509.Certificate,
) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """(certificate, its CA certificate, the other CA certificate)."""
    if request.param is CertificateKind.SIGNATURE:
        return (
            signature_certificate,
            test_ca.signature.certificate,
            test_ca.authentication.certificate,
        )
    return (
        authentication_certificate,
        test_ca.authentication.certificate,
        test_ca.signature.certificate,
    )


def test_certificate_chains_to_its_own_ca_only(
    issued_pair: tuple[x509.Certificate, x509.Certificate, x509.Certificate],
) -> None:
    certificate, ca_certificate, other_ca = issued_pair
    certificate.verify_directly_issued_by(ca_certificate)
    with pytest.raises(ValueError):  # issuer name and signature do not match
        certificate.verify_directly_issued_by(other_ca)
    key_id = extension(certificate, AUTHORITY_KEY_ID)["extn_value"].parsed
    ca_tbs = parse(ca_certificate)["tbs_certificate"]
    assert key_id["key_identifier"].native == ca_tbs["subject_public_key_info"].sha1
    (issuer_name,) = key_id["authority_cert_issuer"]
    assert name_bytes(issuer_name.chosen) == name_bytes(ca_tbs["subject"])
    assert key_id["authority_cert_serial_number"].native == ca_certificate.serial_number
    assert parse(certificate)["signature_algorithm"]["algorithm"].native == "sha256_rsa"


def test_validity_ends_on_fifth_birthday_after_issuance(
    issued_pair: tuple[x509.Certificate, x509.Certificate, x509.Certificate],
) -> None:
    certificate = issued_pair[0]
    validity = parse(certificate)["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "utc_time"
    assert certificate.not_valid_before_utc == ISSUED.replace(microsecond=0)
    assert certificate.not_valid_after_utc == datetime.datetime(2029, 2, 17, 14, 59, 59, tzinfo=UTC)


def test_serials_are_four_byte_and_unique(
    signature_certificate: x509.Certificate, authentication_certificate: x509.Certificate
) -> None:
    serials = {signature_certificate.serial_number, authentication_certificate.serial_number}
    assert len(serials) == 2
    for serial in serials:
        assert profile.SERIAL_MIN <= serial <= profile.SERIAL_MAX


def test_policies_keep_signature_and_authentication_apart(
    signature_certificate: x509.Certificate, authentication_certificate: x509.Certificate
) -> None:
    assert policy_oids(signature_certificate) == ["1.2.392.200149.8.5.1.0.20"]
    assert policy_oids(authentication_certificate) == ["1.2.392.200149.8.5.1.3.30"]
    for certificate in (signature_certificate, authentication_certificate):
        (policy,) = extension(certificate, CERTIFICATE_POLICIES)["extn_value"].parsed
        (qualifier,) = policy["policy_qualifiers"]
        assert qualifier["policy_qualifier_id"].native == "certification_practice_statement"
        assert qualifier["qualifier"].native == "http://www.jpki.go.jp/cps.html"


# --- profile functions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "issued", "expected"),
    [
        # birthday later in the issuance year counts as the first
        (datetime.date(1980, 4, 2), datetime.datetime(2024, 4, 1, 3, tzinfo=UTC), "2028-04-02"),
        # a birthday on the issuance date does not count
        (datetime.date(1980, 4, 1), datetime.datetime(2024, 4, 1, 3, tzinfo=UTC), "2029-04-01"),
        # the date is the Japanese one: 15:30Z is already the birthday in Japan
        (
            datetime.date(1980, 2, 17),
            datetime.datetime(2024, 2, 16, 15, 30, tzinfo=UTC),
            "2029-02-17",
        ),
        (
            datetime.date(1980, 2, 17),
            datetime.datetime(2024, 2, 16, 14, 30, tzinfo=UTC),
            "2028-02-17",
        ),
        # February 29 birthdays fall on February 28 in common years, and stay in leap years
        (datetime.date(2000, 2, 29), datetime.datetime(2024, 3, 1, tzinfo=UTC), "2029-02-28"),
        (datetime.date(2000, 2, 29), datetime.datetime(2023, 3, 1, tzinfo=UTC), "2028-02-29"),
    ],
)
def test_expiry_for(birth: datetime.date, issued: datetime.datetime, expected: str) -> None:
    expiry = profile.expiry_for(make_holder(birth_date=birth), issued)
    assert expiry == datetime.datetime.fromisoformat(f"{expected}T14:59:59+00:00")


def test_feb_29_holder_certificate(test_ca: TestCA, card_key: rsa.RSAPrivateKey) -> None:
    certificate = profile.build_authentication_certificate(
        test_ca.authentication.certificate,
        test_ca.authentication.private_key,
        card_key.public_key(),
        make_holder(birth_date=datetime.date(2000, 2, 29)),
        serial=0x01000002,
        now=ISSUED,
    )
    assert certificate.not_valid_after_utc == datetime.datetime(2029, 2, 28, 14, 59, 59, tzinfo=UTC)


def test_expiry_needs_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        profile.expiry_for(make_holder(), datetime.datetime(2024, 4, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NAME_WITH_NON_JIS, ("山田\u3000〓男", "00010")),
        ("髙橋\u3000一郎", ("〓橋\u3000一郎", "10000")),
        ("丂", ("丂", "0")),  # JIS X 0212
        ("ｱｲ", ("〓〓", "11")),  # half-width kana is JIS X 0201
        ("Tokyo 1-2", ("Tokyo 1-2", "000000000")),
    ],
)
def test_substitute_unrepresentable(text: str, expected: tuple[str, str]) -> None:
    assert profile.substitute_unrepresentable(text) == expected


def test_window_id() -> None:
    assert profile.window_id("13113", 3) == "13113003A"
    with pytest.raises(ValueError):
        profile.window_id("1311", 3)


# --- durable state ---------------------------------------------------------------------------


def test_files_and_modes(test_ca: TestCA) -> None:
    directory = test_ca.directory
    for kind in CertificateKind:
        key_path = directory / f"{kind.value}-ca.key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        pem = (directory / f"{kind.value}-ca.pem").read_bytes()
        assert x509.load_pem_x509_certificate(pem) == test_ca.authority(kind).certificate
    for name in ("card-info-signer.key", "cvc-root.key", "cvc-issuer.key"):
        path = directory / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert test_ca.card_info_signer.key_size == 2048
    assert not [path for path in directory.iterdir() if path.name.endswith(".tmp")]


def test_state_records_issued_certificates(
    test_ca: TestCA,
    signature_certificate: x509.Certificate,
    authentication_certificate: x509.Certificate,
) -> None:
    # ca.json holds the settings; the record is in ca.sqlite
    state = json.loads((test_ca.directory / "ca.json").read_text(encoding="utf-8"))
    assert state == {
        "format": "jpki-emulator-ca",
        "version": 2,
        "ocsp_url": "http://127.0.0.1:8080/ocsp",
        "crl_url": None,
        "production_dn": False,
    }
    with contextlib.closing(sqlite3.connect(test_ca.directory / "ca.sqlite")) as database:
        (next_serial,) = database.execute("SELECT next_serial FROM ca").fetchone()
        rows = database.execute(
            "SELECT serial, kind, holder_name, label, not_after FROM issued"
        ).fetchall()
    assert next_serial == test_ca.next_serial
    entries = {serial: fields for serial, *fields in rows}
    assert entries[signature_certificate.serial_number] == [
        "signature",
        NAME_WITH_NON_JIS,
        "card-1",
        "2029-02-17T14:59:59+00:00",
    ]
    assert entries[authentication_certificate.serial_number][0] == "authentication"


def copy_ca(test_ca: TestCA, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(test_ca.directory, copy)
    return copy


def test_load_round_trip(
    test_ca: TestCA,
    card_key: rsa.RSAPrivateKey,
    signature_certificate: x509.Certificate,
    tmp_path: Path,
) -> None:
    loaded = TestCA.load(copy_ca(test_ca, tmp_path))
    for kind in CertificateKind:
        assert loaded.authority(kind).certificate == test_ca.authority(kind).certificate
        assert profile.key_matches(
            loaded.authority(kind).private_key, test_ca.authority(kind).certificate
        )
    assert loaded.card_info_signer.private_numbers() == test_ca.card_info_signer.private_numbers()
    # The CVCs are built from the keys: the same bytes from every load.
    assert loaded.cvc_root().encode() == test_ca.cvc_root().encode()
    assert loaded.cvc_issuer().encode() == test_ca.cvc_issuer().encode()
    assert loaded.municipality_cvc("13113") == test_ca.municipality_cvc("13113")
    assert loaded.issued == test_ca.issued
    assert loaded.next_serial == test_ca.next_serial
    found = loaded.find_issued(signature_certificate.serial_number)
    assert found is not None and found.kind is CertificateKind.SIGNATURE

    certificate = loaded.issue_authentication_certificate(make_holder(), card_key.public_key())
    assert certificate.serial_number == test_ca.next_serial
    reloaded = TestCA.load(loaded.directory)
    assert reloaded.next_serial == certificate.serial_number + 1
    assert reloaded.find_issued(certificate.serial_number) is not None


def test_create_refuses_to_overwrite(test_ca: TestCA) -> None:
    with pytest.raises(CAError, match="refusing to overwrite"):
        TestCA.create(test_ca.directory)


# --- the card-verifiable certificates ---------------------------------------------------------


def test_cvc_hierarchy(test_ca: TestCA) -> None:
    root, issuer = test_ca.cvc_root(), test_ca.cvc_issuer()
    assert (root.issuer, root.subject) == (KeyId("9000020", "001"), KeyId("9000020", "001"))
    assert root.signed_by(root.public_key)
    assert len(root.encode(bare=True)) == 563
    assert (issuer.issuer, issuer.subject) == (root.subject, KeyId("9000023", "001"))
    assert issuer.signed_by(root.public_key) and not issuer.signed_by(issuer.public_key)

    municipality = test_ca.municipality_cvc("13113")
    assert (municipality.issuer, municipality.subject) == (issuer.subject, KeyId("9131131", "000"))
    assert municipality.signed_by(issuer.public_key)
    assert not municipality.signed_by(root.public_key)
    signer = test_ca.card_info_signer.public_key()
    assert municipality.public_key.public_numbers() == signer.public_numbers()
    assert len(municipality.encode()) == 568
    assert test_ca.municipality_cvc("27100").subject == KeyId("9271001", "000")
    with pytest.raises(ValueError, match="5 digits"):
        test_ca.municipality_cvc("1311")


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Each file's bytes, mode, inode and modification time."""
    return {
        path.name: (path.read_bytes(), path.stat().st_mode, path.stat().st_ino,
                    path.stat().st_mtime_ns)
        for path in directory.iterdir()
    }  # fmt: skip


CVC_KEYS = ("cvc-root.key", "cvc-issuer.key")


def _copy_made_before_cvc_keys(directory: Path) -> None:
    """A copy of the fixture CA as a CA made before the CVC keys existed: without them."""
    shutil.copytree(CA_DIR, directory, ignore=shutil.ignore_patterns(*CVC_KEYS))


def test_an_older_ca_gets_its_cvc_keys_on_first_use(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    _copy_made_before_cvc_keys(directory)
    assert not any((directory / name).exists() for name in CVC_KEYS)
    before = _snapshot(directory)
    first, second = TestCA.load(directory), TestCA.load(directory)  # two processes
    assert _snapshot(directory) == before  # loading writes nothing

    root = first.cvc_root()
    after = _snapshot(directory)
    for name in CVC_KEYS:
        assert stat.S_IMODE(after.pop(name)[1]) == 0o600
    after.pop("ca.json.lock", None)  # the CA's lock, taken to make them
    assert after == before
    assert not [path for path in directory.iterdir() if path.name.endswith(".tmp")]

    # The other process finds them under the lock instead of making its own.
    assert second.cvc_root() == root
    assert second.cvc_issuer() == first.cvc_issuer()
    assert TestCA.load(directory).municipality_cvc("13113") == first.municipality_cvc("13113")


def test_a_missing_cvc_issuer_key_is_made_beside_the_root_key(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    shutil.copytree(CA_DIR, directory)
    root = TestCA.load(directory).cvc_root()
    (directory / "cvc-issuer.key").unlink()  # as if a first use was cut short
    loaded = TestCA.load(directory)
    assert loaded.cvc_root() == root
    assert loaded.cvc_issuer().signed_by(root.public_key)
    assert (directory / "cvc-issuer.key").exists()


def _write_state(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "ca.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    change(state)
    path.write_text(json.dumps(state), encoding="utf-8")


def _bad_json(directory: Path) -> None:
    (directory / "ca.json").write_text('{"format": "jpki-emulator-ca",', encoding="utf-8")


def _wrong_format(directory: Path) -> None:
    _write_state(directory, lambda state: state.update(format="something-else"))


def _wrong_version(directory: Path) -> None:
    _write_state(directory, lambda state: state.update(version=99))


def _bad_serial(directory: Path) -> None:
    _write_state(directory, lambda state: state.update(next_serial="not hex"))


def _missing_state(directory: Path) -> None:
    (directory / "ca.json").unlink()


def _garbage_key(directory: Path) -> None:
    (directory / "signature-ca.key").write_bytes(b"not a key")


def _swapped_keys(directory: Path) -> None:
    signature_key = (directory / "signature-ca.key").read_bytes()
    authentication_key = (directory / "authentication-ca.key").read_bytes()
    (directory / "signature-ca.key").write_bytes(authentication_key)
    (directory / "authentication-ca.key").write_bytes(signature_key)


def _missing_certificate(directory: Path) -> None:
    (directory / "authentication-ca.pem").unlink()


def _missing_card_info_signer(directory: Path) -> None:
    (directory / "card-info-signer.key").unlink()


def _garbage_card_info_signer(directory: Path) -> None:
    (directory / "card-info-signer.key").write_bytes(b"not a key")


def _garbage_cvc_issuer_key(directory: Path) -> None:
    (directory / "cvc-issuer.key").write_bytes(b"not a key")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_bad_json, r"ca\.json is not valid JSON"),
        (_wrong_format, r"not a jpki-emulator-ca file"),
        (_wrong_version, r"version 99"),
        (_bad_serial, r"ca\.json is corrupt"),
        (_missing_state, r"no test CA .*ca\.json is missing"),
        (_garbage_key, r"signature-ca\.key is not an unencrypted PEM private key"),
        (_swapped_keys, r"signature-ca\.key does not match"),
        (_missing_certificate, r"cannot read .*authentication-ca\.pem"),
        (_missing_card_info_signer, r"card-info-signer\.key is missing"),
        (_garbage_card_info_signer, r"card-info-signer\.key is not an unencrypted PEM"),
        (_garbage_cvc_issuer_key, r"cvc-issuer\.key is not an unencrypted PEM"),
    ],
)
def test_load_reports_damage_in_one_line(
    test_ca: TestCA, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    directory = copy_ca(test_ca, tmp_path)
    damage(directory)
    with pytest.raises(CAError, match=message) as caught:
        TestCA.load(directory)
    assert "\n" not in str(caught.value)


def test_two_processes_issuing_and_revoking_never_lose_each_others_changes(
    tmp_path: Path,
) -> None:
    """Two TestCA objects on one directory stand for two `jpki` processes."""
    directory = tmp_path / "ca"
    shutil.copytree(CA_DIR, directory)
    first, second = TestCA.load(directory), TestCA.load(directory)
    key = rsa.generate_private_key(65537, 2048).public_key()
    holder = Holder(
        "並行　処理", datetime.date(1990, 1, 1), Sex.MALE, "東京都渋谷区１番", "123456789018"
    )
    one = first.issue_authentication_certificate(holder, key)
    two = second.issue_authentication_certificate(holder, key)  # second never saw `one`
    assert one.serial_number != two.serial_number
    second.revoke(one.serial_number, RevocationReason.KEY_COMPROMISE)
    final = TestCA.load(directory)
    assert {one.serial_number, two.serial_number} <= {entry.serial for entry in final.issued}
    revoked = final.find_issued(one.serial_number)
    assert revoked is not None and revoked.revoked


def test_opening_the_record_sees_one_state_while_another_process_issues(
    test_ca: TestCA, card_key: rsa.RSAPrivateKey, holder: Holder, tmp_path: Path
) -> None:
    """The open-time check reads next_serial and the highest serial in one snapshot: a
    certificate committed by another process between those two reads is no corruption."""
    directory = copy_ca(test_ca, tmp_path)
    other = TestCA.load(directory)
    connect = ca_module._Database._connect
    issued = []

    def connect_and_interleave(database: Any) -> sqlite3.Connection:
        connection = connect(database)

        def between_reads(statement: str) -> None:
            if "max(serial)" in statement and not issued:
                issued.append(
                    other.issue_authentication_certificate(
                        holder, card_key.public_key(), now=ISSUED
                    )
                )

        connection.set_trace_callback(between_reads)
        return connection

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ca_module._Database, "_connect", connect_and_interleave)
        loaded = TestCA.load(directory)
        assert loaded.next_serial > 0  # the check ran, and another process issued meanwhile
    assert issued
    assert loaded.find_issued(issued[0].serial_number) is not None
