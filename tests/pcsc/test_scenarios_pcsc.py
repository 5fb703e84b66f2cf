"""The scenario guide through a real reader: the scenarios of tests/cli/test_scenarios.py with the
card served by `jpki serve` to a private pcscd (vpcd) and driven by pyscard alone.

The forgotten auth PIN is reset by the administration APDUs (EXTERNAL AUTHENTICATE with the
AES-CMAC of `jpki window admin-key`, RESET RETRY COUNTER), the administrator's lock reached and
restored on the way; the lost card is suspended and renewed by `jpki` while the card is out of
the reader, and read back over APDUs after each step; so are the move (the card-info AP's
address and the re-issued signature certificate) and the fifth birthday (the expired, then the
renewed authentication certificate). After every step the same witnesses as in
memory agree, and `jpki pin status --reader` reads the counters through pcscd as well.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from jpki.attributes import BasicAttributes, parse_basic_attributes
from jpki.certificates import basic_attributes
from jpki.issuer.ca import TestCA
from jpki.testing.pcscd import PrivatePcscd
from tests.cli import test_scenarios as scenarios
from tests.cli.test_card_commands import jpki
from tests.cli.test_scenarios import Terminal, Truth, at, ok
from tests.pcsc.harness import READER, ServedCard
from tests.pcsc.test_whole_card import Card, connected, read_free_ef

pytestmark = pytest.mark.reader_stack

# The scenarios' card: issued once for this module, copied for each test.
issued = scenarios.issued
home = scenarios.home
truth = scenarios.truth


@contextmanager
def through_pcscd(card: Path) -> Iterator[Terminal]:
    """The card file's card served in the first vpcd slot and connected with pyscard; once the
    script lets go, `jpki pin status --reader` must read the counters the script saw."""
    with ServedCard(card):
        with connected(READER) as connection:
            terminal = Terminal(connection.send)
            yield terminal
        if terminal.seen:
            result = jpki(card.parent, "--reader", READER, "pin", "status", "--json")
            assert result.returncode == 0, result.stderr
            read = {row["key"]: row["tries_left"] for row in json.loads(result.stdout)}
            assert read == terminal.seen


@contextmanager
def served(card: Path) -> Iterator[Card]:
    """The card file's card served in the first vpcd slot, as pyscard sees it; `jpki` may change
    the file again only once this lets go."""
    with ServedCard(card), connected(READER) as connection:
        yield connection


# What a client sends, byte for byte (jpki-card.md).
CARD_INFO_AP = bytes.fromhex("D3921000310001010408")
JPKI_AP = bytes.fromhex("D392F000260100000001")
CARD_INFO_PIN, BASIC_ATTRIBUTES = 0x0011, 0x0002
SIGNATURE_PASSWORD, SIGNATURE_CERTIFICATE, AUTHENTICATION_CERTIFICATE = 0x001B, 0x0001, 0x000A
CERTIFICATE_HEADER = 4  # 30 82 HH LL
ATTRIBUTES_HEADER = 5  # FF 20 82 HH LL


def attributes_read(card: Card, pin: str = scenarios.AUTH_PIN) -> BasicAttributes:
    """card-info AP, `SELECT EF 0011`, VERIFY `00 20 00 80`, then EF 0002 read and parsed."""
    card.select_ap(CARD_INFO_AP)
    card.select_ef(CARD_INFO_PIN)
    card.verify(pin.encode())
    return parse_basic_attributes(read_free_ef(card, BASIC_ATTRIBUTES, ATTRIBUTES_HEADER))


def certificate_read(card: Card, fid: int, password: str | None = None) -> x509.Certificate:
    """A certificate EF of the JPKI AP, after VERIFY of the signature password (EF 001B) when
    given."""
    card.select_ap(JPKI_AP)
    if password is not None:
        card.select_ef(SIGNATURE_PASSWORD)
        card.verify(password.encode())
    return x509.load_der_x509_certificate(read_free_ef(card, fid, CERTIFICATE_HEADER))


def ca_record(home: Path) -> dict[str, str | None]:
    """The CA's record: serial → revocation reason, None while good."""
    ca = TestCA.load(home / "ca")
    try:
        return {
            f"{entry.serial:X}": None if entry.revocation is None else entry.revocation.reason.value
            for entry in ca.issued
        }
    finally:
        ca.close()


