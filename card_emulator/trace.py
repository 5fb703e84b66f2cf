"""The card's event trace: every APDU (PIN data masked), every injected fault, removals,
insertions and power cuts, numbered in order, for the control API, the panel and tests.

It is bounded (the oldest events go first) and shared by the slots of one server, so one
sequence number orders the events of every card. An APDU's event is stored as bytes and its
hex made only when read: tracing costs the card a fraction of a microsecond per command.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from card_emulator.vocabulary.apdu import SECRET_DATA_INS, redacted_hex

MAX_EVENTS = 2000


@dataclass(frozen=True)
class TraceEvent:
    """One thing the card did or had done to it."""

    seq: int
    time: float  # time.time()
    kind: str  # "apdu", "fault", "removed", "inserted", "power"
    command: str = ""  # the command APDU in hex, PIN data masked (apdu events)
    response: str = ""  # the response APDU in hex, status word included (apdu events)
    text: str = ""  # a human line, e.g. "fault 2 (sw=6A82,ins=B0): answered 6A82"
    slot: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "command": self.command,
            "response": self.response,
            "text": self.text,
            "slot": self.slot,
        }


# An APDU event as stored, made into a TraceEvent (hex) only when read: seq, time, command
# (bytes, or masked hex for a PIN-carrying command, so no PIN is ever held here), response, text,
# slot. A plain tuple: one is made per APDU.
_Apdu = tuple[int, float, bytes | str, bytes, str, int | None]


def _apdu_event(stored: _Apdu) -> TraceEvent:
    seq, at, command, response, text, slot = stored
    shown = command if isinstance(command, str) else command.hex().upper()
    return TraceEvent(seq, at, "apdu", shown, response.hex().upper(), text, slot)


class Trace:
    """A bounded, thread-safe list of events; readers wait for new ones with `since`."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self._events: deque[TraceEvent | _Apdu] = deque(maxlen=max_events)
        self._seq = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiting = 0  # readers blocked in since(): only then is an event announced

    @property
    def last_seq(self) -> int:
        return self._seq

    def add(
        self,
        kind: str,
        *,
        command: str = "",
        response: str = "",
        text: str = "",
        slot: int | None = None,
    ) -> TraceEvent:
        """Record an event; `command` must already be masked (`redacted_hex`)."""
        with self._lock:
            self._seq += 1
            event = TraceEvent(self._seq, time.time(), kind, command, response, text, slot)
            self._events.append(event)
            self._announce()
        return event

    def add_apdu(
        self, command: bytes, response: bytes, *, text: str = "", slot: int | None = None
    ) -> None:
        """Record a command and its response (empty: none was given), masking PIN data."""
        # The codec's table of PIN-carrying INS: only those pay for parsing now.
        secret = len(command) > 1 and command[1] in SECRET_DATA_INS
        stored = redacted_hex(command) if secret else command
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, time.time(), stored, response, text, slot))
            if self._waiting:
                self._changed.notify_all()

    def _announce(self) -> None:
        if self._waiting:
            self._changed.notify_all()

    def since(self, seq: int, wait: float = 0.0) -> list[TraceEvent]:
        """The events numbered after `seq` (those still held), oldest first; with `wait` > 0,
        waits up to that many seconds for the first one."""
        with self._lock:
            if wait > 0 and self._seq <= seq:
                self._waiting += 1
                try:
                    self._changed.wait_for(lambda: self._seq > seq, timeout=wait)
                finally:
                    self._waiting -= 1
            if self._seq <= seq:
                return []
            newer = list(itertools.takewhile(lambda e: _seq(e) > seq, reversed(self._events)))
        return [_event(event) for event in reversed(newer)]


def _seq(stored: TraceEvent | _Apdu) -> int:
    return stored.seq if isinstance(stored, TraceEvent) else stored[0]


def _event(stored: TraceEvent | _Apdu) -> TraceEvent:
    return stored if isinstance(stored, TraceEvent) else _apdu_event(stored)
