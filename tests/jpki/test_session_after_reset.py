"""A warm reset sends the card back to the MF; the host session must find its way back."""

from __future__ import annotations

from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from jpki.client.connection import InProcessConnection
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from tests.conftest import CARDS


def test_a_session_reads_and_signs_after_a_warm_reset() -> None:
    card = VirtualCard.in_memory(CARDS / "taro.json")
    session = JpkiSession(ApduProtocol(InProcessConnection(card)))
    before = session.read_certificate_der(Certificate.AUTH)
    session.verify_pin(Pin.AUTH, "1234")
    card.reset()  # back to the MF; the verified PIN survives a warm reset on this card
    assert session.read_certificate_der(Certificate.AUTH) == before
    assert len(session.sign(Key.AUTH, b"nonce")) == 256
    card.reset()
    assert session.pin_status(Pin.SIGN).tries_left == 5
