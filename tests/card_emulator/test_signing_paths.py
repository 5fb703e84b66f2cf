"""Signatures through OpenSSL and through the card's own blinded padding give the same bytes."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from card_emulator.signing import (
    DIGEST_INFO_PREFIXES,
    PKCS1_SCHEMES,
    SHA256_DIGEST_INFO_PREFIX,
    SignatureScheme,
    blinded_type1,
    digest_info_hash,
    openssl_type1,
    pkcs1_payload,
    sign,
)
from card_emulator.state.store import read_image
from card_emulator.vocabulary.identifiers import JpkiFile
from tests.conftest import CARDS

MESSAGE = b"The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return read_image(CARDS / "taro.json").contents("jpki").keys[JpkiFile.AUTHENTICATION_KEY]


DIGEST = hashlib.sha256(MESSAGE).digest()
# What a client sends under each PKCS#1 v1.5 P1 (P1=00 with the DigestInfo OpenSC sends).
DATA = {
    SignatureScheme.PKCS1_RAW: SHA256_DIGEST_INFO_PREFIX + DIGEST,
    SignatureScheme.SHA256_BARE: MESSAGE,
    SignatureScheme.PKCS1_SHA256_HASH: DIGEST,
    SignatureScheme.PKCS1_SHA256_MESSAGE: MESSAGE,
}


@pytest.mark.parametrize("scheme", sorted(PKCS1_SCHEMES))
def test_every_pkcs1_scheme_gives_the_same_bytes_by_both_paths(
    key: rsa.RSAPrivateKey, scheme: SignatureScheme
) -> None:
    payload = pkcs1_payload(scheme, DATA[scheme])
    raw = blinded_type1(key, payload)
    assert sign(key, scheme, DATA[scheme]) == raw
    assert key.public_key().recover_data_from_signature(raw, padding.PKCS1v15(), None) == payload
    known = digest_info_hash(payload)
    assert (known is None) == (scheme is SignatureScheme.SHA256_BARE)  # which path it takes
    if known is not None:
        assert openssl_type1(key, *known) == raw


@pytest.mark.parametrize("prefix", list(DIGEST_INFO_PREFIXES))
def test_every_known_digest_info_gives_the_same_bytes_by_both_paths(
    key: rsa.RSAPrivateKey, prefix: bytes
) -> None:
    algorithm = DIGEST_INFO_PREFIXES[prefix]
    digest_info = prefix + bytes(range(algorithm.digest_size))
    assert digest_info_hash(digest_info) == (algorithm, bytes(range(algorithm.digest_size)))
    assert sign(key, SignatureScheme.PKCS1_RAW, digest_info) == blinded_type1(key, digest_info)


def test_blinding_does_not_change_the_signature(key: rsa.RSAPrivateKey) -> None:
    payload = b"not a DigestInfo at all"
    assert digest_info_hash(payload) is None
    first, second = blinded_type1(key, payload), blinded_type1(key, payload)
    assert first == second
    assert key.public_key().recover_data_from_signature(first, padding.PKCS1v15(), None) == payload
