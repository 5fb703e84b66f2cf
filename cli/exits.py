"""Exit codes: one per cause, the same from every command, so scripts can tell them apart."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0
    FAILURE = 1  # also: a signature or login that is INVALID
    USAGE = 2  # click's own: a wrong option or argument
    CARD_FILE = 3  # a card file missing, corrupt, in use, or read-only when it must change
    CA = 4  # the test CA missing, corrupt, or unable to issue
    BAD_VALUE = 5  # a value that cannot be right: a PIN's format, a check digit, an APDU line
    PIN = 6  # a PIN wrong (with the tries left), blocked, or needed
    CARD = 7  # the card answered an error, went away, or no reader has it
    UNKNOWN = 8  # a revocation status that could not be established
    REFUSED = 9  # the rules refuse it: a store reset unreserved, a PIN that channel cannot reset
