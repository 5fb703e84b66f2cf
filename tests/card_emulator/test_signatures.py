"""COMPUTE DIGITAL SIGNATURE: every P1 scheme verifies against the card's own certificate."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from card_emulator.signing import SHA256_DIGEST_INFO_PREFIX
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import JpkiFile
from tests.conftest import AUTH_PIN, SIGN_PIN, CardFactory

SHA1_DIGEST_INFO_PREFIX = bytes.fromhex("3021300906052b0e03021a05000414")
MESSAGE = b"The quick brown fox jumps over the lazy dog"
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def unlocked(card: VirtualCard) -> VirtualCard:
    for apdu in ("00A4040C0AD392F000260100000001",):
        assert card.transmit(bytes.fromhex(apdu)) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0020009804") + AUTH_PIN) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0020009B06") + SIGN_PIN) == b"\x90\x00"
    return card


def sign(card: VirtualCard, p1: int, data: bytes, p2: int = 0x97) -> bytes:
    command = bytes([0x80, 0x2A, p1, p2, len(data)]) + data + b"\x00"
    response = card.transmit(command)
    assert response[-2:] == b"\x90\x00", response[-2:].hex()
    assert len(response) == 258
    return response[:-2]


def public_key(card: VirtualCard, fid: int) -> rsa.RSAPublicKey:
    certificate = x509.load_der_x509_certificate(card.image.contents("jpki").files[fid])
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture
def ready(make_card: CardFactory) -> VirtualCard:
    return unlocked(make_card())


@pytest.mark.parametrize(
    ("p2", "certificate"),
    [(0x97, JpkiFile.AUTHENTICATION_CERTIFICATE), (0x9A, JpkiFile.SIGNATURE_CERTIFICATE)],
)
def test_p1_00_sha256_digest_info_is_pkcs1_v15(
    ready: VirtualCard, p2: int, certificate: int
) -> None:
    digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(MESSAGE).digest()
    signature = sign(ready, 0x00, digest_info, p2)
    public_key(ready, certificate).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert sign(ready, 0x00, digest_info, p2) == signature  # deterministic


def test_p1_00_pads_whatever_bytes_it_gets(ready: VirtualCard) -> None:
    key = public_key(ready, JpkiFile.AUTHENTICATION_CERTIFICATE)
    sha1_info = SHA1_DIGEST_INFO_PREFIX + hashlib.sha1(MESSAGE).digest()
    key.verify(sign(ready, 0x00, sha1_info), MESSAGE, padding.PKCS1v15(), hashes.SHA1())
    nonce = bytes(range(7, 47))
    recovered = key.recover_data_from_signature(sign(ready, 0x00, nonce), padding.PKCS1v15(), None)
    assert recovered == nonce


def test_p1_01_signs_the_bare_sha256(ready: VirtualCard) -> None:
    key = public_key(ready, JpkiFile.AUTHENTICATION_CERTIFICATE)
    recovered = key.recover_data_from_signature(
        sign(ready, 0x01, MESSAGE), padding.PKCS1v15(), None
    )
    assert recovered == hashlib.sha256(MESSAGE).digest()


def test_p1_02_and_03_wrap_sha256_in_a_digest_info(ready: VirtualCard) -> None:
    key = public_key(ready, JpkiFile.AUTHENTICATION_CERTIFICATE)
    digest = hashlib.sha256(MESSAGE).digest()
    from_hash = sign(ready, 0x02, digest)
    key.verify(from_hash, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert sign(ready, 0x03, MESSAGE) == from_hash


def test_p1_04_and_05_are_pss(ready: VirtualCard) -> None:
    key = public_key(ready, JpkiFile.AUTHENTICATION_CERTIFICATE)
    digest = hashlib.sha256(MESSAGE).digest()
    key.verify(sign(ready, 0x04, digest), digest, PSS, utils.Prehashed(hashes.SHA256()))
    key.verify(sign(ready, 0x05, MESSAGE), MESSAGE, PSS, hashes.SHA256())


@pytest.mark.openssl
def test_openssl_verifies_a_card_signature_made_with_the_current_key_ef(
    ready: VirtualCard, tmp_path: Path
) -> None:
    """`80 2A 00 80` over a SHA-256 DigestInfo, with the key EF selected, as OpenSC does."""
    data = tmp_path / "data.txt"
    data.write_bytes(MESSAGE)
    assert ready.transmit(bytes.fromhex("00A4020C020017")) == b"\x90\x00"
    digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(MESSAGE).digest()
    (tmp_path / "sig").write_bytes(sign(ready, 0x00, digest_info, p2=0x80))
    der = ready.image.contents("jpki").files[JpkiFile.AUTHENTICATION_CERTIFICATE]
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    pubkey = subprocess.run(
        ["openssl", "x509", "-in", tmp_path / "cert.pem", "-noout", "-pubkey"],
        check=True,
        capture_output=True,
    ).stdout
    (tmp_path / "pub.pem").write_bytes(pubkey)
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            tmp_path / "pub.pem",
            "-signature",
            tmp_path / "sig",
            data,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Verified OK" in result.stdout


@pytest.mark.openssl
def test_openssl_shows_the_certificate_read_from_the_card_with_profile_extensions_in_order(
    ready: VirtualCard, tmp_path: Path
) -> None:
    assert ready.transmit(bytes.fromhex("00A4020C020001")) == b"\x90\x00"
    response = ready.transmit(bytes.fromhex("00B00000000000"))
    assert response[-2:] == b"\x90\x00"
    (tmp_path / "sign.der").write_bytes(response[:-2])
    text = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", tmp_path / "sign.der", "-noout", "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    order = [
        "X509v3 Key Usage: critical",
        "X509v3 Subject Alternative Name",
        "X509v3 Certificate Policies: critical",
        "X509v3 Issuer Alternative Name",
        "X509v3 CRL Distribution Points",
        "X509v3 Authority Key Identifier",
        "X509v3 Subject Key Identifier",
    ]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    assert "Digital Signature, Non Repudiation" in text
