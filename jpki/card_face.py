"""The card-face AP's records (券面事項確認AP, /work/shared/spec/jpki-card.md §5 "Data") as a
client or a relying party reads them: parsing, and the checks of their signatures.

Shared by the issuer, which writes these records, the client, which reads them off a card, and
the relying party, which checks them; it knows only the bytes. The records are BER with
two-byte tags; the signatures are the municipality key's (certified by the CVC in EF 0004):
PKCS#1 v1.5 SHA-256 over the signed TLVs for the age record (EF 0001) and the my-number image
(EF 0005), and for the face (EF 0002) PKCS#1 v1.5 over a SHA-256 DigestInfo that declares 96
bytes: the digests of three groups of its objects, so that a terminal can check the face
without reading the photo.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from jpki.cvc import CvcError, parse_public_key
from jpki.tlv import children, read_tlv

FILLER = 0xFF  # what may follow a record in its EF

# EF 0001, the age record (opened by the birth-date key).
AGE_RECORD_TAG = b"\xff\x10"
AGE_BIRTH_DATE_TAG = b"\xdf\x11"
AGE_CARD_KEY_TAG = b"\xdf\x12"
AGE_SIGNATURE_TAG = b"\xdf\x13"

# EF 0002, the card face.
FACE_TAG = b"\xff\x20"
FACE_OFFSETS_TAG = b"\xdf\x21"
FACE_BIRTH_DATE_TAG = b"\xdf\x22"
FACE_SEX_TAG = b"\xdf\x23"
FACE_CARD_KEY_TAG = b"\xdf\x24"
FACE_NAME_IMAGE_TAG = b"\xdf\x25"
FACE_ADDRESS_IMAGE_TAG = b"\xdf\x26"
FACE_PHOTO_TAG = b"\xdf\x27"
FACE_SIGNATURE_TAG = b"\xdf\x28"
FACE_EXPIRY_TAG = b"\xdf\x29"
FACE_SECURITY_CODE_IMAGE_TAG = b"\xdf\x2a"
# The objects DF21 points at, in the order they are written (clients read them by position).
FACE_OBJECT_TAGS = (
    FACE_BIRTH_DATE_TAG,
    FACE_SEX_TAG,
    FACE_CARD_KEY_TAG,
    FACE_NAME_IMAGE_TAG,
    FACE_ADDRESS_IMAGE_TAG,
    FACE_PHOTO_TAG,
    FACE_SIGNATURE_TAG,
    FACE_EXPIRY_TAG,
    FACE_SECURITY_CODE_IMAGE_TAG,
)
# DF28 covers three groups of objects, each hashed on its own; DF29 and DF2A are not covered.
FACE_SIGNED_GROUPS = (
    (FACE_BIRTH_DATE_TAG, FACE_SEX_TAG, FACE_CARD_KEY_TAG),
    (FACE_NAME_IMAGE_TAG, FACE_ADDRESS_IMAGE_TAG),
    (FACE_PHOTO_TAG,),
)
# A SHA-256 DigestInfo whose OCTET STRING declares 96 bytes: the three groups' digests.
FACE_DIGEST_INFO_HEADER = bytes.fromhex("3071300D060960864801650304020105000460")
OFFSET_SIZE = 2

# EF 0003, the AP's basic info.
BASIC_INFO_TAG = b"\xff\x30"
BASIC_INFO_VERSION_TAG = b"\xdf\x31"
BASIC_INFO_KEY_ID_TAG = b"\xdf\x32"
BASIC_INFO_FORMAT_TAG = b"\xdf\x33"
BASIC_INFO_MUNICIPALITY_TAG = b"\xdf\x34"
BASIC_INFO_OPAQUE_TAG = b"\xdf\x35"

# EF 0005, the my-number image (opened by collation number A only).
MY_NUMBER_IMAGE_TAG = b"\xff\x40"
MY_NUMBER_PNG_TAG = b"\xdf\x41"
MY_NUMBER_CARD_KEY_TAG = b"\xdf\x42"
MY_NUMBER_SIGNATURE_TAG = b"\xdf\x43"

SIGNATURE_SIZE = 256  # RSA-2048
DATE_DIGITS = 8
DATE_FORMAT = "%Y%m%d"
SEX_SIZE = 1


class CardFaceFormatError(ValueError):
    """Bytes that are not a card-face record as the card writes it; str() says what is wrong."""


@dataclass(frozen=True)
class Face:
    """EF 0002: what the card face prints, the card key, and the municipality's signature."""

    birth_date: str  # YYYYMMDD, Gregorian
    sex: str  # "1" male, "2" female, "9" not applicable
    card_key: rsa.RSAPublicKey  # signs challenges; the same key as in EF 0001 and 0005
    name_png: bytes
    address_png: bytes
    photo_jp2: bytes
    signature: bytes  # DF28
    expiry: str  # card expiry YYYYMMDD; not covered by the signature
    security_code_png: bytes  # not covered by the signature
    group_digests: tuple[bytes, bytes, bytes]  # SHA-256 of each group of FACE_SIGNED_GROUPS

    @property
    def signed_digest_info(self) -> bytes:
        """The 115 bytes that DF28 pads and signs."""
        return FACE_DIGEST_INFO_HEADER + b"".join(self.group_digests)


