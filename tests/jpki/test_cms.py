"""Tests of CMS SignedData: round trips, the card as the signer, and OpenSSL in both directions."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from card_emulator.signing import SHA256_DIGEST_INFO_PREFIX, SignatureScheme, sign
from card_emulator.state.store import read_image
from card_emulator.transports.memory import VirtualCard
from jpki import cms
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder, Sex
from tests.conftest import CA_DIR, CARDS, SIGN_PIN

UTC = datetime.UTC
JST = datetime.timezone(datetime.timedelta(hours=9))
SIGNING_TIME = datetime.datetime(2030, 4, 1, 3, 0, 0, tzinfo=UTC)
DATA = b"%PDF-1.7 application to the land registry\r\n\x00\xff binary, not text\n"
TAMPERED = DATA.replace(b"land", b"sand")  # same length, so it can replace DATA inside a p7s
MY_NUMBER = "123456789018"

SELECT_JPKI_AP = bytes.fromhex("00A4040C0AD392F000260100000001")
VERIFY_SIGNATURE_PIN = bytes.fromhex("0020009B") + bytes([len(SIGN_PIN)]) + SIGN_PIN
# P1 00: PKCS#1 v1.5 padding of the bytes as sent; P2 9A: the signature key, short EF id 1A
SIGN_WITH_SIGNATURE_KEY = bytes.fromhex("802A009A")
LE_MAXIMUM = b"\x00"
SW_OK = b"\x90\x00"
SIGNATURE_CERTIFICATE_EF = 0x0001
SIGNATURE_CA_PEM = CA_DIR / "signature-ca.pem"

UTC_TIME_TAG = 0x17
GENERALIZED_TIME_TAG = 0x18
SET_TAG = 0x31
SHA256_ABSENT_PARAMETERS = bytes.fromhex("300b0609608648016503040201")
RSA_ENCRYPTION_NULL = bytes.fromhex("300d06092a864886f70d0101010500")
MUTATION_STRIDE = 7  # every 7th byte: all structure levels get hit, and the test stays quick

OPENSSL = shutil.which("openssl")
LIBC = ctypes.CDLL(None)
LIBC.time.restype = ctypes.c_long
LIBC.time.argtypes = [ctypes.c_void_p]


def fixture_valid_at() -> datetime.datetime:
    """A day after the fixture card was issued: its certificates and the fixture CA are valid.

    Checks of fixture material use this moment, never the wall clock: the committed certificates
    expire (and regenerating them moves their validity), while the tests must pass on any date.
    """
    der = read_image(CARDS / "taro.json").contents("jpki").files[SIGNATURE_CERTIFICATE_EF]
    return x509.load_der_x509_certificate(der).not_valid_before_utc + datetime.timedelta(days=1)


VALID_AT = fixture_valid_at()


# Material: one throwaway key with a certificate from a copy of the test CA, and the fixture card


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    directory = tmp_path_factory.mktemp("cms") / "ca"
    shutil.copytree(CA_DIR, directory)
    return TestCA.load(directory)


@pytest.fixture(scope="module")
def certificate(ca: TestCA, key: rsa.RSAPrivateKey) -> x509.Certificate:
    holder = Holder(
        name="番号\u3000花子",
        birth_date=datetime.date(1985, 6, 1),
        sex=Sex.FEMALE,
        address="東京都渋谷区神南一丁目１９番１１号",
        my_number=MY_NUMBER,
    )
    # Issued when the fixture CA is valid, so the material is the same whatever today's date is.
    return ca.issue_signature_certificate(holder, key.public_key(), now=VALID_AT)


@pytest.fixture(scope="module")
def key_signer(key: rsa.RSAPrivateKey) -> cms.Signer:
    """The card's own PKCS#1 v1.5 operation, on the throwaway key."""

    def signer(digest_info: bytes) -> bytes:
        return sign(key, SignatureScheme.PKCS1_RAW, digest_info)

    return signer


@pytest.fixture(scope="module")
def card() -> VirtualCard:
    card = VirtualCard.in_memory(CARDS / "taro.json")
    assert card.transmit(SELECT_JPKI_AP) == SW_OK
    assert card.transmit(VERIFY_SIGNATURE_PIN) == SW_OK
    return card


@pytest.fixture(scope="module")
def card_signer(card: VirtualCard) -> cms.Signer:
    """What a host does: COMPUTE DIGITAL SIGNATURE with the DigestInfo, the signature back."""

    def signer(digest_info: bytes) -> bytes:
        command = SIGN_WITH_SIGNATURE_KEY + bytes([len(digest_info)]) + digest_info + LE_MAXIMUM
        response = card.transmit(command)
        assert response[-2:] == SW_OK, response.hex()
        return response[:-2]

    return signer


