"""The host session against the virtual card: certificates, PINs, signatures, a pulled card."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import JpkiFile
from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from jpki.client.connection import InProcessConnection
from jpki.client.errors import (
    ApduError,
    CardRemovedError,
    PinBlockedError,
    PinFormatError,
    PinRequiredError,
    WrongPinError,
)
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from tests.conftest import CardFactory


def session_for(card: VirtualCard) -> JpkiSession:
    return JpkiSession(ApduProtocol(InProcessConnection(card)))


@pytest.fixture
def session(card: VirtualCard) -> JpkiSession:
    return session_for(card)


def test_reads_every_free_certificate_exactly(card: VirtualCard, session: JpkiSession) -> None:
    files = card.image.contents("jpki").files
    for which in (Certificate.AUTH, Certificate.AUTH_CA, Certificate.SIGN_CA):
        assert session.read_certificate_der(which) == files[which.fid]


def test_the_signature_certificate_needs_the_password(
    card: VirtualCard, session: JpkiSession
) -> None:
    with pytest.raises(PinRequiredError, match="signature password"):
        session.read_certificate(Certificate.SIGN)
    session.verify_pin(Pin.SIGN, "ABC123")
    der = session.read_certificate_der(Certificate.SIGN)
    assert der == card.image.contents("jpki").files[JpkiFile.SIGNATURE_CERTIFICATE]


def test_pin_status_for_every_pin_costs_nothing(session: JpkiSession) -> None:
    def tries_left() -> dict[Pin, int]:
        found = {}
        for pin in Pin:
            with contextlib.suppress(ApduError):  # an application the fixture card predates
                found[pin] = session.pin_status(pin).tries_left
        return found

    first = tries_left()
    assert tries_left() == first
    assert {pin: first[pin] for pin in (Pin.AUTH, Pin.SIGN, Pin.CARD_INFO, Pin.CARD_INFO_A,
                                        Pin.CARD_INFO_B)} == {
        Pin.AUTH: 3, Pin.SIGN: 5, Pin.CARD_INFO: 3, Pin.CARD_INFO_A: 10, Pin.CARD_INFO_B: 10,
    }  # fmt: skip


def test_wrong_pins_say_how_many_tries_are_left_then_blocked(session: JpkiSession) -> None:
    with pytest.raises(WrongPinError, match="2 tries left"):
        session.verify_pin(Pin.AUTH, "0000")
    with pytest.raises(WrongPinError, match="1 try left"):
        session.verify_pin(Pin.AUTH, "0000")
    with pytest.raises(WrongPinError, match="now blocked"):
        session.verify_pin(Pin.AUTH, "0000")
    with pytest.raises(PinBlockedError, match="jpki window unblock auth"):
        session.verify_pin(Pin.AUTH, "1234")
    status = session.pin_status(Pin.AUTH)
    assert status.blocked and status.tries_left == 0
    assert session.pin_status(Pin.SIGN).tries_left == 5  # the other PIN is untouched


def test_change_pin_then_the_old_one_fails(session: JpkiSession) -> None:
    session.change_pin(Pin.AUTH, "1234", "9876")
    with pytest.raises(WrongPinError):
        session.verify_pin(Pin.AUTH, "1234")
    session.verify_pin(Pin.AUTH, "9876")
    # A new value the card could never take is refused before the old one is tried.
    with pytest.raises(PinFormatError, match="6 to 16 characters"):
        session.change_pin(Pin.SIGN, "WRONG1", "short")
    assert session.pin_status(Pin.SIGN).tries_left == 5


def test_sign_with_each_key_verifies_against_its_certificate(session: JpkiSession) -> None:
    session.verify_pin(Pin.AUTH, "1234")
    session.verify_pin(Pin.SIGN, "ABC123")
    for key in Key:
        public_key = session.read_certificate(key.certificate).public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        signature = session.sign(key, b"document")
        public_key.verify(signature, b"document", padding.PKCS1v15(), hashes.SHA256())


def test_signing_without_the_pin_says_which_pin(session: JpkiSession) -> None:
    with pytest.raises(PinRequiredError, match="authentication PIN"):
        session.sign(Key.AUTH, b"x")


def test_a_child_card_has_no_signature_password(make_card: CardFactory) -> None:
    session = session_for(make_card("child"))
    with pytest.raises(ApduError):
        session.pin_status(Pin.SIGN)
    with pytest.raises(ApduError, match="no sign certificate"):
        session.read_certificate(Certificate.SIGN)


def test_a_card_pulled_out_mid_session_is_reported(card: VirtualCard, session: JpkiSession) -> None:
    session.verify_pin(Pin.AUTH, "1234")
    card.power_off()
    with pytest.raises(CardRemovedError):
        session.sign(Key.AUTH, b"x")