@dataclass(frozen=True)
class AgeRecord:
    """EF 0001: the birth date and the card key, signed by the municipality."""

    birth_date: str  # YYYYMMDD, Gregorian
    card_key: rsa.RSAPublicKey
    signature: bytes  # DF13
    signed: bytes  # the DF11 and DF12 TLVs as written


@dataclass(frozen=True)
class MyNumberImage:
    """EF 0005: the my number as an image and the card key, signed by the municipality."""

    png: bytes
    card_key: rsa.RSAPublicKey
    signature: bytes  # DF43
    signed: bytes  # the DF41 and DF42 TLVs as written


def face_digest_info(groups: Sequence[bytes]) -> bytes:
    """What DF28 signs, from the three groups of TLVs as written: the header, then each group's
    SHA-256."""
    if len(groups) != len(FACE_SIGNED_GROUPS):
        raise ValueError(f"the face signature covers {len(FACE_SIGNED_GROUPS)} groups")
    return FACE_DIGEST_INFO_HEADER + b"".join(hashlib.sha256(group).digest() for group in groups)


def face_signature_valid(face: Face, public_key: rsa.RSAPublicKey) -> bool:
    """Whether DF28 is `public_key`'s signature over the face's three groups: PKCS#1 v1.5 type-1
    padding of exactly `signed_digest_info` (not a DigestInfo OpenSSL would build itself)."""
    try:
        recovered = public_key.recover_data_from_signature(
            face.signature, padding.PKCS1v15(), utils.NoDigestInfo()
        )
    except InvalidSignature:
        return False
    return recovered == face.signed_digest_info