@pytest.fixture(scope="module")
def card_certificate(card: VirtualCard) -> x509.Certificate:
    return x509.load_der_x509_certificate(
        card.image.contents("jpki").files[SIGNATURE_CERTIFICATE_EF]
    )


@pytest.fixture(scope="module")
def p7s(certificate: x509.Certificate, key_signer: cms.Signer) -> bytes:
    return cms.sign_detached(DATA, certificate, key_signer, signing_time=SIGNING_TIME)


def rewrite(p7s: bytes, change: Callable[[asn1_cms.SignedData], None]) -> bytes:
    """`p7s` with its SignedData changed in place by `change`, re-encoded."""
    content_info = asn1_cms.ContentInfo.load(p7s)
    change(content_info["content"])
    return bytes(content_info.dump(force=True))


def signer_info(p7s: bytes) -> asn1_cms.SignerInfo:
    return asn1_cms.ContentInfo.load(p7s)["content"]["signer_infos"][0]


def fails(p7s: bytes, data: bytes | None) -> str:
    with pytest.raises(cms.CmsError) as caught:
        cms.verify_signed_data(p7s, data)
    assert str(caught.value) == caught.value.reason
    assert "\n" not in caught.value.reason
    return caught.value.reason


# Building and reading back


def test_digest_info_is_what_the_card_prefixes() -> None:
    digest = hashlib.sha256(DATA).digest()
    assert cms.digest_info_sha256(digest) == SHA256_DIGEST_INFO_PREFIX + digest
    with pytest.raises(ValueError, match="32 bytes"):
        cms.digest_info_sha256(digest[:-1])


def test_detached_round_trip(p7s: bytes, certificate: x509.Certificate) -> None:
    document = cms.verify_signed_data(p7s, DATA)
    assert document.certificate == certificate
    assert document.certificates == (certificate,)
    assert document.signing_time == SIGNING_TIME
    assert document.digest_algorithm == "sha256"


def test_detached_signature_needs_the_file(p7s: bytes) -> None:
    assert fails(p7s, None) == "detached signature: the signed file is needed"


def test_attached_round_trip(certificate: x509.Certificate, key_signer: cms.Signer) -> None:
    p7s = cms.sign_detached(DATA, certificate, key_signer, detached=False)
    assert cms.verify_signed_data(p7s, None).certificate == certificate
    assert cms.verify_signed_data(p7s, DATA).certificate == certificate
    assert fails(p7s, TAMPERED) == cms.CONTENT_DIFFERS
    assert fails(p7s.replace(DATA, TAMPERED), None) == cms.DIGEST_DIFFERS


def test_structure_is_der_signed_data_as_specified(
    p7s: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    content_info = asn1_cms.ContentInfo.load(p7s)
    assert content_info.dump(force=True) == p7s  # re-encoding as DER changes nothing
    assert content_info["content_type"].native == "signed_data"
    signed_data = content_info["content"]
    assert signed_data["version"].native == "v1"
    assert [a.dump() for a in signed_data["digest_algorithms"]] == [SHA256_ABSENT_PARAMETERS]
    assert signed_data["encap_content_info"]["content_type"].native == "data"
    assert isinstance(signed_data["encap_content_info"]["content"], asn1_core.Void)
    certificates = [choice.chosen.dump() for choice in signed_data["certificates"]]
    assert certificates == [certificate.public_bytes(serialization.Encoding.DER)]

    info = signed_data["signer_infos"][0]
    assert len(signed_data["signer_infos"]) == 1
    assert info["version"].native == "v1"
    assert info["sid"].name == "issuer_and_serial_number"
    assert info["sid"].chosen["serial_number"].native == certificate.serial_number
    assert info["digest_algorithm"].dump() == SHA256_ABSENT_PARAMETERS
    assert info["signature_algorithm"].dump() == RSA_ENCRYPTION_NULL

    attributes = info["signed_attrs"]
    assert [a["type"].native for a in attributes] == [
        "content_type",
        "signing_time",
        "message_digest",
    ]  # this is also their DER order, shortest encoding first
    encodings = [a.dump() for a in attributes]
    assert encodings == sorted(encodings)
    values = {a["type"].native: a["values"] for a in attributes}
    assert values["content_type"][0].native == "data"
    assert values["message_digest"][0].native == hashlib.sha256(DATA).digest()
    assert values["signing_time"][0].chosen.tag == UTC_TIME_TAG

    # independently of the module: the signature covers the attributes re-tagged as a SET
    as_set = bytes([SET_TAG]) + attributes.dump()[1:]
    key.public_key().verify(info["signature"].native, as_set, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize(
    ("when", "tag", "expected"),
    [
        (datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), UTC_TIME_TAG, None),
        (datetime.datetime(1950, 1, 1, tzinfo=UTC), UTC_TIME_TAG, None),
        (datetime.datetime(2050, 1, 1, tzinfo=UTC), GENERALIZED_TIME_TAG, None),
        (datetime.datetime(1949, 12, 31, tzinfo=UTC), GENERALIZED_TIME_TAG, None),
        (  # fractions of a second are dropped, other zones converted to UTC
            datetime.datetime(2030, 1, 1, 9, 0, 0, 500000, tzinfo=JST),
            UTC_TIME_TAG,
            datetime.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC),
        ),
    ],
)
def test_signing_time_encoding(
    certificate: x509.Certificate,
    key_signer: cms.Signer,
    when: datetime.datetime,
    tag: int,
    expected: datetime.datetime | None,
) -> None:
    p7s = cms.sign_detached(DATA, certificate, key_signer, signing_time=when)
    attributes = {a["type"].native: a["values"] for a in signer_info(p7s)["signed_attrs"]}
    assert attributes["signing_time"][0].chosen.tag == tag
    assert cms.verify_signed_data(p7s, DATA).signing_time == (expected or when)


