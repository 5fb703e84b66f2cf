"""The vpcd wire protocol, spoken to the transport from a loopback socket in vpcd's place."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from card_emulator.transports.memory import VirtualCard
from card_emulator.transports.vpcd import CONNECT_TIMEOUT, VpcdLink, reader_name
from tests.conftest import CardFactory

LINK_THREAD = "vpcd-link"
PROMPTLY = 2.0  # seconds for serve_forever to return after stop(): well under CONNECT_TIMEOUT
assert PROMPTLY < CONNECT_TIMEOUT

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

    def answering_card(self, within: float) -> bytes | None:
        """The ATR from the first queued link whose card answers, as vpcd polls; None if none.

        Links the card closed are skipped: a connect that stop() or remove() cut short may sit in
        the accept queue.
        """
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.listener.settimeout(left)
            try:
                self.peer, _ = self.listener.accept()
            except TimeoutError:
                return None
            self.peer.settimeout(10)
            # A closed link ends in EOF, or in a reset when our request reached it unread.
            with contextlib.suppress(AssertionError, ConnectionError):
                self.send(b"\x04")
                return self.receive()
        return None

    def closed_by_card(self) -> bool:
        """Waits for the card's side of the link to close (True) or for data (False)."""
        assert self.peer is not None
        try:
            return self.peer.recv(1) == b""
        except ConnectionResetError:  # closed with something of ours unread
            return True


def start(served: VpcdLink) -> threading.Thread:
    thread = threading.Thread(target=served.serve_forever, name=LINK_THREAD, daemon=True)
    thread.start()
    return thread


def assert_stops(served: VpcdLink, thread: threading.Thread) -> None:
    served.stop()
    thread.join(timeout=PROMPTLY)
    assert not thread.is_alive(), "serve_forever lost the stop request"


class ConnectSpy:
    """`socket.connect` as the link's thread calls it: counts attempts, runs hooks around them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts = threading.Semaphore(0)
        self.before: Callable[[], None] = lambda: None
        self.after: Callable[[], None] = lambda: None
        original = socket.socket.connect

        def connect(sock: socket.socket, address: tuple[str, int]) -> None:
            if threading.current_thread().name != LINK_THREAD:
                return original(sock, address)
            self.attempts.release()
            self.before()
            try:
                return original(sock, address)
            finally:
                self.after()

        monkeypatch.setattr(socket.socket, "connect", connect)

    def wait_for_attempts(self, count: int) -> None:
        for _ in range(count):
            assert self.attempts.acquire(timeout=10), "the link never tried to connect"


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    return ConnectSpy(monkeypatch)


def unresponsive_port() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: further SYNs are dropped and connect() hangs."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    queued: list[socket.socket] = []
    for _ in range(8):
        probe = socket.socket()
        probe.settimeout(0.5)  # loopback answers at once unless the SYN was dropped
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            probe.close()
            return listener, queued
        queued.append(probe)
    raise AssertionError("the accept queue never filled up")


@pytest.fixture
def link(card: VirtualCard) -> Iterator[tuple[FakeVpcd, VpcdLink]]:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    thread = start(served)
    vpcd.accept()
    yield vpcd, served
    assert_stops(served, thread)
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
    thread = start(served)
    vpcd.accept()
    assert vpcd.peer is not None
    vpcd.peer.close()  # pcscd went away
    vpcd.accept()  # the card comes back by itself
    vpcd.send(b"\x01")
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    served.remove()
    assert vpcd.closed_by_card()  # removal closes the link
    served.insert()
    vpcd.accept()
    assert_stops(served, thread)
    vpcd.listener.close()


# stop() at every point of the link's life: serve_forever must return promptly each time -------


def test_stop_before_serving(card: VirtualCard, spy: ConnectSpy) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    served.stop()
    thread = start(served)
    thread.join(timeout=PROMPTLY)
    assert not thread.is_alive()
    assert not spy.attempts.acquire(blocking=False), "a stopped link connected"
    vpcd.listener.close()


@pytest.mark.parametrize("moment", ["before", "after"])
def test_stop_just_before_or_after_connect_is_not_lost(
    card: VirtualCard, spy: ConnectSpy, moment: str
) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    setattr(spy, moment, served.stop)  # runs on the link's thread, around its connect()
    thread = start(served)
    spy.wait_for_attempts(1)
    thread.join(timeout=PROMPTLY)
    assert not thread.is_alive(), "serve_forever lost the stop request"
    vpcd.listener.close()


@pytest.mark.parametrize("moment", ["before", "after"])
def test_remove_just_before_or_after_connect_is_not_lost(
    card: VirtualCard, spy: ConnectSpy, moment: str
) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    setattr(spy, moment, served.remove)
    thread = start(served)
    spy.wait_for_attempts(1)
    # Removed: no card answers vpcd (a live link would answer its ATR poll at once).
    assert vpcd.answering_card(within=0.5) is None
    setattr(spy, moment, lambda: None)
    served.insert()
    assert vpcd.answering_card(within=10) == bytes.fromhex("3BE000FF8131FE4514")
    assert_stops(served, thread)
    vpcd.listener.close()


def test_stop_while_vpcd_is_not_listening(card: VirtualCard, spy: ConnectSpy) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    served = VpcdLink(card, "127.0.0.1", closed.getsockname()[1])
    thread = start(served)
    spy.wait_for_attempts(2)  # refused at least once: in its retry loop
    assert_stops(served, thread)
    closed.close()


def test_stop_while_connect_hangs(card: VirtualCard, spy: ConnectSpy) -> None:
    listener, queued = unresponsive_port()
    served = VpcdLink(card, "127.0.0.1", listener.getsockname()[1])
    thread = start(served)
    spy.wait_for_attempts(1)
    assert_stops(served, thread)  # without waiting out CONNECT_TIMEOUT
    for sock in (listener, *queued):
        sock.close()


def test_stop_while_serving(link: tuple[FakeVpcd, VpcdLink]) -> None:
    vpcd, served = link
    vpcd.send(b"\x01")
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    served.stop()
    assert vpcd.closed_by_card()


def test_stop_while_removed(card: VirtualCard) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    thread = start(served)
    vpcd.accept()
    served.remove()
    assert vpcd.closed_by_card()
    assert_stops(served, thread)
    vpcd.listener.close()


def test_stop_while_reconnecting_after_the_link_drops(card: VirtualCard, spy: ConnectSpy) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    thread = start(served)
    spy.wait_for_attempts(1)
    vpcd.accept()
    assert vpcd.peer is not None
    vpcd.peer.close()  # the link drops; the card pauses, then connects again
    assert_stops(served, thread)
    vpcd.listener.close()


def test_reader_names_follow_debian_slots() -> None:
    assert reader_name(35963) == "Virtual PCD 00 00"
    assert reader_name(35964) == "Virtual PCD 00 01"
