"""The APDU codec: every ISO case, short and extended, and what is malformed."""

from __future__ import annotations

import pytest

from card_emulator.vocabulary.apdu import CommandApdu, MalformedApdu, ResponseApdu, redacted_hex


@pytest.mark.parametrize(
    ("hex_apdu", "case", "data_length", "le", "extended"),
    [
        ("00A40000", 1, 0, None, False),
        ("00B0000004", 2, 0, 4, False),
        ("00B0000000", 2, 0, 256, False),
        ("00A4040C0AD392F000260100000001", 3, 10, None, False),
        ("802A00800301020300", 4, 3, 256, False),
        ("00B00000000100", 2, 0, 256, True),
        ("00B00000000000", 2, 0, 65536, True),
        ("00A4020C000002000A", 3, 2, None, True),
        ("802A0080000003010203FFFF", 4, 3, 65535, True),
    ],
)
def test_parse_and_encode_round_trip(
    hex_apdu: str, case: int, data_length: int, le: int | None, extended: bool
) -> None:
    raw = bytes.fromhex(hex_apdu)
    command = CommandApdu.parse(raw)
    assert (command.case, len(command.data), command.le, command.extended) == (
        case,
        data_length,
        le,
        extended,
    )
    assert command.encode() == raw


@pytest.mark.parametrize(
    "hex_apdu", ["", "00", "00A404", "00A4040C05D392", "00B000000000", "00A4040C000003AABB"]
)
def test_malformed(hex_apdu: str) -> None:
    with pytest.raises(MalformedApdu):
        CommandApdu.parse(bytes.fromhex(hex_apdu))


def test_encode_picks_extended_when_needed() -> None:
    assert CommandApdu(0, 0xB0, 0, 0, le=1000).encode() == bytes.fromhex("00B000000003E8")
    assert len(CommandApdu(0x80, 0x2A, 0, 0x80, bytes(300), le=256).encode()) == 4 + 3 + 300 + 2


def test_response_split() -> None:
    response = ResponseApdu.parse(bytes.fromhex("01026982"))
    assert (response.data, response.sw) == (b"\x01\x02", 0x6982)


def test_redaction_hides_pins_but_not_other_data() -> None:
    assert (
        redacted_hex(bytes.fromhex("0020009804 31323334".replace(" ", ""))) == "0020009804********"
    )
    assert "31323334" not in redacted_hex(bytes.fromhex("002401980431323334"))
    assert redacted_hex(bytes.fromhex("00A4020C02000A")) == "00A4020C02000A"
    assert "3132" not in redacted_hex(bytes.fromhex("0020009804313233"))  # malformed, still hidden