def test_signing_time_defaults_to_now(
    certificate: x509.Certificate, key_signer: cms.Signer
) -> None:
    before = datetime.datetime.now(UTC).replace(microsecond=0)
    signing_time = cms.verify_signed_data(
        cms.sign_detached(DATA, certificate, key_signer), DATA
    ).signing_time
    assert signing_time is not None
    assert before <= signing_time <= datetime.datetime.now(UTC)


def test_naive_signing_time_is_refused(
    certificate: x509.Certificate, key_signer: cms.Signer
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cms.sign_detached(DATA, certificate, key_signer, signing_time=datetime.datetime(2030, 1, 1))


def test_chain_is_embedded_once(
    ca: TestCA, certificate: x509.Certificate, key_signer: cms.Signer
) -> None:
    ca_certificate = ca.signature.certificate
    p7s = cms.sign_detached(
        DATA, certificate, key_signer, include_chain=[ca_certificate, certificate]
    )
    document = cms.verify_signed_data(p7s, DATA)
    assert document.certificate == certificate
    assert sorted(c.serial_number for c in document.certificates) == sorted(
        [certificate.serial_number, ca_certificate.serial_number]
    )


def test_signer_of_another_card_is_refused(
    certificate: x509.Certificate, card_signer: cms.Signer
) -> None:
    with pytest.raises(cms.CmsError, match="does not verify with the certificate"):
        cms.sign_detached(DATA, certificate, card_signer)


# The card as the signer, checked by OpenSSL


def openssl(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *map(str, arguments)], capture_output=True, text=True, check=False
    )


def openssl_cms_verify(
    data_file: Path | None, p7s_file: Path, out_file: Path
) -> subprocess.CompletedProcess[str]:
    """`openssl cms -verify` against the pinned sign CA, checking certificates at VALID_AT."""
    content: list[str | Path] = ["-content", data_file] if data_file is not None else []
    return openssl(
        "cms", "-verify", "-binary", "-inform", "DER", *content, "-in", p7s_file,
        "-CAfile", SIGNATURE_CA_PEM, "-purpose", "any", "-attime", str(int(VALID_AT.timestamp())),
        "-out", out_file,
    )  # fmt: skip


@pytest.mark.openssl
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "attached"])
def test_openssl_verifies_what_the_card_signed(
    tmp_path: Path,
    card_signer: cms.Signer,
    card_certificate: x509.Certificate,
    detached: bool,
) -> None:
    data_file, p7s_file, out_file = tmp_path / "data", tmp_path / "data.p7s", tmp_path / "out"
    data_file.write_bytes(DATA)
    p7s = cms.sign_detached(DATA, card_certificate, card_signer, detached=detached)
    p7s_file.write_bytes(p7s)
    result = openssl_cms_verify(data_file if detached else None, p7s_file, out_file)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    assert out_file.read_bytes() == DATA
    assert cms.verify_signed_data(p7s, DATA).certificate == card_certificate


