"""`jpki serve --control` through a real pcscd: `jpki control` inserts, removes and power-cycles
the served card, swaps in another card file and reads the counters, and pyscard sees each of it
as a client of a real reader does; the card comes back by itself when pcscd restarts.

`ServedCard` (the server in a subprocess, with its control API) and `trace_events` (the trace,
checked for PINs on every read) serve the other control tests too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from card_emulator.state.store import read_image
from card_emulator.vocabulary.identifiers import AID, JpkiFile
from jpki.testing.pcscd import PrivatePcscd, wait_for
from tests.cli.test_card_commands import jpki
from tests.conftest import AUTH_PIN, CARDS, SIGN_PIN
from tests.pcsc.harness import READER, ServedCard
from tests.pcsc.test_whole_card import connected

pytestmark = pytest.mark.reader_stack

SELECT_JPKI = bytes.fromhex("00A4040C0A") + AID.JPKI.value
WRONG_AUTH_PIN = b"9731"


def select_ef(fid: int) -> bytes:
    return bytes.fromhex("00A4020C02") + fid.to_bytes(2, "big")


def verify(secret: bytes) -> bytes:
    return bytes([0x00, 0x20, 0x00, 0x80, len(secret)]) + secret


READ_BINARY = bytes.fromhex("00B0000000")  # short Le 00: the first 256 bytes
RETRY_QUERY = bytes.fromhex("00200080")


def assert_no_pin(events: Iterable[dict[str, Any]], pins: Iterable[bytes]) -> None:
    """No PIN in any event: not in a command's hex, not in any text, in hex or ASCII; and every
    VERIFY with data shows its data masked."""
    for event in events:
        command, text = event["command"].upper(), event["text"]
        for pin in pins:
            assert pin.hex().upper() not in command, event
            assert pin.hex().upper() not in text.upper() and pin.decode() not in text, event
        if command[2:4] == "20" and len(command) > 8:  # VERIFY with data
            length = int(command[8:10], 16)
            assert command[10:] == "*" * 2 * length, event


def trace_events(home: Path, pins: Iterable[bytes] = (AUTH_PIN, SIGN_PIN)) -> list[dict[str, Any]]:
    """`jpki control trace --json`: every event the server holds, checked for PINs."""
    result = jpki(home, "control", "trace", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert_no_pin(events, [*pins, WRONG_AUTH_PIN])
    for pin in [*pins, WRONG_AUTH_PIN]:  # nor anywhere else in what the command printed
        assert pin.hex().upper() not in result.stdout.upper()
    return events


def slot_state(served: ServedCard, slot: int = 0) -> dict[str, Any]:
    listed = json.loads(served.control("list", "--json").stdout)
    state: dict[str, Any] = listed[slot]
    return state


@pytest.fixture
def controlled(pcscd: PrivatePcscd, jpki_home: Path) -> Iterator[ServedCard]:
    with ServedCard(jpki_home / "card.json", home=jpki_home, args=["--control"]) as served:
        yield served


# Insert, remove, power-cycle -----------------------------------------------------------------


def test_remove_and_insert_are_seen_by_pcscd_and_pyscard(controlled: ServedCard) -> None:
    from smartcard.Exceptions import CardConnectionException

    with connected(READER) as card:
        assert card.send(SELECT_JPKI) == (b"", 0x9000)
        removed = controlled.control("remove")
        assert removed.stdout == f"slot 0: card removed ({READER})\n"
        wait_for(READER, present=False)
        with pytest.raises(CardConnectionException):
            card.send(SELECT_JPKI)
    assert slot_state(controlled)["inserted"] is False

    inserted = controlled.control("insert", "--json")
    assert json.loads(inserted.stdout)["inserted"] is True
    wait_for(READER, present=True)
    with connected(READER) as card:
        assert card.send(SELECT_JPKI) == (b"", 0x9000)
    kinds = [event["kind"] for event in trace_events(controlled.home)]
    assert kinds.index("removed") < kinds.index("inserted")


def test_a_power_cycle_forgets_the_verified_password(controlled: ServedCard) -> None:
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        assert card.send(select_ef(JpkiFile.SIGNATURE_PIN)) == (b"", 0x9000)
        assert card.send(verify(SIGN_PIN)) == (b"", 0x9000)
        assert card.send(select_ef(JpkiFile.SIGNATURE_CERTIFICATE))[1] == 0x9000
        assert card.send(READ_BINARY)[1] == 0x9000

        controlled.control("power-cycle")

        # Still in the reader, but freshly powered: back at the MF, the password forgotten.
        assert card.send(READ_BINARY)[1] != 0x9000
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.SIGNATURE_CERTIFICATE))
        assert card.send(READ_BINARY) == (b"", 0x6982)
    assert "power" in [event["kind"] for event in trace_events(controlled.home)]


def test_counters_follow_a_wrong_pin_from_pyscard(controlled: ServedCard) -> None:
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_PIN))
        assert card.send(verify(WRONG_AUTH_PIN)) == (b"", 0x63C2)
    counters = json.loads(controlled.control("counters", "--json").stdout)
    auth = next(row for row in counters if row["pin"] == "auth")
    assert (auth["tries_left"], auth["max_tries"], auth["blocked"]) == (2, 3, False)
    assert auth["protects"] == "logging in (the authentication key)"
    assert "the municipal window" in auth["unblocked_by"]
    assert len(counters) >= 10  # every key reference of the card, each with its lock
    text = controlled.control("counters").stdout
    assert "authentication PIN" in text and "2 of 3 tries left" in text
    trace_events(controlled.home)


def test_another_card_file_goes_into_the_emptied_slot(
    controlled: ServedCard, jpki_home: Path
) -> None:
    other = jpki_home / "hanako.json"
    shutil.copyfile(CARDS / "hanako-long-address.json", other)
    refused = jpki(jpki_home, "control", "insert", "--card", str(other))
    assert refused.returncode == 9
    assert refused.stderr == (
        f"jpki: error: slot 0 holds {jpki_home / 'card.json'}: remove it before inserting {other}\n"
    )

    controlled.control("remove")
    wait_for(READER, present=False)
    controlled.control("insert", "--card", str(other))
    wait_for(READER, present=True)
    assert slot_state(controlled)["card"] == str(other)
    expected = read_image(other).contents("jpki").files[JpkiFile.AUTHENTICATION_CERTIFICATE]
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
        data, sw = card.send(bytes.fromhex("00B0000000") + b"\x00\x00")  # extended Le: all
        assert (data, sw) == (expected, 0x9000)
    # The first card is let go of: another process may use it now.
    info = jpki(jpki_home, "card", "info", "--json")
    assert info.returncode == 0, info.stderr


# The reader disappearing --------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["serve --fault", "jpki control fault add"])
def test_the_card_comes_back_when_pcscd_restarts_with_its_faults(
    pcscd: PrivatePcscd, jpki_home: Path, surface: str
) -> None:
    fault = "sw=6A82,ins=B0"
    args = ["--control", "--fault", fault] if surface == "serve --fault" else ["--control"]
    with ServedCard(jpki_home / "card.json", home=jpki_home, args=args) as served:
        if surface != "serve --fault":
            served.control("fault", "add", fault)
        pcscd.restart()  # the reader disappears, and a new pcscd finds vpcd's slots again
        wait_for(READER, present=True)
        with connected(READER) as card:
            assert card.send(SELECT_JPKI) == (b"", 0x9000)
            card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
            assert card.send(READ_BINARY) == (b"", 0x6A82)  # the fault outlived the reader
        assert slot_state(served)["inserted"] is True
        fired = [e for e in trace_events(jpki_home) if e["kind"] == "fault"]
        assert [e["text"] for e in fired] == [
            "fault 1 (sw=6A82,ins=B0): answered 6A82 without running the command"
        ]
