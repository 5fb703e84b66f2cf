"""The RSA private-key operations behind COMPUTE DIGITAL SIGNATURE, one per P1 scheme.

PKCS#1 v1.5 is deterministic, so a DigestInfo of a known hash (what OpenSC, the common CLIs and
the host send) is signed through OpenSSL with the same bytes as the card's own padding would
give; anything else (bare hashes, arbitrary data under P1=00) takes the raw, blinded path.
"""

from __future__ import annotations

import enum
import hashlib
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

SHA256_LENGTH = 32
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
# DigestInfo headers (with the NULL parameters OpenSSL writes) of the hashes OpenSSL can sign.
DIGEST_INFO_PREFIXES: dict[bytes, hashes.HashAlgorithm] = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1(),
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224(),
    SHA256_DIGEST_INFO_PREFIX: hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}
PKCS1_OVERHEAD = 11  # 00 01, at least eight FF, 00


class SignatureScheme(enum.IntEnum):
    """P1 of COMPUTE DIGITAL SIGNATURE, as the real card interprets it."""

    PKCS1_RAW = 0x00  # PKCS#1 v1.5 type-1 padding of the data exactly as sent
    SHA256_BARE = 0x01  # SHA-256 of the message, padded without a DigestInfo
    PKCS1_SHA256_HASH = 0x02  # a SHA-256 hash, wrapped in a DigestInfo
    PKCS1_SHA256_MESSAGE = 0x03  # a message, hashed and wrapped in a DigestInfo
    PSS_SHA256_HASH = 0x04
    PSS_SHA256_MESSAGE = 0x05


PKCS1_SCHEMES = frozenset(
    {
        SignatureScheme.PKCS1_RAW,
        SignatureScheme.SHA256_BARE,
        SignatureScheme.PKCS1_SHA256_HASH,
        SignatureScheme.PKCS1_SHA256_MESSAGE,
    }
)
MAX_MESSAGE = 255


def accepts_length(scheme: SignatureScheme, length: int, key_bytes: int) -> bool:
    """Whether the card takes `length` bytes of input for this scheme."""
    if scheme in (SignatureScheme.PKCS1_SHA256_HASH, SignatureScheme.PSS_SHA256_HASH):
        return length == SHA256_LENGTH
    if scheme is SignatureScheme.PKCS1_RAW:
        return 1 <= length <= key_bytes - PKCS1_OVERHEAD
    return 1 <= length <= MAX_MESSAGE


def pkcs1_payload(scheme: SignatureScheme, data: bytes) -> bytes:
    """What a PKCS#1 v1.5 scheme pads and signs: the data, a bare hash, or a DigestInfo."""
    if scheme is SignatureScheme.PKCS1_RAW:
        return data
    if scheme is SignatureScheme.SHA256_BARE:
        return hashlib.sha256(data).digest()
    if scheme is SignatureScheme.PKCS1_SHA256_HASH:
        return SHA256_DIGEST_INFO_PREFIX + data
    return SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest()


def digest_info_hash(payload: bytes) -> tuple[hashes.HashAlgorithm, bytes] | None:
    """(algorithm, digest) when `payload` is exactly a DigestInfo of a known hash."""
    for prefix, algorithm in DIGEST_INFO_PREFIXES.items():
        if payload.startswith(prefix) and len(payload) == len(prefix) + algorithm.digest_size:
            return algorithm, payload[len(prefix) :]
    return None


def openssl_type1(key: rsa.RSAPrivateKey, algorithm: hashes.HashAlgorithm, digest: bytes) -> bytes:
    """PKCS#1 v1.5 over a digest, by OpenSSL (constant-time, blinded)."""
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))


def blinded_type1(key: rsa.RSAPrivateKey, payload: bytes) -> bytes:
    """Type-1 padding of `payload` as given, then the private operation (CRT), blinded so its
    timing does not depend on the data."""
    numbers = key.private_numbers()
    public = numbers.public_numbers
    n, e = public.n, public.e
    size = (key.key_size + 7) // 8
    block = b"\x00\x01" + b"\xff" * (size - len(payload) - 3) + b"\x00" + payload
    while True:
        r = secrets.randbelow(n - 2) + 2
        try:
            r_inverse = pow(r, -1, n)
            break
        except ValueError:  # r shares a factor with n: astronomically unlikely; draw again
            continue
    m = int.from_bytes(block, "big") * pow(r, e, n) % n
    s1 = pow(m, numbers.dmp1, numbers.p)
    s2 = pow(m, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (s1 - s2)) % numbers.p
    signature = (s2 + h * numbers.q) * r_inverse % n
    return signature.to_bytes(size, "big")


def _pss(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    return key.sign(
        digest,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        utils.Prehashed(hashes.SHA256()),
    )


def sign(key: rsa.RSAPrivateKey, scheme: SignatureScheme, data: bytes) -> bytes:
    """The card's signature over `data` (whose length the caller has checked)."""
    if scheme is SignatureScheme.PSS_SHA256_HASH:
        return _pss(key, data)
    if scheme is SignatureScheme.PSS_SHA256_MESSAGE:
        return _pss(key, hashlib.sha256(data).digest())
    payload = pkcs1_payload(scheme, data)
    known = digest_info_hash(payload)
    if known is not None:
        return openssl_type1(key, *known)
    return blinded_type1(key, payload)
