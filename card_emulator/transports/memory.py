"""The in-memory transport: a virtual card object that tests and the CLI send APDU bytes to.

card = VirtualCard.open("card.json")          # changes are durable, the file is locked
card = VirtualCard.in_memory("card.json")     # a throwaway copy: nothing is written
card.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))  # -> b"\\x90\\x00"

It is also the card's reader slot: it can be pulled out and put back (`remove`, `insert`), it
carries out the faults injected into it (`faults`), and it writes every APDU and event to its
trace (`trace`), PINs masked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from card_emulator.applications.registry import APPLICATIONS, CARD_LEVEL_NAME
from card_emulator.engine import CardEngine
from card_emulator.errors import CardRemoved, PowerLost
from card_emulator.faults import Command, Faults, Plan
from card_emulator.state.image import CardImage
from card_emulator.state.store import (
    CardStore,
    FileStore,
    MemoryStore,
    PowerCutHook,
    arm_power_cut,
    read_image,
)
from card_emulator.trace import Trace
from card_emulator.vocabulary.pins import Pin

PresenceCallback = Callable[[bool], None]


@dataclass(frozen=True)
class PinCounter:
    """One key reference's retry counter as the card holds it now."""

    application: str  # the registry's name
    fid: int
    pin: Pin
    label: str
    tries_left: int
    max_tries: int
    blocked: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "fid": f"{self.fid:04X}",
            "pin": self.pin.key,
            "label": self.label,
            "tries_left": self.tries_left,
            "max_tries": self.max_tries,
            "blocked": self.blocked,
            "protects": self.pin.lock.protects,
            "unblocked_by": list(self.pin.lock.channels),
        }


