"""The RSA private-key operations behind COMPUTE DIGITAL SIGNATURE, one per P1 scheme."""

from __future__ import annotations

import enum
import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

SHA256_LENGTH = 32
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
PKCS1_OVERHEAD = 11  # 00 01, at least eight FF, 00


class SignatureScheme(enum.IntEnum):
    """P1 of COMPUTE DIGITAL SIGNATURE, as the real card interprets it."""

    PKCS1_RAW = 0x00  # PKCS#1 v1.5 type-1 padding of the data exactly as sent
    SHA256_BARE = 0x01  # SHA-256 of the message, padded without a DigestInfo
    PKCS1_SHA256_HASH = 0x02  # a SHA-256 hash, wrapped in a DigestInfo
    PKCS1_SHA256_MESSAGE = 0x03  # a message, hashed and wrapped in a DigestInfo
    PSS_SHA256_HASH = 0x04
    PSS_SHA256_MESSAGE = 0x05


MAX_MESSAGE = 255


def accepts_length(scheme: SignatureScheme, length: int, key_bytes: int) -> bool:
    """Whether the card takes `length` bytes of input for this scheme."""
    if scheme in (SignatureScheme.PKCS1_SHA256_HASH, SignatureScheme.PSS_SHA256_HASH):
        return length == SHA256_LENGTH
    if scheme is SignatureScheme.PKCS1_RAW:
        return 1 <= length <= key_bytes - PKCS1_OVERHEAD
    return 1 <= length <= MAX_MESSAGE


def _pkcs1_type1(key: rsa.RSAPrivateKey, payload: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 padding of `payload` as given, then the private operation (CRT)."""
    numbers = key.private_numbers()
    size = (key.key_size + 7) // 8
    block = b"\x00\x01" + b"\xff" * (size - len(payload) - 3) + b"\x00" + payload
    m = int.from_bytes(block, "big")
    s1 = pow(m, numbers.dmp1, numbers.p)
    s2 = pow(m, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (s1 - s2)) % numbers.p
    return (s2 + h * numbers.q).to_bytes(size, "big")


def _pss(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    return key.sign(
        digest,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        utils.Prehashed(hashes.SHA256()),
    )


def sign(key: rsa.RSAPrivateKey, scheme: SignatureScheme, data: bytes) -> bytes:
    """The card's signature over `data` (whose length the caller has checked)."""
    if scheme is SignatureScheme.PKCS1_RAW:
        return _pkcs1_type1(key, data)
    if scheme is SignatureScheme.SHA256_BARE:
        return _pkcs1_type1(key, hashlib.sha256(data).digest())
    if scheme is SignatureScheme.PKCS1_SHA256_HASH:
        return _pkcs1_type1(key, SHA256_DIGEST_INFO_PREFIX + data)
    if scheme is SignatureScheme.PKCS1_SHA256_MESSAGE:
        return _pkcs1_type1(key, SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest())
    if scheme is SignatureScheme.PSS_SHA256_HASH:
        return _pss(key, data)
    return _pss(key, hashlib.sha256(data).digest())
