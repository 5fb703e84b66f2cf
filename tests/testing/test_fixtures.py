"""The plugin's fixtures as a test author uses them: jpki_ca, virtual_card, jpki_clock and
pcsc_card, directly and, where one test must not see another's changes, through pytester."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from card_emulator.state.store import read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.keys import Certificate
from jpki.client.connection import InProcessConnection
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from jpki.client.signing import answer_login
from jpki.issuer.provision import ProvisioningError
from jpki.relying_party.login import new_challenge, verify_login
from jpki.testing.pcscd import SOCKET_VARIABLE, PrivatePcscd
from jpki.testing.plugin import CardFactory, JpkiCA, JpkiClock, PcscCardFactory

pytest_plugins = ["pytester"]

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_CARD_INFO = bytes.fromhex("00A4040C0AD3921000310001010408")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
SELECT_SIGN_PIN = bytes.fromhex("00A4020C02001B")
SELECT_CARD_INFO_PIN = bytes.fromhex("00A4020C020011")
OK = b"\x90\x00"
MOMENT = datetime.datetime(2031, 2, 18, 9, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=9)))


def plugin_arguments() -> list[str]:
    """`-p jpki.testing.plugin` unless the installed package's entry point loads it already."""
    installed = importlib.metadata.entry_points(group="pytest11", name="jpki")
    return [] if installed else ["-p", "jpki.testing.plugin"]


def verify(card: VirtualCard, application: bytes, pin_file: bytes, pin: str) -> bytes:
    """The status word of VERIFY with `pin` on the PIN in `pin_file`."""
    for command in (application, pin_file):
        assert card.transmit(command) == OK
    return card.transmit(bytes.fromhex("00200080") + bytes([len(pin)]) + pin.encode())


def certificate(card: VirtualCard) -> x509.Certificate:
    return JpkiSession(ApduProtocol(InProcessConnection(card))).read_certificate(Certificate.AUTH)


# virtual_card ------------------------------------------------------------------------------


def test_a_virtual_card_is_a_card_issued_by_the_test_ca(
    virtual_card: CardFactory, jpki_ca: JpkiCA, tmp_path: Path
) -> None:
    card = virtual_card()
    assert isinstance(card, VirtualCard)
    assert card.path is not None and card.path.parent == tmp_path and card.path.exists()
    assert card.reset() == card.atr
    card.power_off()
    assert card.power_on() == card.atr
    challenge = new_challenge()
    response = answer_login(JpkiSession(ApduProtocol(InProcessConnection(card))), challenge, "1234")
    assert verify_login(challenge, response, jpki_ca.trust_store).identity
    serial = certificate(card).serial_number
    assert jpki_ca.ca.find_issued(serial) is not None  # in the test's own CA's record


def test_a_virtual_card_carries_its_faults_and_keeps_its_file(virtual_card: CardFactory) -> None:
    card = virtual_card()
    card.faults.add("sw=6A82,ins=A4,nth=1")
    assert card.transmit(SELECT_JPKI) == b"\x6a\x82"
    assert verify(card, SELECT_JPKI, SELECT_AUTH_PIN, "0000") == b"\x63\xc2"
    assert card.path is not None
    assert read_image(card.path).contents("jpki").pins[0x0018].tries_left == 2


def test_cards_of_one_sample_share_their_issuance_but_not_their_state(
    virtual_card: CardFactory,
) -> None:
    first, second = virtual_card(), virtual_card(file_backed=False)
    assert certificate(first) == certificate(second)  # provisioned once for the session
    assert second.path is None
    assert verify(second, SELECT_JPKI, SELECT_AUTH_PIN, "0000") == b"\x63\xc2"
    assert verify(first, SELECT_JPKI, SELECT_AUTH_PIN, "1234") == OK
    assert first.path is not None and first.path.name == "taro.json"


