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


class CardFaceFile(enum.IntEnum):
    """File identifiers in the card-face AP (券面事項確認AP)."""

    CARD_KEY = 0x0000  # not a file: P2 `00` of COMPUTE DIGITAL SIGNATURE, "the AP's own key"
    AGE_RECORD = 0x0001
    FACE = 0x0002
    AP_BASIC_INFO = 0x0003
    AP_CERTIFICATE = 0x0004
    MY_NUMBER_IMAGE = 0x0005
    UNKNOWN = 0x0006  # 16 × FF on real cards, purpose unknown
    BIRTH_DATE_KEY = 0x0011  # era YYMMDD
    COLLATION_NUMBER_B = 0x0012
    COLLATION_NUMBER_A = 0x0013


class ResidentRegistryFile(enum.IntEnum):
    """File identifiers in the 住基AP (resident registry)."""

    KEY_REFERENCE = 0x0002  # one record
    PIN = 0x001C


class CommonFile(enum.IntEnum):
    """File identifiers in the common card AP (共通カードAP)."""

    CARD_IDENTIFICATION = 0x0001  # one record: serial, municipality code, card expiry
    KEY_REFERENCE = 0x0002  # one record
    AUTHENTICATION_KEY = 0x0019  # INTERNAL AUTHENTICATE
    PIN = 0x001C


class CardData(enum.IntEnum):
    """GET DATA tags answered at the MF, in the power-on state (spec §7)."""

    ISSUER_IDENTIFICATION = 0x0042
    CARD_IDENTIFICATION_NUMBER = 0x0045
    CARD_RECOGNITION_DATA = 0x0066
    MUNICIPALITY_CODE = 0x00F0
    CARD_EXPIRY = 0x00F2
    CVC_SIGNER_KEY_ID = 0x00F7
    ROOT_CVC = 0x00F8
    SECOND_CVC = 0x7F21
    ATR_INFORMATION = 0x5F51  # the ATR without TS: made from the card's ATR setting


GLOBAL_PLATFORM_ISD = bytes.fromhex("A0000001510000")  # selecting it returns to power-on state
