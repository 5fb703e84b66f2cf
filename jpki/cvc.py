"""Card-verifiable certificates (CVCs) of the My Number card, and the key ids that name them.

A CVC binds an RSA-2048 public key to a 16-byte key id, signed by the key another id names:
`7F21 { 5F4E <issuer id ‖ subject id ‖ 90 03 01 00 01 ‖ 91 82 01 00 modulus>, 5F37 <signature> }`
(PKCS#1 v1.5 with SHA-256 over the 297-byte body). The MF's GET DATA objects `00F8` and `7F21`
hold CVCs bare (`5F4E … 5F37 …`, no `7F21` wrapper). Shared by the issuer, which makes them, and
the relying party, which checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.tlv import expect, read_tlv, tlv

CVC_TAG = b"\x7f\x21"
BODY_TAG = b"\x5f\x4e"
SIGNATURE_TAG = b"\x5f\x37"
EXPONENT_TAG = b"\x90"
MODULUS_TAG = b"\x91"
KEY_BITS = 2048
MODULUS_SIZE = KEY_BITS // 8
EXPONENT = 65537
EXPONENT_SIZE = 3
KEY_ID_SIZE = 16
PUBLIC_KEY_SIZE = 265  # 90 03 01 00 01 91 82 01 00 <256>
BODY_SIZE = 2 * KEY_ID_SIZE + PUBLIC_KEY_SIZE  # 297
KEY_ID_SEPARATOR = b"\x08\x05"
KEY_ID_TAIL = bytes(4)
KEY_ID_PATTERN = re.compile(r"([0-9]{7})/([0-9]{3})")
# First digit of an authority number: 5 production, 6 J-LIS test; 9 is this emulator's own
# hierarchy, so tools holding the real keys say "unknown CA", not "bad signature".
EMULATOR_AUTHORITY_PREFIX = "9"


class CvcError(ValueError):
    """Bytes that are not a CVC of this card, or a CVC whose signature does not verify."""


@dataclass(frozen=True)
class KeyId:
    """A 16-byte key id: 7 ASCII digits ‖ `08 05` ‖ 3 ASCII digits ‖ 4 bytes, printed
    `9000020/001`. The 4 bytes are zero in the ids we make; real cards' MF-level CA ids end
    otherwise (`A8`), so they are kept as read and a parsed id encodes back to its bytes."""

    authority: str
    number: str
    tail: bytes = KEY_ID_TAIL

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.fullmatch(f"{self.authority}/{self.number}"):
            raise ValueError(f"a key id is 7 digits / 3 digits, not {self}")
        if len(self.tail) != len(KEY_ID_TAIL):
            raise ValueError(f"a key id ends in {len(KEY_ID_TAIL)} bytes, not {len(self.tail)}")

    def encode(self) -> bytes:
        return self.authority.encode() + KEY_ID_SEPARATOR + self.number.encode() + self.tail

    @classmethod
    def parse(cls, raw: bytes) -> KeyId:
        if len(raw) != KEY_ID_SIZE or raw[7:9] != KEY_ID_SEPARATOR:
            raise CvcError(f"not a key id: {raw.hex().upper()}")
        try:
            return cls(raw[:7].decode("ascii"), raw[9:12].decode("ascii"), raw[12:])
        except (UnicodeDecodeError, ValueError):
            raise CvcError(f"not a key id: {raw.hex().upper()}") from None

    @classmethod
    def from_text(cls, text: str) -> KeyId:
        match = KEY_ID_PATTERN.fullmatch(text)
        if match is None:
            raise ValueError(f"a key id is written 9000020/001, not {text!r}")
        return cls(match[1], match[2])

    def __str__(self) -> str:
        return f"{self.authority}/{self.number}"


def encode_public_key(key: rsa.RSAPublicKey) -> bytes:
    """The card's form of an RSA-2048 public key: `90 03 01 00 01 91 82 01 00 <modulus>`."""
    numbers = key.public_numbers()
    if key.key_size != KEY_BITS or numbers.e != EXPONENT:
        raise ValueError(f"the card holds RSA-{KEY_BITS} keys with exponent {EXPONENT}")
    return tlv(EXPONENT_TAG, numbers.e.to_bytes(EXPONENT_SIZE, "big")) + tlv(
        MODULUS_TAG, numbers.n.to_bytes(MODULUS_SIZE, "big")
    )


def parse_public_key(data: bytes) -> rsa.RSAPublicKey:
    """The RSA public key of `encode_public_key`'s bytes; CvcError if it is not one."""
    try:
        exponent_start, exponent_end = expect(data, 0, EXPONENT_TAG)
        modulus_start, modulus_end = expect(data, exponent_end, MODULUS_TAG)
    except ValueError as error:
        raise CvcError(f"not a public key: {error}") from None
    if modulus_end != len(data) or modulus_end - modulus_start != MODULUS_SIZE:
        raise CvcError(f"not an RSA-{KEY_BITS} public key")
    exponent = int.from_bytes(data[exponent_start:exponent_end], "big")
    modulus = int.from_bytes(data[modulus_start:modulus_end], "big")
    try:
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError as error:
        raise CvcError(f"not an RSA public key: {error}") from None


@dataclass(frozen=True)
class CardVerifiableCertificate:
    issuer: KeyId
    subject: KeyId
    public_key: rsa.RSAPublicKey
    body: bytes  # the 297 signed bytes
    signature: bytes

    def encode(self, *, bare: bool = False) -> bytes:
        """568 bytes in a `7F21` wrapper (EF `0004`), or 563 bare (MF `00F8`, `7F21`)."""
        inner = tlv(BODY_TAG, self.body) + tlv(SIGNATURE_TAG, self.signature)
        return inner if bare else tlv(CVC_TAG, inner)

    def signed_by(self, issuer_key: rsa.RSAPublicKey) -> bool:
        try:
            issuer_key.verify(self.signature, self.body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    @classmethod
    def parse(cls, data: bytes) -> CardVerifiableCertificate:
        """A CVC, wrapped or bare, with nothing after it (filler `FF` aside)."""
        try:
            tag, start, end = read_tlv(data, 0)
            wrapped = tag == CVC_TAG
            body_start, body_end = expect(data, start if wrapped else 0, BODY_TAG)
            signature_start, signature_end = expect(data, body_end, SIGNATURE_TAG)
        except ValueError as error:
            raise CvcError(f"not a card-verifiable certificate: {error}") from None
        if wrapped and signature_end != end:
            raise CvcError("bytes after the signature inside the card-verifiable certificate")
        if data[end if wrapped else signature_end :].strip(b"\xff"):
            raise CvcError("bytes after the card-verifiable certificate")
        body = data[body_start:body_end]
        if len(body) != BODY_SIZE:
            raise CvcError(f"a CVC body has {BODY_SIZE} bytes, not {len(body)}")
        return cls(
            issuer=KeyId.parse(body[:KEY_ID_SIZE]),
            subject=KeyId.parse(body[KEY_ID_SIZE : 2 * KEY_ID_SIZE]),
            public_key=parse_public_key(body[2 * KEY_ID_SIZE :]),
            body=body,
            signature=data[signature_start:signature_end],
        )


def issue(
    subject_key: rsa.RSAPublicKey,
    subject: KeyId,
    issuer_key: rsa.RSAPrivateKey,
    issuer: KeyId,
) -> CardVerifiableCertificate:
    """A CVC for `subject_key`, signed by `issuer_key` (self-signed when they are the pair)."""
    body = issuer.encode() + subject.encode() + encode_public_key(subject_key)
    signature = issuer_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return CardVerifiableCertificate(issuer, subject, subject_key, body, signature)
