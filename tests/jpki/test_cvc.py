"""Tests of card-verifiable certificates and key ids, checked on their bytes (spec §4, §5, §7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki import cvc
from jpki.cvc import CardVerifiableCertificate, CvcError, KeyId

ROOT_ID = KeyId("9000020", "001")
ISSUER_ID = KeyId("9000023", "001")
TEST_CARD_SUBJECT = bytes.fromhex("31333232313231080530303000000000")  # 1322121/000


@pytest.fixture(scope="module")
def root_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def subject_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certificate(
    root_key: rsa.RSAPrivateKey, subject_key: rsa.RSAPrivateKey
) -> CardVerifiableCertificate:
    return cvc.issue(subject_key.public_key(), ISSUER_ID, root_key, ROOT_ID)


# --- key ids ---------------------------------------------------------------------------------


def test_key_id_bytes_and_text() -> None:
    key_id = KeyId.parse(TEST_CARD_SUBJECT)
    assert key_id == KeyId("1322121", "000")
    assert str(key_id) == "1322121/000"
    assert key_id.encode() == TEST_CARD_SUBJECT
    assert KeyId.from_text("9000020/001").encode() == b"9000020\x08\x05001\x00\x00\x00\x00"


def test_key_id_keeps_a_tail_that_is_not_zero() -> None:
    raw = b"6000020\x08\x05001\x00\x00\x00\xa8"  # the MF-level CA ids of real cards
    key_id = KeyId.parse(raw)
    assert str(key_id) == "6000020/001"
    assert key_id.encode() == raw
    assert key_id != KeyId("6000020", "001")


@pytest.mark.parametrize(
    "raw",
    [
        TEST_CARD_SUBJECT[:15],  # short
        TEST_CARD_SUBJECT + b"\x00",  # long
        TEST_CARD_SUBJECT[:7] + b"\x08\x06" + TEST_CARD_SUBJECT[9:],  # separator
        b"13221a1" + TEST_CARD_SUBJECT[7:],  # not a digit
        "１３２２１２１".encode()[:7] + TEST_CARD_SUBJECT[7:],  # not ASCII
        TEST_CARD_SUBJECT[:9] + b"0 0" + TEST_CARD_SUBJECT[12:],
    ],
)
def test_malformed_key_ids_are_refused(raw: bytes) -> None:
    with pytest.raises(CvcError, match="not a key id"):
        KeyId.parse(raw)


@pytest.mark.parametrize("text", ["900002/001", "9000020/01", "9000020-001", "９000020/001", ""])
def test_malformed_key_id_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        KeyId.from_text(text)


def test_key_id_fields_are_checked() -> None:
    with pytest.raises(ValueError):
        KeyId("90000201", "001")
    with pytest.raises(ValueError):
        KeyId("9000020", "001", b"\x00")


# --- public keys and certificates ------------------------------------------------------------


def test_public_key_form(subject_key: rsa.RSAPrivateKey) -> None:
    encoded = cvc.encode_public_key(subject_key.public_key())
    assert len(encoded) == 265
    assert encoded[:9] == bytes.fromhex("900301000191820100")
    assert int.from_bytes(encoded[9:], "big") == subject_key.public_key().public_numbers().n
    parsed = cvc.parse_public_key(encoded)
    assert parsed.public_numbers() == subject_key.public_key().public_numbers()
    with pytest.raises(CvcError):
        cvc.parse_public_key(encoded[:-1])


def test_public_key_must_be_rsa_2048() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError):
        cvc.encode_public_key(small.public_key())


def test_wrapped_and_bare_layout(
    certificate: CardVerifiableCertificate, root_key: rsa.RSAPrivateKey
) -> None:
    wrapped = certificate.encode()
    bare = certificate.encode(bare=True)
    assert len(wrapped) == 568 and wrapped[:5] == bytes.fromhex("7F21820233")
    assert len(bare) == 563 and wrapped[5:] == bare
    assert bare[:5] == bytes.fromhex("5F4E820129")
    body = bare[5:302]
    assert body == certificate.body
    assert body[:16] == ROOT_ID.encode() and body[16:32] == ISSUER_ID.encode()
    assert bare[302:307] == bytes.fromhex("5F37820100")
    # The signature is PKCS#1 v1.5 SHA-256 over the 297-byte body, not the 5F4E TLV.
    root_key.public_key().verify(bare[307:], body, padding.PKCS1v15(), hashes.SHA256())


def test_parse_round_trip(certificate: CardVerifiableCertificate) -> None:
    for data in (certificate.encode(), certificate.encode(bare=True)):
        parsed = CardVerifiableCertificate.parse(data)
        assert (parsed.issuer, parsed.subject) == (ROOT_ID, ISSUER_ID)
        assert parsed.encode() == certificate.encode()
        assert parsed.public_key.public_numbers() == certificate.public_key.public_numbers()
    # Filler after the certificate, as a whole EF read gives, is allowed.
    assert CardVerifiableCertificate.parse(certificate.encode() + b"\xff" * 8).body == (
        certificate.body
    )
    assert CardVerifiableCertificate.parse(certificate.encode(bare=True) + b"\xff").body == (
        certificate.body
    )


def test_signed_by_the_issuer_key_only(
    certificate: CardVerifiableCertificate,
    root_key: rsa.RSAPrivateKey,
    subject_key: rsa.RSAPrivateKey,
) -> None:
    assert certificate.signed_by(root_key.public_key())
    assert not certificate.signed_by(subject_key.public_key())


def test_self_signed_root(root_key: rsa.RSAPrivateKey) -> None:
    root = cvc.issue(root_key.public_key(), ROOT_ID, root_key, ROOT_ID)
    assert root.issuer == root.subject == ROOT_ID
    assert root.signed_by(root.public_key)
    # PKCS#1 v1.5 is deterministic: the same keys give the same bytes.
    assert cvc.issue(root_key.public_key(), ROOT_ID, root_key, ROOT_ID) == root


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data + b"\x00", "bytes after"),
        (lambda data: data[:-1], "not a card-verifiable certificate"),
        (lambda data: data[:5] + b"\x5f\x4f" + data[7:], "expected tag 5f4e"),
        (lambda data: data[:42] + b"\x92" + data[43:], "not a public key"),  # 90 → 92
        (lambda data: data[:5] + data[5:21] + b"X" + data[22:], "not a key id"),
    ],
)
def test_malformed_certificates_are_refused(
    certificate: CardVerifiableCertificate, damage: Callable[[bytes], bytes], message: str
) -> None:
    with pytest.raises(CvcError, match=message):
        CardVerifiableCertificate.parse(damage(certificate.encode()))
