"""Contents of the card outside its JPKI, Text and card-face APs: the record EFs of the 住基AP
and the 共通カードAP, and the objects GET DATA answers at the MF (/work/shared/spec/jpki-card.md
§6 and §7).

A record EF is stored as the concatenation of its records, each a simple TLV (tag, one length
byte, value); READ RECORD n answers the n-th whole. The GET DATA objects are the values the card
returns, keyed by their tag; `5F51` is not among them: the card makes it from its ATR.
Pure functions, no file or card I/O here.
"""

from __future__ import annotations

import datetime
import re
import secrets

from asn1crypto.core import ObjectIdentifier

from card_emulator.vocabulary.identifiers import CardData, CommonFile, ResidentRegistryFile
from jpki.cvc import CardVerifiableCertificate
from jpki.tlv import simple_tlv, tlv

SERIAL_DIGITS = 15
SERIAL_PATTERN = re.compile(f"[0-9]{{{SERIAL_DIGITS}}}")
MUNICIPALITY_CODE_PATTERN = re.compile(r"[0-9]{5}")  # MF 00F0, 共通 0001, card-face 0003
KEY_REFERENCE_SIZE = 16
DATE_FORMAT = "%Y%m%d"
# 共通 0001's one record: 01 1C, then serial ‖ municipality code ‖ card expiry (28 digits).
CARD_IDENTIFICATION_TAG = 0x01
CARD_IDENTIFICATION_DIGITS = 28
# The tag of the key-reference records (共通 0002, 住基 0002) is not public: 01 is ours.
KEY_REFERENCE_TAG = 0x01

# GlobalPlatform card recognition data (GET DATA 0066), GP 2.1.1 form: the card says it has
# some; what it says is not public. Ours: GP 2.1.1 card management, GP card identification
# scheme, SCP02 with i=15.
CARD_DATA_TAG = b"\x66"
CARD_RECOGNITION_DATA_TAG = b"\x73"
CARD_MANAGEMENT_TYPE_TAG = b"\x60"
CARD_IDENTIFICATION_SCHEME_TAG = b"\x63"
SECURE_CHANNEL_TAG = b"\x64"
GP_CARD_RECOGNITION_DATA = "1.2.840.114283.1"
GP_2_1_1 = "1.2.840.114283.2.2.1.1"
GP_CARD_IDENTIFICATION_SCHEME = "1.2.840.114283.3"
GP_SCP02_I15 = "1.2.840.114283.4.2.21"


def card_serial() -> str:
    """A new card's 15-digit serial (共通 0001, MF 0045)."""
    return f"{secrets.randbelow(10**SERIAL_DIGITS):0{SERIAL_DIGITS}d}"


def key_reference() -> bytes:
    """A new card's 16-byte key reference (共通 0002 = 住基 0002)."""
    return secrets.token_bytes(KEY_REFERENCE_SIZE)


def _require(serial: str | None, municipality_code: str | None) -> None:
    if serial is not None and not SERIAL_PATTERN.fullmatch(serial):
        raise ValueError(f"a card serial is {SERIAL_DIGITS} digits, not {serial!r}")
    if municipality_code is not None and not MUNICIPALITY_CODE_PATTERN.fullmatch(municipality_code):
        raise ValueError(f"a municipality code is 5 digits, not {municipality_code!r}")


def _key_reference_record(reference: bytes) -> bytes:
    if len(reference) != KEY_REFERENCE_SIZE:
        raise ValueError(f"a key reference is {KEY_REFERENCE_SIZE} bytes, not {len(reference)}")
    return simple_tlv(KEY_REFERENCE_TAG, reference)


def _date(day: datetime.date) -> bytes:
    return day.strftime(DATE_FORMAT).encode("ascii")


def common_files(
    serial: str, municipality_code: str, card_expiry: datetime.date, key_reference: bytes
) -> dict[int, bytes]:
    """The 共通カードAP's record EFs, by FID: 0001 (`01 1C` serial ‖ municipality code ‖
    expiry YYYYMMDD, 30 bytes) and 0002 (the key reference, 18 bytes)."""
    _require(serial, municipality_code)
    identification = serial.encode("ascii") + municipality_code.encode("ascii") + _date(card_expiry)
    assert len(identification) == CARD_IDENTIFICATION_DIGITS
    return {
        CommonFile.CARD_IDENTIFICATION: simple_tlv(CARD_IDENTIFICATION_TAG, identification),
        CommonFile.KEY_REFERENCE: _key_reference_record(key_reference),
    }


def resident_registry_files(key_reference: bytes) -> dict[int, bytes]:
    """The 住基AP's record EF 0002: the same key reference as 共通 0002 (18 bytes)."""
    return {ResidentRegistryFile.KEY_REFERENCE: _key_reference_record(key_reference)}


def card_recognition_data() -> bytes:
    """GET DATA 0066: `66 { 73 { 06 OID, 60 {OID}, 63 {OID}, 64 {OID} } }`."""

    def oid(dotted: str) -> bytes:
        return bytes(ObjectIdentifier(dotted).dump())

    recognition = (
        oid(GP_CARD_RECOGNITION_DATA)
        + tlv(CARD_MANAGEMENT_TYPE_TAG, oid(GP_2_1_1))
        + tlv(CARD_IDENTIFICATION_SCHEME_TAG, oid(GP_CARD_IDENTIFICATION_SCHEME))
        + tlv(SECURE_CHANNEL_TAG, oid(GP_SCP02_I15))
    )
    return tlv(CARD_DATA_TAG, tlv(CARD_RECOGNITION_DATA_TAG, recognition))


def card_data_objects(
    *,
    serial: str,
    municipality_code: str,
    card_expiry: datetime.date,
    root: CardVerifiableCertificate,
    issuer: CardVerifiableCertificate,
    issuer_identification: bytes,
) -> dict[int, bytes]:
    """What GET DATA answers at the MF, by tag: 0042 `issuer_identification` (16 bytes), 0045
    the serial, 0066 the recognition data, 00F0 the municipality code, 00F2 the card expiry,
    00F7 the root's key id, 00F8 the root CVC and 7F21 the card issuer's CVC (both bare)."""
    _require(serial, municipality_code)
    if len(issuer_identification) != KEY_REFERENCE_SIZE:
        raise ValueError(
            f"the issuer identification is {KEY_REFERENCE_SIZE} bytes, "
            f"not {len(issuer_identification)}"
        )
    if root.issuer != root.subject or not root.signed_by(root.public_key):
        raise ValueError(f"the root CVC {root.subject} is not self-signed")
    if issuer.issuer != root.subject or not issuer.signed_by(root.public_key):
        raise ValueError(f"the CVC {issuer.subject} is not issued by the root {root.subject}")
    return {
        CardData.ISSUER_IDENTIFICATION: issuer_identification,
        CardData.CARD_IDENTIFICATION_NUMBER: serial.encode("ascii"),
        CardData.CARD_RECOGNITION_DATA: card_recognition_data(),
        CardData.MUNICIPALITY_CODE: municipality_code.encode("ascii"),
        CardData.CARD_EXPIRY: _date(card_expiry),
        # The key that signs 7F21 is the one 00F8 certifies: the root's.
        CardData.CVC_SIGNER_KEY_ID: root.subject.encode(),
        CardData.ROOT_CVC: root.encode(bare=True),
        CardData.SECOND_CVC: issuer.encode(bare=True),
    }
