"""The one clock of the host side: the issuer, the relying party and the command line read the
time here, so that a test can live years ahead (the chip itself has no clock).

`jpki --at TIME` or `$JPKI_NOW` (ISO 8601) sets it: the clock then starts at TIME and runs on
from there, so a server started with it keeps time from that moment. Unset, it is the system's.
"""

from __future__ import annotations

import datetime
import os
import time

from jpki.errors import BadValueError

ENVIRONMENT_VARIABLE = "JPKI_NOW"
EXAMPLE = "2031-02-18T09:00:00+09:00"

_anchor: tuple[datetime.datetime, float] | None = None  # (the time set, monotonic clock then)


def parse_time(text: str, what: str = "a time") -> datetime.datetime:
    """An ISO 8601 time (a date alone is its midnight); without an offset, UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadValueError(f"{what} is ISO 8601, e.g. {EXAMPLE}, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def set_now(moment: datetime.datetime | None) -> None:
    """Start the clock at `moment` (None: back to the system's)."""
    global _anchor
    _anchor = None if moment is None else (moment, time.monotonic())


def now() -> datetime.datetime:
    """The current time, timezone-aware."""
    if _anchor is None and os.environ.get(ENVIRONMENT_VARIABLE):
        set_now(parse_time(os.environ[ENVIRONMENT_VARIABLE], f"${ENVIRONMENT_VARIABLE}"))
    if _anchor is None:
        return datetime.datetime.now(datetime.UTC)
    moment, started = _anchor
    return moment + datetime.timedelta(seconds=time.monotonic() - started)


def today() -> datetime.date:
    """The date of `now()` in UTC (issuance dates follow it)."""
    return now().astimezone(datetime.UTC).date()
