"""The vpcd transport: the card as a client of pcscd's virtual reader driver (vsmartcard's vpcd).

Wire format, both ways: a 2-byte big-endian length, then the payload. From vpcd: `00` power
off, `01` power on, `02` reset, `04` get ATR (also a 400 ms presence poll), or a command APDU.
The card answers the ATR request and APDUs; power and reset get no answer. No card logic here.

The link follows the card's presence: a card pulled out of its slot (`card.remove()`, a fault, a
power cut) drops the connection, so pcscd sees the card removed; put back, it reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from card_emulator.errors import CardEmulatorError, CardRemoved, PowerLost
from card_emulator.vocabulary.apdu import redacted_hex
from card_emulator.vocabulary.sw import SW

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963  # slot 0 of Debian's vpcd reader; slot N listens on 35963 + N
PORT_VARIABLE = "JPKI_VPCD_PORT"  # slot 0's port where a pcscd's reader.conf moved it
SLOTS = 2  # slots of the vpcd reader Debian configures: slot N listens on slot 0's port + N
READER_NAME = "Virtual PCD 00 {slot:02X}"  # how Debian's /etc/reader.conf.d/vpcd names slots
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
MAX_FRAME = 0xFFFF
LENGTH_BYTES = 2
RECONNECT_DELAY = 0.2  # seconds between attempts while vpcd is not listening
# pcscd asks vpcd every 400 ms whether a card is in; a card back sooner than this is never seen
# gone, and one pulled out during a command would stay "absent" in pcscd for good.
MIN_ABSENCE = 1.0  # seconds a removed card stays out of the reader at least
CONNECT_TIMEOUT = 5  # seconds; stop() and remove() cut a pending connect short anyway


class ServedCard(Protocol):
    """What the transport needs from a card."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def reset(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes: ...

    @property
    def inserted(self) -> bool: ...

    def remove(self) -> None: ...

    def insert(self) -> None: ...

    def on_presence(self, callback: Callable[[bool], None]) -> None: ...


def first_port() -> int:
    """Slot 0's vpcd port: $JPKI_VPCD_PORT (a pcscd whose reader.conf moved vpcd, such as the
    pytest plugin's private one), else Debian's."""
    text = os.environ.get(PORT_VARIABLE)
    if text is None:
        return DEFAULT_PORT
    if not text.isdigit() or not 1 <= int(text) <= 0xFFFF:
        raise ValueError(f"${PORT_VARIABLE} must be a TCP port, not {text!r}")
    return int(text)


def reader_name(port: int) -> str:
    """The PC/SC name of the vpcd slot listening on `port` (slot N listens on slot 0's + N)."""
    slot = port - first_port()
    return READER_NAME.format(slot=slot) if 0 <= slot <= 0xFF else f"vpcd port {port}"


@dataclass
class SocketTuning:
    """Latency settings: on by default; off only to measure what they buy."""

    nodelay: bool = True
    quickack: bool = True


