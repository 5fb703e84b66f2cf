"""Faults injected into a card: one spec string from Python, `jpki serve --fault` and the
control API, e.g. `sw=6A82,ins=B0,nth=2`, `remove,after=12`, `remove,during=2A`,
`latency=50ms,jitter=10ms`, `power-loss=after-counter-write`.

A spec is one kind, then matchers, comma-separated. `Faults` holds a card's faults and decides,
for each command, which of them apply; the card (`VirtualCard`) carries them out, and the card's
store asks `Faults.power_cut` at each persistence point.
"""

from __future__ import annotations

import contextlib
import enum
import random
import re
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from card_emulator.applications.registry import APPLICATIONS
from card_emulator.errors import FaultSpecError
from card_emulator.state.store import PersistencePoint, arm_power_cut

__all__ = [
    "FAULT_HELP",
    "ActiveFault",
    "Command",
    "Fault",
    "FaultKind",
    "FaultSpecError",
    "Faults",
    "Plan",
    "power_cuts",
]

MAX_DELAY_US = 60_000_000  # latency plus jitter: at most 60 s
US_PER_UNIT = {"ms": 1_000, "s": 1_000_000}
VALID_KEYS = (
    "kinds: sw=, remove, latency=, power-loss=; matchers: ap=, ins=, file=, nth=, after=, during="
)
POINTS = ", ".join(point.value for point in PersistencePoint)
APPLICATION_NAMES = ", ".join(application.name for application in APPLICATIONS)

_HELP_INDENT = " " * 18
_HELP_POINTS = textwrap.fill(
    POINTS, 100, initial_indent=_HELP_INDENT, subsequent_indent=_HELP_INDENT, break_on_hyphens=False
)
FAULT_HELP = f"""\
A fault is one kind, then matchers, comma-separated:
  sw=6A82         answer this status word instead of running the command
  remove          pull the card out (alone: at once)
  latency=50ms    delay the answer (ms or s; jitter=10ms adds a random -10..+10 ms)
  power-loss=P    cut the power at a persistence point P:
{_HELP_POINTS}
  ap=jpki         the application current before the command (or an AID in hex):
{_HELP_INDENT}{APPLICATION_NAMES}
  ins=B0 file=0001 nth=2 after=12   INS; the EF addressed; only the 2nd match; after 12 APDUs
  during=2A       (remove) run the matching command, then pull the card out before it answers
Examples: sw=6A82,ins=B0,nth=2  remove,after=12  remove,during=2A  latency=50ms,jitter=10ms"""

HEX_BYTE = re.compile(r"[0-9A-Fa-f]{2}")
HEX_FID = re.compile(r"[0-9A-Fa-f]{4}")
STATUS_WORD = re.compile(r"[69][0-9A-Fa-f]{3}")
WHOLE_NUMBER = re.compile(r"[0-9]+")
DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s)")
AID_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){5,16}")


class FaultKind(enum.Enum):
    SW = "sw"
    REMOVE = "remove"
    LATENCY = "latency"
    POWER_LOSS = "power-loss"


MATCHERS = ("ap", "ins", "file", "nth", "after", "during")
KEYS = frozenset({kind.value for kind in FaultKind} | {"jitter"} | set(MATCHERS))


class Command(NamedTuple):
    """What the matchers look at in a command, as the card stood before it."""

    application: str  # the registry's name of the current application; "card" when none
    ins: int | None  # None for bytes too short to have one
    file: int | None  # the EF it addresses: a SELECT's target, else the current EF