@pytest.mark.openssl
def test_openssl_rejects_the_card_signature_on_other_data(
    tmp_path: Path, card_signer: cms.Signer, card_certificate: x509.Certificate
) -> None:
    data_file, p7s_file = tmp_path / "data", tmp_path / "data.p7s"
    data_file.write_bytes(TAMPERED)
    p7s_file.write_bytes(cms.sign_detached(DATA, card_certificate, card_signer))
    result = openssl_cms_verify(data_file, p7s_file, tmp_path / "out")
    assert result.returncode != 0
    # refused for the data, not for the certificate (which openssl checks first)
    assert "content verify error" in result.stderr, result.stderr
    assert "certificate verify error" not in result.stderr


# OpenSSL as the signer, checked by verify_signed_data


@pytest.fixture(scope="module")
def openssl_files(
    tmp_path_factory: pytest.TempPathFactory, key: rsa.RSAPrivateKey, certificate: x509.Certificate
) -> Path:
    directory = tmp_path_factory.mktemp("openssl")
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "data").write_bytes(DATA)
    return directory


def openssl_clock() -> datetime.datetime:
    """Now, by the clock openssl puts in signingTime: time(2), in whole seconds.

    Not datetime.now(): on Linux time(2) reads the kernel's coarse clock, which moves on once a
    timer tick, so for the first milliseconds of each second it still says the previous second
    while clock_gettime(CLOCK_REALTIME) already says the new one. A `before` taken with
    datetime.now() can therefore be a second later than the signingTime openssl writes after it.
    """
    return datetime.datetime.fromtimestamp(LIBC.time(None), UTC)


