"""Application identifiers and file identifiers of the My Number card."""

from __future__ import annotations

import enum

SHORT_ID_FLAG = 0x80  # P1/P2 bit that says "the low five bits are a short EF identifier"


def short_id(fid: int) -> int:
    """Short EF identifier of a file: the low five bits of its FID (`000A` → `0A`)."""
    return fid & 0x1F


class AID(bytes, enum.Enum):
    """Application identifiers of the My Number card."""

    JPKI = bytes.fromhex("D392F000260100000001")
    CARD_INFO_INPUT_SUPPORT = bytes.fromhex("D3921000310001010408")
    CARD_FACE_CONFIRMATION = bytes.fromhex("D3921000310001010402")
    RESIDENT_REGISTRY = bytes.fromhex("D3921000310001010401")
    COMMON_CARD = bytes.fromhex("D3921000310001010100")


class JpkiFile(enum.IntEnum):
    """File identifiers in the JPKI AP."""

    SIGNATURE_CERTIFICATE = 0x0001
    SIGNATURE_CA_CERTIFICATE = 0x0002
    TOKEN_INFO = 0x0006
    CERTIFICATE_AVAILABILITY = 0x0008
    AUTHENTICATION_CERTIFICATE = 0x000A
    AUTHENTICATION_CA_CERTIFICATE = 0x000B
    AUTHENTICATION_KEY = 0x0017
    AUTHENTICATION_PIN = 0x0018
    SIGNATURE_KEY = 0x001A
    SIGNATURE_PIN = 0x001B


class CardInfoFile(enum.IntEnum):
    """File identifiers in the card-info input-support AP (券面事項入力補助AP)."""

    MY_NUMBER = 0x0001
    BASIC_ATTRIBUTES = 0x0002
    INTEGRITY_RECORD = 0x0003
    AP_CERTIFICATE = 0x0004
    AP_BASIC_INFO = 0x0005
    PIN = 0x0011
    BLOCKED_REFERENCE = 0x0012  # ships blocked on real cards
    COLLATION_NUMBER_A = 0x0014  # the my number
    COLLATION_NUMBER_B = 0x0015  # birth date (era) + card expiry year + security code