@dataclass(frozen=True)
class Fault:
    """One parsed spec. `parse(str(fault)) == fault`; `str` is the canonical spec."""

    kind: FaultKind
    sw: int | None = None
    latency_us: int | None = None
    jitter_us: int | None = None
    point: PersistencePoint | None = None
    ap: str | None = None  # an application's registry name (an AID is stored as its name)
    ins: int | None = None
    file: int | None = None
    nth: int | None = None
    after: int | None = None
    during: int | None = None

    @classmethod
    def parse(cls, text: str) -> Fault:
        """The fault a spec names; FaultSpecError, one line naming the bad part, if none."""
        values = _split(text) if text.strip() else {}
        kinds = [kind for kind in FaultKind if kind.value in values]
        if not kinds:
            raise _error(text, "no kind")
        if len(kinds) > 1:
            raise _error(text, f"two kinds ({' and '.join(kind.value for kind in kinds)})")
        kind = kinds[0]
        if "jitter" in values and kind is not FaultKind.LATENCY:
            raise _error(text, "jitter= goes with latency= only")
        if "during" in values and kind is not FaultKind.REMOVE:
            raise _error(text, "during= goes with remove only")
        fault = cls(
            kind,
            sw=_status_word(values, text),
            latency_us=_duration(values, "latency", text),
            jitter_us=_duration(values, "jitter", text),
            point=_point(values, text),
            ap=_application(values, text),
            ins=_hex(values, "ins", HEX_BYTE, text),
            file=_hex(values, "file", HEX_FID, text),
            nth=_number(values, "nth", 1, text),
            after=_number(values, "after", 0, text),
            during=_hex(values, "during", HEX_BYTE, text),
        )
        if (fault.latency_us or 0) + (fault.jitter_us or 0) > MAX_DELAY_US:
            raise _error(text, "latency plus jitter is longer than 60 s")
        return fault

    def __str__(self) -> str:
        parts = [self._kind_text()]
        if self.jitter_us is not None:
            parts.append(f"jitter={_duration_text(self.jitter_us)}")
        if self.ap is not None:
            parts.append(f"ap={self.ap}")
        if self.ins is not None:
            parts.append(f"ins={self.ins:02X}")
        if self.file is not None:
            parts.append(f"file={self.file:04X}")
        if self.nth is not None:
            parts.append(f"nth={self.nth}")
        if self.after is not None:
            parts.append(f"after={self.after}")
        if self.during is not None:
            parts.append(f"during={self.during:02X}")
        return ",".join(parts)

    def _kind_text(self) -> str:
        if self.kind is FaultKind.SW:
            return f"sw={self.sw:04X}"
        if self.kind is FaultKind.LATENCY:
            assert self.latency_us is not None
            return f"latency={_duration_text(self.latency_us)}"
        if self.kind is FaultKind.POWER_LOSS:
            assert self.point is not None
            return f"power-loss={self.point.value}"
        return "remove"

    @property
    def matches_anything(self) -> bool:
        """No matcher at all: every command (sw, latency), at once (remove), at the first
        time the point is reached, by a command or by any other write (power-loss)."""
        return all(getattr(self, matcher) is None for matcher in MATCHERS)

    def matches(self, command: Command) -> bool:
        """Whether `command` is one this fault is about (nth and after aside)."""
        return (
            (self.ap is None or self.ap == command.application)
            and (self.ins is None or self.ins == command.ins)
            and (self.during is None or self.during == command.ins)
            and (self.file is None or self.file == command.file)
        )

    @property
    def once(self) -> bool:
        """Fires once, then is spent: a removal, a power cut, or a fault for the nth command."""
        return self.kind in (FaultKind.REMOVE, FaultKind.POWER_LOSS) or self.nth is not None


def _error(text: str, problem: str) -> FaultSpecError:
    return FaultSpecError(f"{problem} in {text!r} ({VALID_KEYS})")


