"""The status words the card answers with: one table, shared by the card and the host library."""

from __future__ import annotations

import enum


class SW(enum.IntEnum):
    """ISO 7816-4 status words used by the My Number card."""

    SUCCESS = 0x9000
    SESSION_KEY_NOT_SUPPORTED = 0x66F1  # SET SESSION KEY in the common and card-face APs
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    INCOMPATIBLE_WITH_FILE_STRUCTURE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTHENTICATION_METHOD_BLOCKED = 0x6984
    CONDITIONS_OF_USE_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_CURRENT_EF = 0x6986
    SM_DATA_OBJECTS_MISSING = 0x69FC
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1_P2 = 0x6A86
    REFERENCE_DATA_NOT_FOUND = 0x6A88
    WRONG_P1_P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


RETRIES_LEFT = 0x63C0  # 63Cx: x tries left


def retries_left_sw(tries: int) -> int:
    """`63Cx`: a wrong PIN or a retry query, with x tries left (0..15)."""
    return RETRIES_LEFT | min(tries, 0xF)


def tries_left_in(sw: int) -> int | None:
    """The tries a `63Cx` answer reports, or None for any other status word."""
    return sw & 0x0F if sw & 0xFFF0 == RETRIES_LEFT else None


def describe(sw: int) -> str:
    """Readable name of a status word, e.g. `SECURITY_STATUS_NOT_SATISFIED` or `TRIES_LEFT_2`."""
    if tries_left_in(sw) is not None:
        return f"TRIES_LEFT_{sw & 0xF}"
    try:
        return SW(sw).name
    except ValueError:
        return f"SW_{sw:04X}"
