"""The virtual card in a real PC/SC reader: pyscard and the jpki CLI through pcscd and vpcd."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from card_emulator.state.store import read_image
from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from jpki.client.connection import PcscConnection
from jpki.client.errors import CardRemovedError
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from jpki.testing.pcscd import PrivatePcscd, wait_for
from tests.conftest import CARDS
from tests.pcsc.harness import READER, SECOND_READER, ServedCard

ONE_DAY = datetime.timedelta(days=1)

pytestmark = pytest.mark.reader_stack

ROOT = Path(__file__).resolve().parents[2]


def jpki(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pyscard_sees_the_atr_and_reads_the_certificate(
    served: ServedCard, card_file: Path
) -> None:
    from smartcard.System import readers  # pyscard: the reader_stack marker skips without it

    reader = next(r for r in readers() if str(r) == READER)
    connection = reader.createConnection()
    connection.connect()
    try:  # never leave a card handle in pcscd
        assert bytes(connection.getATR()) == bytes.fromhex("3BE000FF8131FE4514")
        select = list(bytes.fromhex("00A4040C0AD392F000260100000001"))
        data, sw1, sw2 = connection.transmit(select)
        assert (sw1, sw2) == (0x90, 0x00)
        # An extended APDU passes end to end: the whole certificate in one READ BINARY.
        data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00B08A0000" + "0000")))
        assert (sw1, sw2) == (0x90, 0x00)
        expected = read_image(card_file).contents("jpki").files[Certificate.AUTH.fid]
        assert bytes(data) == expected
    finally:
        connection.disconnect()


def test_the_host_session_works_unchanged_over_pcsc(served: ServedCard, card_file: Path) -> None:
    with PcscConnection("PCD 00 00") as connection:
        session = JpkiSession(ApduProtocol(connection))
        assert session.pin_status(Pin.AUTH).tries_left == 3
        session.verify_pin(Pin.AUTH, "1234")
        signature = session.sign(Key.AUTH, b"over pcsc")
        assert len(signature) == 256
        assert (
            session.read_certificate_der(Certificate.AUTH)
            == (read_image(card_file).contents("jpki").files[Certificate.AUTH.fid])
        )


def test_a_card_pulled_out_mid_session_is_reported(served: ServedCard) -> None:
    with PcscConnection(READER) as connection:
        session = JpkiSession(ApduProtocol(connection))
        session.verify_pin(Pin.AUTH, "1234")
        served.remove()
        with pytest.raises(CardRemovedError):
            session.sign(Key.AUTH, b"x")
    served.insert()
    with PcscConnection(READER) as connection:  # back in: a fresh, unverified session
        session = JpkiSession(ApduProtocol(connection))
        assert session.pin_status(Pin.AUTH).tries_left == 3


def test_a_wrong_pin_over_pcsc_is_on_disk_when_the_answer_arrives(
    served: ServedCard, card_file: Path
) -> None:
    with PcscConnection(READER) as connection:
        session = JpkiSession(ApduProtocol(connection))
        with pytest.raises(Exception, match="2 tries left"):
            session.verify_pin(Pin.AUTH, "0000")
        assert read_image(card_file).contents("jpki").pins[Pin.AUTH.fid].tries_left == 2


def test_the_cli_through_a_reader(served: ServedCard, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "ca").mkdir(parents=True)
    for name in ("signature-ca.pem", "authentication-ca.pem"):
        (home / "ca" / name).write_bytes((CARDS.parent / "ca" / name).read_bytes())
    listed = json.loads(jpki("readers", "--json", home=home).stdout)
    assert {"reader": READER, "card": True} in listed
    assert {"reader": SECOND_READER, "card": False} in listed
    status = jpki("--reader", "00 00", "pin", "status", "--json", home=home)
    assert status.returncode == 0, status.stderr
    rows = {row["key"]: row for row in json.loads(status.stdout)}
    assert rows["sign"]["tries_left"] == 5
    document = tmp_path / "doc.txt"
    document.write_text("signed through PC/SC\n")
    # No --reader and no card file in JPKI_HOME: the only reader holding a card.
    signed = jpki("sign", "--pin", "ABC123", str(document), home=home)
    assert signed.returncode == 0, signed.stderr
    # at a moment when the fixture card and CA are valid: the committed certificates expire
    sign_der = read_image(CARDS / "taro.json").contents("jpki").files[Certificate.SIGN.fid]
    valid_at = x509.load_der_x509_certificate(sign_der).not_valid_before_utc + ONE_DAY
    verified = jpki(
        "verify", str(document), f"{document}.p7s", "--at", valid_at.isoformat(), home=home
    )
    assert verified.returncode == 0 and verified.stdout.startswith("VALID"), verified.stdout
    pem = jpki("--reader", "Virtual PCD 00 00", "cert", "read", "auth", home=home)
    assert pem.stdout.startswith("-----BEGIN CERTIFICATE-----")
    wrong = jpki("--reader", "nothing-like-this", "pin", "status", home=home)
    assert wrong.returncode == 7
    assert wrong.stderr.startswith("jpki: error: no reader matches 'nothing-like-this'")


def test_two_cards_in_two_slots(pcscd: PrivatePcscd, card_file: Path, tmp_path: Path) -> None:
    child = tmp_path / "child.json"
    child.write_bytes((CARDS / "child.json").read_bytes())
    with ServedCard(card_file, child) as cards:
        with PcscConnection(SECOND_READER) as connection:
            session = JpkiSession(ApduProtocol(connection))
            with pytest.raises(Exception, match="no sign certificate"):
                session.read_certificate(Certificate.SIGN)
        with PcscConnection(READER) as connection:
            assert JpkiSession(ApduProtocol(connection)).pin_status(Pin.SIGN).tries_left == 5
        cards.stop()
        output = cards.text
    assert f"'{READER}'" in output and f"'{SECOND_READER}'" in output


def test_serving_survives_a_pcscd_restart(pcscd: PrivatePcscd, served: ServedCard) -> None:
    pcscd.restart()
    wait_for(READER, present=True)
    with PcscConnection(READER) as connection:
        assert JpkiSession(ApduProtocol(connection)).pin_status(Pin.AUTH).tries_left == 3