def record_signature_valid(record: AgeRecord | MyNumberImage, public_key: rsa.RSAPublicKey) -> bool:
    """Whether EF 0001's DF13 or EF 0005's DF43 is `public_key`'s PKCS#1 v1.5 SHA-256 signature
    over the record's signed TLVs."""
    try:
        public_key.verify(record.signature, record.signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# --- parsing -------------------------------------------------------------------------------


def parse_face(ef: bytes) -> Face:
    """EF 0002 as read from the card (filler after the record allowed): the ten objects DF21…DF2A
    in order, nothing else, and DF21's nine offsets pointing at DF22…DF2A."""
    objects = _objects(ef, FACE_TAG, "EF 0002")
    tags = [tag for tag, _at, _start, _end in objects]
    expected = [FACE_OFFSETS_TAG, *FACE_OBJECT_TAGS]
    if tags != expected:
        raise CardFaceFormatError(
            f"EF 0002 holds {_tag_list(tags)}, not {_tag_list(expected)} in that order"
        )
    values = {tag: ef[start:end] for tag, _at, start, end in objects}
    offsets = values[FACE_OFFSETS_TAG]
    if len(offsets) != OFFSET_SIZE * len(FACE_OBJECT_TAGS):
        raise CardFaceFormatError(
            f"EF 0002's DF21 has {len(offsets)} bytes, not {OFFSET_SIZE * len(FACE_OBJECT_TAGS)}"
        )
    positions = {tag: (at, end) for tag, at, _start, end in objects}
    for index, tag in enumerate(FACE_OBJECT_TAGS):
        offset = int.from_bytes(offsets[OFFSET_SIZE * index : OFFSET_SIZE * (index + 1)], "big")
        if offset != positions[tag][0]:
            raise CardFaceFormatError(
                f"EF 0002's DF21 puts {tag.hex().upper()} at offset {offset}, "
                f"but it is at {positions[tag][0]}"
            )
    first, second, third = (
        hashlib.sha256(ef[positions[group[0]][0] : positions[group[-1]][1]]).digest()
        for group in FACE_SIGNED_GROUPS
    )
    sex = values[FACE_SEX_TAG]
    if len(sex) != SEX_SIZE or not sex.isdigit():
        raise CardFaceFormatError(f"EF 0002's sex (DF23) is not one digit: {sex.hex().upper()}")
    return Face(
        birth_date=_date(values[FACE_BIRTH_DATE_TAG], "EF 0002's birth date (DF22)"),
        sex=sex.decode("ascii"),
        card_key=_public_key(values[FACE_CARD_KEY_TAG], "EF 0002's card key (DF24)"),
        name_png=values[FACE_NAME_IMAGE_TAG],
        address_png=values[FACE_ADDRESS_IMAGE_TAG],
        photo_jp2=values[FACE_PHOTO_TAG],
        signature=_signature(values[FACE_SIGNATURE_TAG], "EF 0002's signature (DF28)"),
        expiry=_date(values[FACE_EXPIRY_TAG], "EF 0002's card expiry (DF29)"),
        security_code_png=values[FACE_SECURITY_CODE_IMAGE_TAG],
        group_digests=(first, second, third),
    )


def parse_age_record(ef: bytes) -> AgeRecord:
    """EF 0001: DF11 birth date, DF12 card key, DF13 signature."""
    (birth_date, card_key, signature), signed = _signed_record(
        ef,
        "EF 0001",
        AGE_RECORD_TAG,
        (AGE_BIRTH_DATE_TAG, AGE_CARD_KEY_TAG, AGE_SIGNATURE_TAG),
    )
    return AgeRecord(
        birth_date=_date(birth_date, "EF 0001's birth date (DF11)"),
        card_key=_public_key(card_key, "EF 0001's card key (DF12)"),
        signature=_signature(signature, "EF 0001's signature (DF13)"),
        signed=signed,
    )


def parse_my_number_image(ef: bytes) -> MyNumberImage:
    """EF 0005: DF41 image, DF42 card key, DF43 signature."""
    (png, card_key, signature), signed = _signed_record(
        ef,
        "EF 0005",
        MY_NUMBER_IMAGE_TAG,
        (MY_NUMBER_PNG_TAG, MY_NUMBER_CARD_KEY_TAG, MY_NUMBER_SIGNATURE_TAG),
    )
    return MyNumberImage(
        png=png,
        card_key=_public_key(card_key, "EF 0005's card key (DF42)"),
        signature=_signature(signature, "EF 0005's signature (DF43)"),
        signed=signed,
    )


def _objects(ef: bytes, tag: bytes, name: str) -> list[tuple[bytes, int, int, int]]:
    """(tag, TLV start, value start, value end) of each object inside the record `tag`."""
    try:
        found, start, end = read_tlv(ef, 0)
        if found != tag:
            raise CardFaceFormatError(
                f"{name} starts with tag {found.hex().upper()}, not {tag.hex().upper()}"
            )
        if any(byte != FILLER for byte in ef[end:]):
            raise CardFaceFormatError(f"{name} has bytes other than filler after its record")
        return list(children(ef, start, end))
    except CardFaceFormatError:
        raise
    except ValueError as error:
        raise CardFaceFormatError(f"{name} is not a card-face record: {error}") from None


def _signed_record(
    ef: bytes, name: str, tag: bytes, tags: tuple[bytes, bytes, bytes]
) -> tuple[tuple[bytes, bytes, bytes], bytes]:
    """The three values of a record whose third object signs the first two, and those two TLVs."""
    objects = _objects(ef, tag, name)
    found = [object_tag for object_tag, _at, _start, _end in objects]
    if found != list(tags):
        raise CardFaceFormatError(
            f"{name} holds {_tag_list(found)}, not {_tag_list(tags)} in that order"
        )
    values = tuple(ef[start:end] for _tag, _at, start, end in objects)
    signed = ef[objects[0][1] : objects[1][3]]
    return (values[0], values[1], values[2]), signed


def _tag_list(tags: Sequence[bytes]) -> str:
    return ", ".join(tag.hex().upper() for tag in tags) or "nothing"


def _date(value: bytes, what: str) -> str:
    text = value.decode("ascii", errors="replace")
    if len(value) != DATE_DIGITS or not value.isdigit():
        raise CardFaceFormatError(f"{what} is not 8 ASCII digits: {value.hex().upper()}")
    try:
        datetime.datetime.strptime(text, DATE_FORMAT)
    except ValueError:
        raise CardFaceFormatError(f"{what} is not a date: {text}") from None
    return text


def _public_key(value: bytes, what: str) -> rsa.RSAPublicKey:
    try:
        return parse_public_key(value)
    except CvcError as error:
        raise CardFaceFormatError(f"{what}: {error}") from None


def _signature(value: bytes, what: str) -> bytes:
    if len(value) != SIGNATURE_SIZE:
        raise CardFaceFormatError(f"{what} has {len(value)} bytes, not {SIGNATURE_SIZE}")
    return value