class VirtualCard:
    """A powered virtual card in its slot. `transmit` takes command APDU bytes and returns
    response bytes; a card out of its slot raises CardRemoved (a ConnectionError)."""

    def __init__(
        self, store: CardStore, *, trace: Trace | None = None, slot: int | None = None
    ) -> None:
        self.engine = CardEngine(store)
        self.trace = trace if trace is not None else Trace()
        self.slot = slot
        self.faults = Faults(report=self._fault_fired, remove_card=self.remove)
        self._inserted = True
        self._presence: list[PresenceCallback] = []
        self._armed = False  # this card's faults answer the power-cut hook of its file
        self._replaced_hook: PowerCutHook | None = None
        self._lock = threading.RLock()  # one command, power change or removal at a time
        self.engine.power_on()

    @classmethod
    def open(
        cls, path: str | Path, *, trace: Trace | None = None, slot: int | None = None
    ) -> VirtualCard:
        """The card in `path`; every change is written back before the card answers."""
        store = FileStore.open(Path(path))
        card = cls(store, trace=trace, slot=slot)
        card.faults.file_backed = True
        card._replaced_hook = arm_power_cut(store.path, card.faults.power_cut)
        card._armed = True
        return card

    @classmethod
    def in_memory(cls, source: str | Path | CardImage) -> VirtualCard:
        """A card whose changes live only in this object (the file, if any, is only read)."""
        if isinstance(source, CardImage):
            return cls(MemoryStore(source))
        return cls(MemoryStore(read_image(Path(source))))

    @property
    def image(self) -> CardImage:
        return self.engine.store.image

    @property
    def atr(self) -> bytes:
        return self.engine.atr

    @property
    def path(self) -> Path | None:
        """The card file (its real path), None for a card in memory."""
        store = self.engine.store
        return store.path if isinstance(store, FileStore) else None

    # The slot: presence ------------------------------------------------------------------

    @property
    def inserted(self) -> bool:
        return self._inserted

    def on_presence(self, callback: PresenceCallback) -> None:
        """Call `callback(inserted)` after each removal and insertion (on the thread that made
        it: keep it short, and do not call back into the card from it)."""
        self._presence.append(callback)

    def remove(self) -> None:
        """Pull the card out: it loses power, and commands raise CardRemoved until `insert`."""
        with self._lock:
            if not self._pull_out("card removed"):
                return
        self._announce(False)

    def insert(self) -> None:
        """Put the card back: powered, as a reader powers a card it detects."""
        with self._lock:
            if self._inserted:
                return
            self._inserted = True
            self.engine.power_on()
            self.trace.add("inserted", text="card inserted", slot=self.slot)
        self._announce(True)

    def _pull_out(self, text: str) -> bool:
        """Out of the slot (the caller holds the lock); False if it was out already."""
        if not self._inserted:
            return False
        self._inserted = False
        self.engine.power_off()
        self.trace.add("removed", text=text, slot=self.slot)
        return True

    def _announce(self, inserted: bool) -> None:
        for callback in list(self._presence):
            callback(inserted)

    def _present(self) -> None:
        if not self._inserted:
            raise CardRemoved("the card is not in the reader")

    # Commands and power ------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> bytes:
        try:
            if self.faults:
                return self._transmit_with_faults(apdu)
            with self._lock:
                self._present()
                response = self._run(apdu)
        except PowerLost:
            self._announce(False)  # the cut left the card out of its slot
            raise
        self.trace.add_apdu(apdu, response, slot=self.slot)
        return response

    def _run(self, apdu: bytes) -> bytes:
        """The engine's answer (the caller holds the lock); a power cut in it reloads the card
        from its file, as the next power-up would read it, and leaves it out of the slot."""
        try:
            return self.engine.transmit(apdu)
        except PowerLost as cut:
            self.trace.add_apdu(apdu, b"", text="no answer: power lost", slot=self.slot)
            self._power_lost(str(cut))
            raise

    def _power_lost(self, reason: str) -> None:
        store = self.engine.store
        if isinstance(store, FileStore):
            store.reload()
        self.trace.add("power", text=f"{reason}; the card reads its file again", slot=self.slot)
        self._pull_out("card removed (power lost)")

    def _transmit_with_faults(self, apdu: bytes) -> bytes:
        with self._lock:
            self._present()
            plan = self.faults.plan(self._command(apdu))
        answered = False
        try:
            response = self._carry_out(apdu, plan)
            answered = True
        finally:
            self.faults.finished(answered)
        self.trace.add_apdu(apdu, response, slot=self.slot)
        return response

    def _command(self, apdu: bytes) -> Command:
        engine = self.engine
        return Command(
            engine.current_application or CARD_LEVEL_NAME,
            apdu[1] if len(apdu) > 1 else None,
            engine.addressed_file(apdu),
        )

    def _carry_out(self, apdu: bytes, plan: Plan) -> bytes:
        """The command under its faults: removed before it, delayed, answered with a status
        word, or run (and removed before it answers)."""
        if plan.remove_before:
            self.trace.add_apdu(apdu, b"", text="no answer: card removed", slot=self.slot)
            self.remove()
            raise CardRemoved("the card was removed (an injected fault)")
        if plan.delay:
            time.sleep(plan.delay)
        with self._lock:
            self._present()  # it may have been pulled out during the delay
            if plan.sw is not None:
                return plan.sw.to_bytes(2, "big")
            response = self._run(apdu)
            if plan.remove_after is None:
                return response
            self.faults.removed_during(plan.remove_after)
            self.trace.add_apdu(apdu, b"", text="no answer: card removed", slot=self.slot)
            self._pull_out("card removed")
        self._announce(False)
        raise CardRemoved("the card was removed before it answered (an injected fault)")

    def power_on(self) -> bytes:
        with self._lock:
            self._present()
            self.trace.add("power", text="power on", slot=self.slot)
            return self.engine.power_on()

    def power_off(self) -> None:
        with self._lock:
            if self.engine.powered:  # a reader powering off an unpowered card: no news
                self.trace.add("power", text="power off", slot=self.slot)
            self.engine.power_off()

    def reset(self) -> bytes:
        with self._lock:
            self._present()
            self.trace.add("power", text="warm reset", slot=self.slot)
            return self.engine.reset()

    def counters(self) -> list[PinCounter]:
        """Every key reference a holder uses on this card (`Pin`), with its retry counter as
        the card holds it."""
        with self._lock:
            settings = self.image.settings
            return [
                PinCounter(
                    application,
                    file.fid,
                    pin,
                    file.description,
                    reference.tries_left,
                    settings.max_tries(file.rule),
                    reference.blocked,
                )
                for application, file, reference in self.engine.key_references()
                if (pin := APPLICATIONS.pin_at(application, file.fid)) is not None
            ]

    def _fault_fired(self, line: str) -> None:
        self.trace.add("fault", text=line, slot=self.slot)

    def close(self) -> None:
        if self._armed and self.path is not None:
            arm_power_cut(self.path, self._replaced_hook)  # a cut armed before the card opened
            self._armed = False
        with self._lock:
            self.engine.power_off()
            self.engine.store.close()

    def __enter__(self) -> VirtualCard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