def test_a_virtual_card_with_pins_of_its_own(virtual_card: CardFactory) -> None:
    card = virtual_card(auth_pin="5678", sign_pin="XYZ789")
    assert verify(card, SELECT_JPKI, SELECT_AUTH_PIN, "1234") == b"\x63\xc2"
    assert verify(card, SELECT_JPKI, SELECT_AUTH_PIN, "5678") == OK
    assert verify(card, SELECT_JPKI, SELECT_SIGN_PIN, "XYZ789") == OK
    # The other four-digit PINs were the authentication PIN's value, and follow it.
    assert verify(card, SELECT_CARD_INFO, SELECT_CARD_INFO_PIN, "5678") == OK
    different = virtual_card("different-pins", auth_pin="4321")
    assert verify(different, SELECT_CARD_INFO, SELECT_CARD_INFO_PIN, "5678") == OK


def test_virtual_card_refuses_what_no_card_could_be(virtual_card: CardFactory) -> None:
    with pytest.raises(ValueError, match="no sample 'nobody'"):
        virtual_card("nobody")
    with pytest.raises(ValueError, match="sample 'child' has no signature password"):
        virtual_card("child", sign_pin="ABC123")
    with pytest.raises(ProvisioningError, match="exactly 4 digits"):
        virtual_card(auth_pin="12345")
    with pytest.raises(AttributeError, match="no card setting 'colour'"):
        virtual_card(settings={"colour": "red"})


def test_a_virtual_card_with_settings(virtual_card: CardFactory) -> None:
    atr = bytes.fromhex("3B8880010000000000000000")
    card = virtual_card(settings={"atr": atr, "admin_apdus": False})
    assert card.atr == atr
    assert card.power_on() == atr
    assert card.image.settings.admin_apdus is False


# jpki_ca ------------------------------------------------------------------------------------


def test_the_test_ca_is_a_jpki_home_for_the_command_line(
    virtual_card: CardFactory, jpki_ca: JpkiCA
) -> None:
    card = virtual_card()
    assert jpki_ca.home / "ca" == jpki_ca.directory
    assert (jpki_ca.directory / "ca.json").exists()
    assert len(jpki_ca.certificates) == 2  # the signature and authentication CAs
    assert card.path is not None
    card.close()  # the command below opens the card file itself
    login = subprocess.run(
        [sys.executable, "-m", "cli", "--card", str(card.path), "login", "--pin", "1234", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **jpki_ca.environment},
        check=False,
    )
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["valid"] is True