def openssl_sign(directory: Path, *options: str, md: str = "sha256", outform: str = "DER") -> bytes:
    output = directory / "data.p7s"
    result = openssl(
        "cms", "-sign", "-binary", "-md", md, "-signer", directory / "cert.pem",
        "-inkey", directory / "key.pem", "-outform", outform, *options,
        "-in", directory / "data", "-out", output,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return output.read_bytes()


@pytest.mark.openssl
@pytest.mark.parametrize(
    ("options", "md", "outform"),
    [
        ((), "sha256", "DER"),
        (("-keyid",), "sha256", "DER"),
        (("-nodetach",), "sha256", "DER"),
        (("-keyopt", "rsa_padding_mode:pss"), "sha256", "DER"),
        (("-nodetach", "-stream"), "sha256", "DER"),  # BER, indefinite lengths
        ((), "sha512", "DER"),
        ((), "sha1", "DER"),
        ((), "sha256", "PEM"),
        (("-noattr",), "sha256", "DER"),
    ],
    ids=["detached", "keyid", "nodetach", "pss", "stream", "sha512", "sha1", "pem", "noattr"],
)
def test_verifies_what_openssl_signed(
    openssl_files: Path,
    certificate: x509.Certificate,
    options: tuple[str, ...],
    md: str,
    outform: str,
) -> None:
    before = openssl_clock()
    p7s = openssl_sign(openssl_files, *options, md=md, outform=outform)
    attached = "-nodetach" in options
    document = cms.verify_signed_data(p7s, None if attached else DATA)
    assert document.certificate == certificate
    assert document.certificates == (certificate,)
    assert document.digest_algorithm == md
    if "-noattr" in options:
        assert document.signing_time is None
    else:
        assert document.signing_time is not None
        assert before <= document.signing_time <= datetime.datetime.now(UTC)

    if outform == "PEM":
        assert p7s.startswith(b"-----BEGIN CMS-----")
        p7s = pem_to_der(p7s)
    info = signer_info(p7s)
    if "-keyid" in options:
        assert info["sid"].name == "subject_key_identifier"
    if "-keyopt" in options:
        assert info["signature_algorithm"]["algorithm"].native == "rsassa_pss"

    expected = cms.BAD_SIGNATURE if "-noattr" in options else cms.DIGEST_DIFFERS
    if attached:
        assert fails(p7s.replace(DATA, TAMPERED), None) == expected
    else:
        assert fails(p7s, TAMPERED) == expected


def pem_to_der(text: bytes) -> bytes:
    return bytes(pem.unarmor(text)[2])


# Failures, one cause each


def test_flipped_signature_byte(p7s: bytes) -> None:
    def flip(signed_data: asn1_cms.SignedData) -> None:
        info = signed_data["signer_infos"][0]
        signature = bytearray(info["signature"].native)
        signature[len(signature) // 2] ^= 0x01
        info["signature"] = bytes(signature)

    assert (
        fails(rewrite(p7s, flip), DATA) == "signature does not verify with the signer's certificate"
    )


def test_rewrite_helper_changes_nothing_by_itself(p7s: bytes) -> None:
    assert rewrite(p7s, lambda signed_data: None) == p7s


def test_other_certificate_embedded(p7s: bytes, card_certificate: x509.Certificate) -> None:
    other = asn1_x509.Certificate.load(card_certificate.public_bytes(serialization.Encoding.DER))

    def swap(signed_data: asn1_cms.SignedData) -> None:
        signed_data["certificates"] = [asn1_cms.CertificateChoices(name="certificate", value=other)]

    assert fails(rewrite(p7s, swap), DATA) == "signer certificate not included"


def test_certificate_with_the_same_issuer_and_serial_but_another_key(
    p7s: bytes, certificate: x509.Certificate, card_certificate: x509.Certificate
) -> None:
    forged = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    other = asn1_x509.Certificate.load(card_certificate.public_bytes(serialization.Encoding.DER))
    forged["tbs_certificate"]["subject_public_key_info"] = other.public_key

    def swap(signed_data: asn1_cms.SignedData) -> None:
        signed_data["certificates"] = [
            asn1_cms.CertificateChoices(name="certificate", value=forged)
        ]

    assert fails(rewrite(p7s, swap), DATA) == cms.BAD_SIGNATURE


def test_sha256_with_rsa_encryption_is_accepted_and_must_agree(p7s: bytes) -> None:
    def algorithm(name: str) -> Callable[[asn1_cms.SignedData], None]:
        def change(signed_data: asn1_cms.SignedData) -> None:
            signed_data["signer_infos"][0]["signature_algorithm"] = {"algorithm": name}

        return change

    assert cms.verify_signed_data(rewrite(p7s, algorithm("sha256_rsa")), DATA).digest_algorithm
    assert fails(rewrite(p7s, algorithm("sha512_rsa")), DATA) == cms.ALGORITHMS_DISAGREE
    assert fails(rewrite(p7s, algorithm("sha256_ecdsa")), DATA) == (
        "unsupported signature algorithm: sha256_ecdsa"
    )


def test_unsupported_digest_algorithm(p7s: bytes) -> None:
    def md5(signed_data: asn1_cms.SignedData) -> None:
        signed_data["signer_infos"][0]["digest_algorithm"] = {"algorithm": "md5"}

    assert fails(rewrite(p7s, md5), DATA) == "unsupported digest algorithm: md5"


def test_content_type_attribute_must_be_data(p7s: bytes) -> None:
    def change(signed_data: asn1_cms.SignedData) -> None:
        for attribute in signed_data["signer_infos"][0]["signed_attrs"]:
            if attribute["type"].native == "content_type":
                attribute["values"] = ["signed_data"]

    assert fails(rewrite(p7s, change), DATA) == cms.NOT_DATA


def test_more_than_one_signer(p7s: bytes) -> None:
    def double(signed_data: asn1_cms.SignedData) -> None:
        info = signed_data["signer_infos"][0]
        signed_data["signer_infos"] = [info, info.copy()]

    assert fails(rewrite(p7s, double), DATA) == "more than one signer is not supported"


def test_no_signer(p7s: bytes) -> None:
    def remove(signed_data: asn1_cms.SignedData) -> None:
        signed_data["signer_infos"] = []

    assert fails(rewrite(p7s, remove), DATA) == cms.NO_SIGNER


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"garbage",
        bytes(range(256)),
        b"\x30\x80",
        b"-----BEGIN CMS-----\nnot base64\n-----END CMS-----\n",
        asn1_cms.ContentInfo({"content_type": "data", "content": DATA}).dump(),
    ],
    ids=["empty", "text", "bytes", "truncated-ber", "bad-pem", "data-content-info"],
)
def test_garbage_is_not_signed_data(garbage: bytes) -> None:
    assert fails(garbage, DATA) == "not a CMS SignedData structure"


def test_certificate_is_not_signed_data(certificate: x509.Certificate) -> None:
    assert fails(certificate.public_bytes(serialization.Encoding.DER), DATA) == cms.NOT_SIGNED_DATA
    assert fails(certificate.public_bytes(serialization.Encoding.PEM), DATA) == cms.NOT_SIGNED_DATA


def test_truncated_and_mutated_input_raises_only_cms_error(p7s: bytes) -> None:
    for end in range(0, len(p7s), MUTATION_STRIDE):
        assert fails(p7s[:end], DATA)
    for position in range(0, len(p7s), MUTATION_STRIDE):
        mutated = bytearray(p7s)
        mutated[position] ^= 0xFF
        # any readable reason will do; bytes inside the certificate may change unnoticed
        with contextlib.suppress(cms.CmsError):
            cms.verify_signed_data(bytes(mutated), DATA)
