"""The per-card audit log: every administrative operation on a card (what, when, which
channel, which secret), never a PIN or a key.

Append-only JSON lines in `card.json.history` beside the card file (0600). Each entry is
written whole with one O_APPEND write and synced; a crash can leave at most the last line
torn, which reading ignores and the next entry closes off (nothing is ever rewritten).
Writers hold the card's lock while they record, so entries follow the order of the card's
changes.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from card_emulator.state.store import real_card_path

SUFFIX = ".history"
PRIVATE_FILE_MODE = 0o600
FIELDS = ("at", "what", "channel", "target", "details")


class HistoryError(ValueError):
    """An entry that cannot be recorded (a naive time, an empty name)."""


@dataclass(frozen=True)
class HistoryEntry:
    """One administrative operation on a card."""

    at: datetime.datetime
    what: str  # e.g. "unblock", "reset-pin", "reserve", "renew"
    channel: str  # e.g. "window", "store"
    target: str | None = None  # a window target name (auth, sign, collation-a, …), if any
    details: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "what": self.what,
            "channel": self.channel,
            "target": self.target,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, data: Any) -> HistoryEntry:
        """An entry as `to_json` wrote it; ValueError for anything else."""
        if not isinstance(data, dict) or set(data) != set(FIELDS):
            raise ValueError("not a history entry")
        at = datetime.datetime.fromisoformat(data["at"])
        what, channel, target, details = (data[name] for name in FIELDS[1:])
        if not (isinstance(what, str) and isinstance(channel, str)):
            raise ValueError("not a history entry")
        if target is not None and not isinstance(target, str):
            raise ValueError("not a history entry")
        if not isinstance(details, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in details.items()
        ):
            raise ValueError("not a history entry")
        return cls(at, what, channel, target, details)


def history_path(card: Path) -> Path:
    """The log of the card file `card` (of the file itself, whatever link names it)."""
    real = real_card_path(Path(card))
    return real.with_name(real.name + SUFFIX)


def record(
    card: Path,
    what: str,
    channel: str,
    *,
    at: datetime.datetime,
    target: str | None = None,
    details: dict[str, str] | None = None,
) -> None:
    """Append one entry to the card's history, durably, before returning.

    Call it while holding the card's lock (an open `FileStore`), after the change it
    describes is committed. Never pass a PIN, a password or a key in `details`.
    """
    if at.tzinfo is None:
        raise HistoryError("a history entry needs a timezone-aware time")
    if not what or not channel:
        raise HistoryError("a history entry needs what was done and through which channel")
    entry = HistoryEntry(at, what, channel, target, dict(details or {}))
    line = json.dumps(entry.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
    path = history_path(card)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # whatever the umask
        size = os.fstat(fd).st_size
        # A crash mid-write left a torn line: end it, so this entry starts a line of its own.
        torn = size > 0 and _last_byte(path, size) != b"\n"
        os.write(fd, (b"\n" if torn else b"") + line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: Path, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)


def entries(card: Path) -> list[HistoryEntry]:
    """The card's history, oldest first (none for a card without one).

    A line that is not a whole entry can only be one torn by a crash mid-write: skipped.
    """
    try:
        raw = history_path(card).read_bytes()
    except FileNotFoundError:
        return []
    found = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            found.append(HistoryEntry.from_json(json.loads(line)))
        except (ValueError, TypeError, UnicodeDecodeError):
            continue
    return found
