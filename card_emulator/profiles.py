"""The My Number card's applications, as data: AIDs, files, PINs, keys and who may use them."""

from __future__ import annotations

import enum
import struct

from card_emulator.files import (
    Application,
    BinaryFile,
    KeyFile,
    PinFile,
    PinPolicy,
    PinVerified,
)


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


AUTHENTICATION_PIN_POLICY = PinPolicy(min_length=4, max_length=4, alphabet="0-9", max_tries=3)
SIGNATURE_PIN_POLICY = PinPolicy(min_length=6, max_length=16, alphabet="A-Z0-9", max_tries=5)

JPKI = Application(
    name="jpki",
    aid=AID.JPKI.value,
    label="JPKI AP (公的個人認証)",
    files=(
        BinaryFile(
            JpkiFile.SIGNATURE_CERTIFICATE,
            "signature certificate",
            read=PinVerified(JpkiFile.SIGNATURE_PIN),
        ),
        BinaryFile(JpkiFile.SIGNATURE_CA_CERTIFICATE, "signature CA certificate"),
        BinaryFile(JpkiFile.TOKEN_INFO, "token info"),
        BinaryFile(JpkiFile.CERTIFICATE_AVAILABILITY, "certificate availability"),
        BinaryFile(JpkiFile.AUTHENTICATION_CERTIFICATE, "authentication certificate"),
        BinaryFile(JpkiFile.AUTHENTICATION_CA_CERTIFICATE, "authentication CA certificate"),
        KeyFile(
            JpkiFile.AUTHENTICATION_KEY,
            "authentication private key",
            use=PinVerified(JpkiFile.AUTHENTICATION_PIN),
        ),
        PinFile(JpkiFile.AUTHENTICATION_PIN, "authentication PIN", AUTHENTICATION_PIN_POLICY),
        KeyFile(
            JpkiFile.SIGNATURE_KEY,
            "signature private key",
            use=PinVerified(JpkiFile.SIGNATURE_PIN),
        ),
        PinFile(JpkiFile.SIGNATURE_PIN, "signature password", SIGNATURE_PIN_POLICY),
    ),
)


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


CARD_INFO_PIN_POLICY = PinPolicy(min_length=4, max_length=4, alphabet="0-9", max_tries=3)
COLLATION_NUMBER_A_POLICY = PinPolicy(min_length=12, max_length=12, alphabet="0-9", max_tries=10)
COLLATION_NUMBER_B_POLICY = PinPolicy(min_length=14, max_length=14, alphabet="0-9", max_tries=10)

CARD_INFO = Application(
    name="card-info",
    aid=AID.CARD_INFO_INPUT_SUPPORT.value,
    label="券面事項入力補助AP (card-info input support)",
    files=(
        BinaryFile(
            CardInfoFile.MY_NUMBER,
            "my number",
            read=PinVerified(CardInfoFile.PIN, CardInfoFile.COLLATION_NUMBER_A),
        ),
        BinaryFile(
            CardInfoFile.BASIC_ATTRIBUTES,
            "basic four attributes",
            read=PinVerified(CardInfoFile.PIN, CardInfoFile.COLLATION_NUMBER_B),
        ),
        BinaryFile(
            CardInfoFile.INTEGRITY_RECORD,
            "integrity record",
            read=PinVerified(
                CardInfoFile.PIN, CardInfoFile.COLLATION_NUMBER_A, CardInfoFile.COLLATION_NUMBER_B
            ),
        ),
        BinaryFile(CardInfoFile.AP_CERTIFICATE, "AP card-verifiable certificate"),
        BinaryFile(CardInfoFile.AP_BASIC_INFO, "AP basic info"),
        PinFile(CardInfoFile.PIN, "card-info PIN", CARD_INFO_PIN_POLICY),
        PinFile(CardInfoFile.BLOCKED_REFERENCE, "blocked reference", CARD_INFO_PIN_POLICY),
        PinFile(CardInfoFile.COLLATION_NUMBER_A, "collation number A", COLLATION_NUMBER_A_POLICY),
        PinFile(CardInfoFile.COLLATION_NUMBER_B, "collation number B", COLLATION_NUMBER_B_POLICY),
    ),
)

# Every application the emulator knows; an AID not listed here answers 6A82.
APPLICATIONS: dict[str, Application] = {app.name: app for app in (JPKI, CARD_INFO)}


def application_by_aid(aid: bytes) -> Application | None:
    return next((app for app in APPLICATIONS.values() if app.aid == aid), None)


CERTIFICATE_PRESENT = 0x8F
TOKEN_INFO_LENGTH = 160
DEFAULT_TOKEN_LABEL = "JPKIAPICCTOKEN2"
UNLIMITED = 0xFFFFFFFF


def certificate_availability(signature: bool, authentication: bool) -> bytes:
    """EF 0008: `8F` for each certificate present (sign, auth), then `00`."""
    return bytes(
        [CERTIFICATE_PRESENT if signature else 0, CERTIFICATE_PRESENT if authentication else 0, 0]
    )


def token_info(
    serial_number: str,
    label: str = DEFAULT_TOKEN_LABEL,
    manufacturer: str = "JPKI card emulator",
    model: str = "EMULATOR",
) -> bytes:
    """EF 0006: the 160-byte token information record (big-endian integers, space padding)."""
    if len(serial_number) != 16 or not serial_number.isdigit():
        raise ValueError("token serial number must be 16 ASCII digits")

    def text(value: str, size: int) -> bytes:
        raw = value.encode("ascii")
        if len(raw) > size:
            raise ValueError(f"{value!r} is longer than {size} bytes")
        return raw.ljust(size, b" ")

    record = b"".join(
        (
            text(label, 32),
            text(manufacturer, 32),
            text(model, 16),
            text(serial_number, 16),
            struct.pack(">I", 0x0000040D),  # flags seen on real cards
            struct.pack(">4I", 1, 0, 1, 0),  # max sessions, sessions, max RW, RW sessions
            struct.pack(">2I", SIGNATURE_PIN_POLICY.max_length, SIGNATURE_PIN_POLICY.min_length),
            struct.pack(">4I", UNLIMITED, UNLIMITED, UNLIMITED, UNLIMITED),
            b"03",  # hardware version
            b"01",  # firmware version
            b" " * 16,  # UTC time: not set
        )
    )
    assert len(record) == TOKEN_INFO_LENGTH
    return record