def _split(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in text.split(","):
        key, has_value, value = (piece.strip() for piece in part.partition("="))
        key = key.lower()
        if not key:
            raise _error(text, "an empty part")
        if key not in KEYS:
            raise _error(text, f"unknown key {key!r}")
        if key in values:
            raise _error(text, f"{key!r} given twice")
        if key == FaultKind.REMOVE.value and has_value:
            raise _error(text, "remove takes no value")
        if key != FaultKind.REMOVE.value and not value:
            raise _error(text, f"{key}= needs a value")
        values[key] = value
    return values


def _hex(values: dict[str, str], key: str, pattern: re.Pattern[str], text: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    if not pattern.fullmatch(value):
        digits = 2 if pattern is HEX_BYTE else 4
        raise _error(text, f"{key}={value} is not {digits} hex digits")
    return int(value, 16)


def _status_word(values: dict[str, str], text: str) -> int | None:
    value = values.get(FaultKind.SW.value)
    if value is None:
        return None
    if not STATUS_WORD.fullmatch(value):
        raise _error(text, f"sw={value} is not a status word (4 hex digits, 6XXX or 9XXX)")
    return int(value, 16)


def _number(values: dict[str, str], key: str, least: int, text: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    if not WHOLE_NUMBER.fullmatch(value) or int(value) < least:
        raise _error(text, f"{key}={value} is not a whole number of at least {least}")
    return int(value)


def _duration(values: dict[str, str], key: str, text: str) -> int | None:
    """A duration in microseconds: `50ms`, `1.5s`; a unit is required."""
    value = values.get(key)
    if value is None:
        return None
    found = DURATION.fullmatch(value)
    if not found:
        raise _error(text, f"{key}={value} is not a duration with its unit (50ms, 1.5s)")
    try:
        microseconds = Decimal(found[1]) * US_PER_UNIT[found[2]]
    except InvalidOperation:
        raise _error(text, f"{key}={value} is not a duration") from None
    if microseconds > MAX_DELAY_US:
        raise _error(text, f"{key}={value} is longer than 60 s")
    if microseconds != microseconds.to_integral_value():
        raise _error(text, f"{key}={value} is finer than a microsecond")
    return int(microseconds)


def _duration_text(microseconds: int) -> str:
    if microseconds and microseconds % US_PER_UNIT["s"] == 0:
        return f"{microseconds // US_PER_UNIT['s']}s"
    return f"{Decimal(microseconds) / US_PER_UNIT['ms']}ms"


def _point(values: dict[str, str], text: str) -> PersistencePoint | None:
    value = values.get(FaultKind.POWER_LOSS.value)
    if value is None:
        return None
    try:
        return PersistencePoint(value.lower())
    except ValueError:
        raise FaultSpecError(
            f"unknown persistence point {value!r} in {text!r} (points: {POINTS})"
        ) from None


def _application(values: dict[str, str], text: str) -> str | None:
    value = values.get("ap")
    if value is None:
        return None
    named = APPLICATIONS.by_name(value.lower())
    if named is None and AID_HEX.fullmatch(value):
        named = APPLICATIONS.by_aid(bytes.fromhex(value))
    if named is None:
        raise _error(text, f"ap={value} is no application ({APPLICATION_NAMES}, or an AID)")
    return named.name


# A card's faults ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveFault:
    """A fault added to a card: its id, the fault, how many times it fired, and whether it can
    fire again."""

    id: int
    fault: Fault
    fired: int
    spent: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "spec": str(self.fault), "fired": self.fired, "spent": self.spent}


@dataclass
class _Entry:
    id: int
    fault: Fault
    added_at: int  # the card's count of answered APDUs when the fault was added
    matched: int = 0  # commands matched so far (for nth)
    fired: int = 0
    spent: bool = False

    def view(self) -> ActiveFault:
        return ActiveFault(self.id, self.fault, self.fired, self.spent)

    def label(self) -> str:
        return f"fault {self.id} ({self.fault})"


@dataclass
class Plan:
    """What the faults do to one command, in the order the card carries it out."""

    remove_before: bool = False  # the card is out before the command reaches it
    delay: float = 0.0  # seconds before the answer
    sw: int | None = None  # answered instead of running the command
    remove_after: _Entry | None = None  # runs the command, then the card is out (during=)


class Faults:
    """The faults of one card, thread-safe: the control API adds them while the card serves.

    `report` receives one line per fault that fires (the card puts it in its trace);
    `remove_card` pulls the card out when a plain `remove` is added.
    """

    def __init__(
        self,
        *,
        file_backed: bool = False,
        report: Callable[[str], None] | None = None,
        remove_card: Callable[[], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.file_backed = file_backed
        self._report = report or (lambda line: None)
        self._remove_card = remove_card
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._last_id = 0
        self._pending = 0  # entries not spent: the card skips all of this while there are none
        self._answered = 0
        self._power_loss = 0  # power-loss entries not spent: the store's hook returns at once
        self._in_flight: list[_Entry] = []  # power cuts primed for the command being run

    def __bool__(self) -> bool:
        return self._pending > 0

    def add(self, spec: str | Fault) -> int:
        """Add a fault (a spec or a parsed one); returns its id."""
        fault = Fault.parse(spec) if isinstance(spec, str) else spec
        if fault.kind is FaultKind.POWER_LOSS and not self.file_backed:
            raise FaultSpecError(
                f"{fault} needs a file-backed card (this one is in memory: nothing is written)"
            )
        with self._lock:
            self._last_id += 1
            entry = _Entry(self._last_id, fault, self._answered)
            self._entries[entry.id] = entry
            self._count(entry, +1)
        if fault.kind is FaultKind.REMOVE and fault.matches_anything:
            self._remove_at_once(entry)
        return entry.id

    def _remove_at_once(self, entry: _Entry) -> None:
        if self._remove_card is None:
            return  # no card to pull out yet: the next command finds it gone
        with self._lock:
            self._fire(entry, "card removed")
        self._remove_card()

    def discard(self, fault_id: int) -> None:
        """Remove a fault; an unknown id is ignored."""
        with self._lock:
            entry = self._entries.pop(fault_id, None)
            if entry is not None and not entry.spent:
                self._count(entry, -1)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._pending = self._power_loss = 0
            self._in_flight.clear()

    def active(self) -> list[ActiveFault]:
        """Every fault added and not discarded, spent ones included, by id."""
        with self._lock:
            return [entry.view() for entry in self._entries.values()]

    def to_json(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self.active()]

    def _count(self, entry: _Entry, sign: int) -> None:
        self._pending += sign
        if entry.fault.kind is FaultKind.POWER_LOSS:
            self._power_loss += sign

    def _fire(self, entry: _Entry, what: str) -> None:
        """Count a firing (the caller holds the lock) and report it."""
        entry.fired += 1
        if entry.fault.once and not entry.spent:
            entry.spent = True
            self._count(entry, -1)
        self._report(f"{entry.label()}: {what}")

    # For the card --------------------------------------------------------------------------

    def plan(self, command: Command) -> Plan:
        """What the faults do to `command`; counts their matches and reports those that fire
        now (removal before the command, delay, status word). Call `finished` after it."""
        plan = Plan()
        with self._lock:
            self._in_flight.clear()
            for entry in list(self._entries.values()):
                if not entry.spent and self._selects(entry, command):
                    self._apply(entry, plan)
        return plan

    def _selects(self, entry: _Entry, command: Command) -> bool:
        """Whether the fault is for this command: it matches, enough APDUs were answered
        since it was added, and it is the nth match if it counts."""
        fault = entry.fault
        if fault.after is not None and self._answered - entry.added_at < fault.after:
            return False
        if not fault.matches(command):
            return False
        entry.matched += 1
        return fault.nth is None or entry.matched == fault.nth

    def _apply(self, entry: _Entry, plan: Plan) -> None:
        fault = entry.fault
        if fault.kind is FaultKind.POWER_LOSS:
            self._in_flight.append(entry)  # fires if the command reaches its point
        elif fault.kind is FaultKind.REMOVE:
            if fault.during is not None:
                plan.remove_after = plan.remove_after or entry
            elif not plan.remove_before:
                plan.remove_before = True
                self._fire(entry, "card removed; the command got no answer")
        elif fault.kind is FaultKind.LATENCY:
            delay = self._delay(fault)
            plan.delay += delay
            self._fire(entry, f"answer delayed {delay * 1000:.1f} ms")
        elif plan.sw is None:
            plan.sw = fault.sw
            self._fire(entry, f"answered {fault.sw:04X} without running the command")

    def _delay(self, fault: Fault) -> float:
        """Latency plus a uniform jitter in [-jitter, +jitter], never below zero; seconds."""
        microseconds = (fault.latency_us or 0) + self._random.uniform(
            -(fault.jitter_us or 0), fault.jitter_us or 0
        )
        return max(0.0, microseconds) / US_PER_UNIT["s"]

    def removed_during(self, entry: _Entry) -> None:
        """The card ran the command of a `during=` removal and is now pulled out."""
        with self._lock:
            if not entry.spent:
                self._fire(entry, "the command ran; card removed before it answered")

    def finished(self, answered: bool) -> None:
        """The command is over; `answered`: the card gave a response (counts for after=)."""
        with self._lock:
            self._in_flight.clear()
            if answered:
                self._answered += 1

    def power_cut(self, point: PersistencePoint) -> bool:
        """The store's hook: whether the power goes at `point`. A power-loss fault with no
        matcher fires the first time its point is reached, whoever writes; one with matchers,
        when a command it was planned for reaches it."""
        if not self._power_loss:
            return False
        with self._lock:
            for entry in self._candidates():
                if entry.fault.point is point and not entry.spent:
                    self._fire(entry, f"power lost at {point.value}")
                    return True
        return False

    def _candidates(self) -> list[_Entry]:
        anywhere = [
            entry
            for entry in self._entries.values()
            if entry.fault.kind is FaultKind.POWER_LOSS and entry.fault.matches_anything
        ]
        return self._in_flight + anywhere


@contextlib.contextmanager
def power_cuts(
    card: Path, *specs: str, report: Callable[[str], None] | None = None
) -> Iterator[Faults]:
    """Power-loss faults for the card file `card`, armed for the block, that strike every store
    of it this process opens — the window's, a renewal's — while no card object holds it:

        with power_cuts(path, "power-loss=during-certificate-write"):
            lifecycle.renew(path, ca, at=now)      # raises PowerLost; the card file is intact
    """
    faults = Faults(file_backed=True, report=report)
    for spec in specs:
        if Fault.parse(spec).kind is not FaultKind.POWER_LOSS:
            raise FaultSpecError(f"{spec}: only power-loss faults strike outside a served card")
        faults.add(spec)
    replaced = arm_power_cut(card, faults.power_cut)
    try:
        yield faults
    finally:
        arm_power_cut(card, replaced)
