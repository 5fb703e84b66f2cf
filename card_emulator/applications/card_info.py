"""The card-info input-support AP (券面事項入力補助AP) as data."""

from __future__ import annotations

from card_emulator.applications.model import (
    Application,
    BinaryFile,
    PinFile,
    PinVerified,
    ResetRule,
)
from card_emulator.vocabulary.identifiers import AID, CardInfoFile
from card_emulator.vocabulary.pins import FOUR_DIGITS, Pin

CARD_INFO = Application(
    name="card-info",
    aid=AID.CARD_INFO_INPUT_SUPPORT.value,
    label="券面事項入力補助AP (card-info input support)",
    files=(
        BinaryFile(
            CardInfoFile.MY_NUMBER,
            "my number",
            read=PinVerified(CardInfoFile.PIN, CardInfoFile.COLLATION_NUMBER_A),
        ),
        BinaryFile(
            CardInfoFile.BASIC_ATTRIBUTES,
            "basic four attributes",
            read=PinVerified(CardInfoFile.PIN, CardInfoFile.COLLATION_NUMBER_B),
        ),
        BinaryFile(
            CardInfoFile.INTEGRITY_RECORD,
            "integrity record",
            read=PinVerified(
                CardInfoFile.PIN, CardInfoFile.COLLATION_NUMBER_A, CardInfoFile.COLLATION_NUMBER_B
            ),
        ),
        BinaryFile(CardInfoFile.AP_CERTIFICATE, "AP card-verifiable certificate"),
        BinaryFile(CardInfoFile.AP_BASIC_INFO, "AP basic info"),
        PinFile.of(Pin.CARD_INFO, change=PinVerified(CardInfoFile.PIN)),
        PinFile(
            CardInfoFile.BLOCKED_REFERENCE,
            "blocked reference",
            FOUR_DIGITS,
            change=PinVerified(CardInfoFile.BLOCKED_REFERENCE),
            reset=ResetRule.NEVER,  # blocked on every card seen: not even the window opens it
        ),
        PinFile.of(Pin.CARD_INFO_A, change=PinVerified(CardInfoFile.COLLATION_NUMBER_A)),
        PinFile.of(Pin.CARD_INFO_B, change=PinVerified(CardInfoFile.COLLATION_NUMBER_B)),
    ),
    # SET SESSION KEY needs the PIN verified in clear (collation number A does not count).
    session_key_after=PinVerified(CardInfoFile.PIN),
)
