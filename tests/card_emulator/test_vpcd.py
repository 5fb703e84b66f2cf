"""The vpcd wire protocol, spoken to the transport from a loopback socket in vpcd's place."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from card_emulator.transports.memory import VirtualCard
from card_emulator.transports.vpcd import VpcdLink, reader_name
from tests.conftest import CardFactory

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
VERIFY_AUTH = bytes.fromhex("002000980431323334")
SIGN = bytes.fromhex("802A009720") + bytes(32) + b"\x00"


class FakeVpcd:
    """The listening side of one vpcd slot, on an ephemeral loopback port."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peer: socket.socket | None = None

    def accept(self) -> None:
        self.listener.settimeout(10)
        self.peer, _ = self.listener.accept()
        self.peer.settimeout(10)

    def send(self, payload: bytes) -> None:
        assert self.peer is not None
        self.peer.sendall(len(payload).to_bytes(2, "big") + payload)

    def receive(self) -> bytes:
        assert self.peer is not None
        header = self._exactly(2)
        return self._exactly(int.from_bytes(header, "big"))

    def _exactly(self, size: int) -> bytes:
        assert self.peer is not None
        data = b""
        while len(data) < size:
            chunk = self.peer.recv(size - len(data))
            assert chunk, "the card closed the link"
            data += chunk
        return data

    def exchange(self, apdu: bytes) -> bytes:
        self.send(apdu)
        return self.receive()


@pytest.fixture
def link(card: VirtualCard) -> Iterator[tuple[FakeVpcd, VpcdLink]]:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    vpcd.accept()
    yield vpcd, served
    served.stop()
    thread.join(timeout=10)
    vpcd.listener.close()


def test_atr_on_request_and_silence_for_power_and_reset(link: tuple[FakeVpcd, VpcdLink]) -> None:
    vpcd, _ = link
    for control in (b"\x01", b"\x02", b"\x00", b"\x01"):
        vpcd.send(control)  # no answer: the next frame read is the ATR
    vpcd.send(b"\x04")
    assert vpcd.receive() == bytes.fromhex("3BE000FF8131FE4514")
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"


def test_power_off_clears_the_security_state_and_reset_keeps_it(
    link: tuple[FakeVpcd, VpcdLink],
) -> None:
    vpcd, _ = link
    vpcd.send(b"\x01")
    vpcd.exchange(SELECT_JPKI)
    assert vpcd.exchange(VERIFY_AUTH) == b"\x90\x00"
    vpcd.send(b"\x02")
    vpcd.exchange(SELECT_JPKI)
    assert len(vpcd.exchange(SIGN)) == 258
    vpcd.send(b"\x00")
    vpcd.send(b"\x01")
    vpcd.exchange(SELECT_JPKI)
    assert vpcd.exchange(SIGN) == b"\x69\x82"


def test_empty_frames_are_ignored_and_malformed_apdus_answered(
    link: tuple[FakeVpcd, VpcdLink],
) -> None:
    vpcd, _ = link
    vpcd.send(b"\x01")
    vpcd.send(b"")
    assert vpcd.exchange(b"\x00\xa4\x04") == b"\x67\x00"
    assert vpcd.exchange(bytes.fromhex("00B00000000000")) == b"\x69\x86"


def test_reconnects_after_the_link_drops_and_can_be_removed(make_card: CardFactory) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(make_card(), "127.0.0.1", vpcd.port)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    vpcd.accept()
    assert vpcd.peer is not None
    vpcd.peer.close()  # pcscd went away
    vpcd.accept()  # the card comes back by itself
    vpcd.send(b"\x01")
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    served.remove()
    assert vpcd.peer.recv(1) == b""  # removal closes the link
    served.insert()
    vpcd.accept()
    served.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    vpcd.listener.close()


def test_reader_names_follow_debian_slots() -> None:
    assert reader_name(35963) == "Virtual PCD 00 00"
    assert reader_name(35964) == "Virtual PCD 00 01"