def test_what_a_test_revokes_stays_in_its_own_ca(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from cryptography import x509
        from jpki.issuer.ca import RevocationReason

        def serial(card):
            der = card.image.contents("jpki").files[0x000A]
            return x509.load_der_x509_certificate(der).serial_number

        def test_revokes(virtual_card, jpki_ca):
            jpki_ca.ca.revoke(serial(virtual_card()), RevocationReason.KEY_COMPROMISE)
            assert jpki_ca.ca.find_issued(serial(virtual_card())).revoked

        def test_sees_no_revocation(virtual_card, jpki_ca):
            assert not jpki_ca.ca.find_issued(serial(virtual_card())).revoked
        """
    )
    result = pytester.runpytest(*plugin_arguments(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_card_asked_for_after_the_ca_is_in_use_is_in_its_record(
    virtual_card: CardFactory, jpki_ca: JpkiCA
) -> None:
    assert jpki_ca.ca.find_issued(1) is None  # the test's CA is copied now
    card = virtual_card("unknown-era")  # not yet made in this session: issued by the test's CA
    assert jpki_ca.ca.find_issued(certificate(card).serial_number) is not None
    assert certificate(virtual_card("unknown-era")) == certificate(card)  # and kept for the test


# jpki_clock ---------------------------------------------------------------------------------


def test_the_clock_is_set_and_advanced(jpki_clock: JpkiClock, virtual_card: CardFactory) -> None:
    assert jpki_clock.set(MOMENT) == MOMENT
    assert MOMENT <= jpki_clock.now() < MOMENT + datetime.timedelta(minutes=1)
    assert os.environ["JPKI_NOW"] == MOMENT.isoformat()
    card = virtual_card()  # issued at the clock's time
    assert certificate(card).not_valid_before_utc == MOMENT
    later = jpki_clock.advance(days=365)
    assert later - MOMENT >= datetime.timedelta(days=365)
    assert jpki_clock.set("2032-01-01") == datetime.datetime(2032, 1, 1, tzinfo=datetime.UTC)
    jpki_clock.advance(datetime.timedelta(hours=1))
    in_environment = datetime.datetime.fromisoformat(os.environ["JPKI_NOW"])
    hour_later = datetime.datetime(2032, 1, 1, 1, tzinfo=datetime.UTC)
    assert hour_later <= in_environment < hour_later + datetime.timedelta(minutes=1)


def test_the_clock_and_its_variable_are_restored_after_a_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import os
        from jpki import clock

        def test_sets(jpki_clock):
            jpki_clock.set("2031-02-18T09:00:00+09:00")
            assert clock.now().year == 2031

        def test_sees_the_time_before():
            assert os.environ["JPKI_NOW"] == "2040-01-01T00:00:00+00:00"
            assert clock.now().year == 2040
        """
    )
    monkeypatch.setenv("JPKI_NOW", "2040-01-01T00:00:00+00:00")
    # In a process of its own: jpki.clock is process-wide, and this one's must stay as it is.
    result = pytester.runpytest_subprocess(*plugin_arguments(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


# pcsc_card ----------------------------------------------------------------------------------


@pytest.mark.reader_stack
def test_pcsc_card_gives_jpki_subprocesses_the_reader_and_the_ca(
    pcsc_card: PcscCardFactory,
) -> None:
    served = pcsc_card("taro")
    login = subprocess.run(
        [sys.executable, "-m", "cli", "login", "--pin", "1234", "--json"],
        capture_output=True,
        text=True,
        env=served.environment,  # $PCSCLITE_CSOCK_NAME, $JPKI_READER, $JPKI_HOME
        check=False,
    )
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["valid"] is True


@pytest.mark.reader_stack
def test_two_cards_in_the_two_slots(pcsc_card: PcscCardFactory, virtual_card: CardFactory) -> None:
    first = pcsc_card()
    second = pcsc_card(virtual_card("child"))
    assert (first.reader, second.reader) == ("Virtual PCD 00 00", "Virtual PCD 00 01")
    with pytest.raises(ValueError, match="2 slots, both in use"):
        pcsc_card()


def test_pcsc_card_is_skipped_with_the_reason_where_pcscd_cannot_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_needs_a_reader(pcsc_card):\n    pcsc_card()\n")
    monkeypatch.setenv("PATH", str(pytester.mkdir("bin")))  # no pcscd on it
    result = pytester.runpytest_subprocess(*plugin_arguments(), "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no private pcscd here: pcscd is not installed (Debian: pcscd)*"])


@pytest.mark.reader_stack
def test_a_process_that_talked_to_another_pcscd_is_told_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reason = PrivatePcscd.missing()
    if reason is not None:
        pytest.skip(reason)
    pytester.makepyfile(
        """
        from smartcard.System import readers

        readers()  # this process's first PC/SC call: libpcsclite takes the other pcscd's socket

        def test_needs_the_private_pcscd(pcsc_card):
            pcsc_card()
        """
    )
    with PrivatePcscd(tmp_path / "other") as other:
        monkeypatch.setenv(SOCKET_VARIABLE, str(other.socket_path))
        result = pytester.runpytest_subprocess(*plugin_arguments(), "-p", "no:cacheprovider")
        assert other.process is not None
        pid = other.process.pid
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*this process does not reach the private pcscd at * (it talks to the pcscd with "
            f"process id {pid}): libpcsclite reads $PCSCLITE_CSOCK_NAME once*"
        ]
    )
