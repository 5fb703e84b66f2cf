"""Contents of the JPKI AP's public EFs that the issuer writes: token info, certificate presence."""

from __future__ import annotations

import struct

from card_emulator.vocabulary.pins import SIGNATURE_PASSWORD

CERTIFICATE_PRESENT = 0x8F
TOKEN_INFO_LENGTH = 160
DEFAULT_TOKEN_LABEL = "JPKIAPICCTOKEN2"
# The labels clients branch on: the card, an Android phone, an iPhone (spec §3, token info).
TOKEN_LABELS = (DEFAULT_TOKEN_LABEL, "JPKIAPGPSETOKEN", "JPKIAPIOSTOKEN")
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
            struct.pack(">2I", SIGNATURE_PASSWORD.max_length, SIGNATURE_PASSWORD.min_length),
            struct.pack(">4I", UNLIMITED, UNLIMITED, UNLIMITED, UNLIMITED),
            b"03",  # hardware version
            b"01",  # firmware version
            b" " * 16,  # UTC time: not set
        )
    )
    assert len(record) == TOKEN_INFO_LENGTH
    return record
