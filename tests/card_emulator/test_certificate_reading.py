"""The six ways real clients read a certificate EF (spec §3) all return the exact DER."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import JpkiFile
from tests.conftest import CardFactory

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_AUTH_CERT = bytes.fromhex("00A4020C02000A")


def send(card: VirtualCard, apdu: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    response = card.transmit(raw)
    return response[:-2], int.from_bytes(response[-2:], "big")


def read_ok(card: VirtualCard, apdu: str) -> bytes:
    data, sw = send(card, apdu)
    assert sw == 0x9000, f"{apdu} -> {sw:04X}"
    return data


def total_length(header: bytes) -> int:
    assert header[:2] == b"\x30\x82"
    return int.from_bytes(header[2:4], "big") + 4


def by_256_byte_chunks(card: VirtualCard) -> bytes:
    size = total_length(read_ok(card, "00B0000004"))
    out = b""
    while size - len(out) >= 256:
        out += read_ok(card, f"00B0{len(out):04X}00")
    if size > len(out):
        out += read_ok(card, f"00B0{len(out):04X}{size - len(out):02X}")
    return out


def by_block_index_with_le_00(card: VirtualCard) -> bytes:
    size = total_length(read_ok(card, "00B0000007")[:4])
    out = b""
    for block in range((size + 255) // 256):
        out += read_ok(card, f"00B0{block:02X}0000")
    return out


def header_then_one_extended_read(card: VirtualCard) -> bytes:
    header = read_ok(card, "00B0000004")
    return header + read_ok(card, f"00B00004 00{total_length(header) - 4:04X}")


def one_extended_read_of_everything(card: VirtualCard) -> bytes:
    return read_ok(card, "00B00000000000")


def le_ff_until_6b00(card: VirtualCard) -> bytes:
    out = b""
    while True:
        data, sw = send(card, f"00B0{len(out):04X}FF")
        if sw == 0x6B00:
            return out
        assert sw == 0x9000
        out += data


def by_short_ef_id(card: VirtualCard) -> bytes:
    card.transmit(SELECT_JPKI)  # the short-id reads need no EF SELECT
    header = read_ok(card, "00B08A0004")
    return header + read_ok(card, f"00B08A04 00{total_length(header) - 4:04X}")


METHODS: list[Callable[[VirtualCard], bytes]] = [
    by_256_byte_chunks,
    by_block_index_with_le_00,
    header_then_one_extended_read,
    one_extended_read_of_everything,
    le_ff_until_6b00,
    by_short_ef_id,
]


@pytest.mark.parametrize("method", METHODS, ids=[m.__name__ for m in METHODS])
@pytest.mark.parametrize("holder", ["taro", "hanako-long-address"])
def test_every_reading_method_returns_the_exact_certificate(
    method: Callable[[VirtualCard], bytes], holder: str, make_card: CardFactory
) -> None:
    card = make_card(holder)
    expected = card.image.contents("jpki").files[JpkiFile.AUTHENTICATION_CERTIFICATE]
    assert send(card, SELECT_JPKI)[1] == 0x9000
    assert send(card, SELECT_AUTH_CERT)[1] == 0x9000
    assert method(card) == expected