def serial(certificate: x509.Certificate) -> str:
    return f"{certificate.serial_number:X}"


def test_forgotten_auth_pin_reset_by_the_administration_apdus(
    pcscd: PrivatePcscd, home: Path, truth: Truth
) -> None:
    scenarios.reset_by_apdus(home, truth, through_pcscd)


def test_lost_card_suspended_then_found_and_renewed(
    pcscd: PrivatePcscd, home: Path, truth: Truth
) -> None:
    scenarios.lost_card(home, truth, through_pcscd)


def test_moved_house_the_reader_shows_the_new_address_and_signature_certificate(
    pcscd: PrivatePcscd, home: Path, truth: Truth
) -> None:
    """`jpki card change --reissue-sign` while the card is out of the reader; served again, the
    card-info AP holds the new address and EF 0001 the re-issued signature certificate."""
    scenarios.witnesses(home, scenarios.SIGNED, truth, through_pcscd)
    with served(truth.card) as card:
        assert attributes_read(card).address == scenarios.ADDRESS
        before = certificate_read(card, SIGNATURE_CERTIFICATE, scenarios.SIGN_PIN)
        kept = certificate_read(card, AUTHENTICATION_CERTIFICATE)
    assert serial(before) == truth.on_card["sign"]
    assert basic_attributes(before)["address"] == scenarios.ADDRESS

    changed = json.loads(
        ok(at(scenarios.MOVED, home, "card", "change", "--address", scenarios.NEW_ADDRESS,
              "--reissue-sign", "--json")).stdout
    )  # fmt: skip
    assert changed["revoked"] == {
        "sign": {"serial": serial(before), "reason": "affiliationChanged"}
    }
    truth.revoked(serial(before), "affiliationChanged")
    truth.issued("sign", changed["issued"]["sign"])
    truth.address = scenarios.NEW_ADDRESS
    scenarios.witnesses(home, scenarios.MOVED, truth, through_pcscd)

    with served(truth.card) as card:
        assert attributes_read(card).address == scenarios.NEW_ADDRESS
        after = certificate_read(card, SIGNATURE_CERTIFICATE, scenarios.SIGN_PIN)
        assert certificate_read(card, AUTHENTICATION_CERTIFICATE) == kept
    assert serial(after) != serial(before)
    assert serial(after) == changed["issued"]["sign"]
    assert basic_attributes(after)["address"] == scenarios.NEW_ADDRESS
    record = ca_record(home)
    assert record[serial(after)] is None
    assert record[serial(before)] == "affiliationChanged"
    assert record[serial(kept)] is None


def test_fifth_birthday_the_reader_shows_the_expired_then_the_renewed_certificate(
    pcscd: PrivatePcscd, home: Path, truth: Truth
) -> None:
    """The day after the fifth birthday EF 000A still holds the expired authentication
    certificate; after `jpki card renew` (the card out of the reader), the renewed one, to the
    next fifth birthday."""
    fifth_birthday = datetime.datetime(2026, 2, 17, 14, 59, 59, tzinfo=datetime.UTC)
    day_after = datetime.datetime.fromisoformat(scenarios.DAY_AFTER)
    for kind, on_card in truth.on_card.items():
        truth.certificates[on_card] = (kind, scenarios.EXPIRED)
    scenarios.witnesses(home, scenarios.DAY_AFTER, truth, through_pcscd)
    with served(truth.card) as card:
        expired = certificate_read(card, AUTHENTICATION_CERTIFICATE)
    assert serial(expired) == truth.on_card["auth"]
    assert expired.not_valid_after_utc == fifth_birthday < day_after

    renewed = json.loads(ok(at(scenarios.RENEWED, home, "card", "renew", "--json")).stdout)
    assert renewed["replaced"] == truth.on_card
    for kind in scenarios.KINDS:
        truth.issued(kind, renewed["issued"][kind])
    scenarios.witnesses(home, scenarios.RENEWED, truth, through_pcscd)

    with served(truth.card) as card:
        current = certificate_read(card, AUTHENTICATION_CERTIFICATE)
    assert serial(current) == renewed["issued"]["auth"] != serial(expired)
    assert current.not_valid_before_utc <= datetime.datetime.fromisoformat(scenarios.RENEWED)
    # To the next fifth birthday, 2031-02-17 23:59:59 JST.
    assert current.not_valid_after_utc == fifth_birthday.replace(year=2031)