class VpcdLink:
    """One card in one vpcd slot: connects, serves, reconnects when pcscd restarts.

    `stop()` and `remove()` may come from any thread or a signal handler at any moment: each sets
    its flag first, then shuts down the published socket; `_claim` checks the flags under the
    same lock before and after connecting, so a request is never lost between the two.
    """

    def __init__(
        self,
        card: ServedCard,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        tuning: SocketTuning | None = None,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.tuning = tuning or SocketTuning()
        self._inserted = threading.Event()
        if card.inserted:
            self._inserted.set()
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        # Reentrant: stop() may run in a signal handler on the serving thread while it holds this.
        self._lock = threading.RLock()
        self.removed_at = 0.0  # time.monotonic() when the card last left this slot
        card.on_presence(self._presence_changed)

    # Control: removal and insertion on demand, stop ---------------------------------------

    @property
    def inserted(self) -> bool:
        return self._inserted.is_set()

    def remove(self) -> None:
        """Pull the card out: vpcd sees the socket close, pcscd reports the card removed."""
        self.card.remove()

    def insert(self) -> None:
        self.card.insert()

    def _presence_changed(self, inserted: bool) -> None:
        """The card went in or out of its slot (by `remove`/`insert`, a fault, a power cut)."""
        if inserted:
            self._inserted.set()
        else:
            self.removed_at = time.monotonic()
            self._inserted.clear()  # the flag first: `_claim` must not publish a new socket
            self._drop_connection()

    def stop(self) -> None:
        self._stopping.set()
        self._inserted.set()  # wakes a removed link so it can exit
        self._drop_connection()

    def _wanted(self) -> bool:
        """Whether the card should be in the reader now (not stopping, not removed)."""
        return self.inserted and not self._stopping.is_set()

    def _drop_connection(self) -> None:
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):  # also ends a connect() in progress
                    self._socket.shutdown(socket.SHUT_RDWR)

    def _claim(self, connection: socket.socket) -> bool:
        """Publish `connection` for `_drop_connection`, unless stop() or remove() came first."""
        with self._lock:
            if not self._wanted():
                return False
            self._socket = connection
            return True

    def _release(self, connection: socket.socket) -> None:
        with self._lock:
            if self._socket is connection:
                self._socket = None
        connection.close()

    # Serving ---------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until `stop()`: connect, answer, and connect again whenever the link drops."""
        reader = reader_name(self.port)
        waiting = False
        while self._await_insertion():
            connection = self._connect()
            if connection is None:
                waiting = self._pause_for_vpcd(waiting)
                continue
            waiting = False
            log.info("card inserted in reader '%s' (vpcd at %s:%d)", reader, self.host, self.port)
            try:
                self._serve_connection(connection)
            except OSError as error:
                log.debug("vpcd link dropped: %s", error)
            finally:
                self._release(connection)
                self.card.power_off()  # out of the reader, the card has no power
            if self._stopping.is_set():
                break
            if self.inserted:
                log.info("lost reader '%s'; reconnecting", reader)
                self._stopping.wait(RECONNECT_DELAY)
            else:
                log.info("card removed from reader '%s'", reader)

    def _pause_for_vpcd(self, logged: bool) -> bool:
        """After a failed connect, wait before the next; returns whether the wait is logged."""
        if not self._wanted():
            return logged  # stop() or remove() ended the connect, not vpcd: no pause
        if not logged:  # vpcd not listening (yet, or pcscd restarting)
            log.info("waiting for vpcd at %s:%d (is pcscd running with vsmartcard-vpcd?)",
                     self.host, self.port)  # fmt: skip
        self._stopping.wait(RECONNECT_DELAY)
        return True

    def _await_insertion(self) -> bool:
        """Block while the card is removed; False once the link is stopping."""
        self._inserted.wait()
        self._stopping.wait(max(0.0, self.removed_at + MIN_ABSENCE - time.monotonic()))
        return not self._stopping.is_set()

    def _connect(self) -> socket.socket | None:
        """A connected socket; None when vpcd is not listening or stop()/remove() came first."""
        try:
            addresses = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError:
            return None
        for family, kind, protocol, _, address in addresses:
            connection = socket.socket(family, kind, protocol)
            if not self._claim(connection):  # published before connect(), so stop() can cut it
                connection.close()
                return None
            try:
                connection.settimeout(CONNECT_TIMEOUT)
                connection.connect(address)
            except OSError:
                self._release(connection)
                continue
            if not self._claim(connection):  # stop() or remove() arrived while connecting
                self._release(connection)
                return None
            connection.settimeout(None)
            if self.tuning.nodelay:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection
        return None

    def _receive_exactly(self, connection: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            data += chunk
            if self.tuning.quickack:
                # Linux clears TCP_QUICKACK after a while; re-arm it so ACKs are never delayed.
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data

    def _serve_connection(self, connection: socket.socket) -> None:
        while True:
            length = int.from_bytes(self._receive_exactly(connection, LENGTH_BYTES), "big")
            if length == 0:
                continue  # nothing to answer; never answer with an empty frame
            message = self._receive_exactly(connection, length)
            reply = self._handle(message)
            if reply is not None:
                # One write for length and payload: a split write meets delayed ACKs.
                connection.sendall(len(reply).to_bytes(LENGTH_BYTES, "big") + reply)

    def _handle(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            control = message[0]
            if control == POWER_OFF:
                self.card.power_off()
            elif control == POWER_ON:
                self.card.power_on()
            elif control == RESET:
                self.card.reset()
            elif control == GET_ATR:
                return self.card.atr
            return None
        try:
            response = self.card.transmit(message)
        except (CardRemoved, PowerLost):
            raise  # no answer: the link drops, as a card pulled out mid-command
        except CardEmulatorError as error:  # e.g. a card file that cannot be written
            log.error("%s", error)
            response = SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")
        except Exception:  # noqa: BLE001 - a transport must never die on one APDU
            log.exception("card failed on %s", redacted_hex(message))
            response = SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")
        if len(response) > MAX_FRAME:
            response = SW.WRONG_LENGTH.to_bytes(2, "big")
        return response
