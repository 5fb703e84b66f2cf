"""The 住基AP (resident registry) and the common card AP (共通カードAP) as data (spec §6)."""

from __future__ import annotations

from card_emulator.applications.model import (
    Always,
    Application,
    KeyFile,
    KeyUse,
    PinFile,
    PinVerified,
    RecordFile,
)
from card_emulator.vocabulary.apdu import INS
from card_emulator.vocabulary.identifiers import AID, CommonFile, ResidentRegistryFile
from card_emulator.vocabulary.pins import Pin
from card_emulator.vocabulary.sw import SW

RESIDENT_REGISTRY = Application(
    name="juki",
    aid=AID.RESIDENT_REGISTRY.value,
    label="住基AP (resident registry)",
    files=(
        RecordFile(ResidentRegistryFile.KEY_REFERENCE, "key reference"),
        PinFile.of(Pin.JUKI, change=PinVerified(ResidentRegistryFile.PIN)),
    ),
    pin_change=INS.CHANGE_KEY,
)

COMMON = Application(
    name="common",
    aid=AID.COMMON_CARD.value,
    label="共通カードAP (common card)",
    files=(
        RecordFile(CommonFile.CARD_IDENTIFICATION, "card identification"),
        RecordFile(CommonFile.KEY_REFERENCE, "key reference"),
        KeyFile(
            CommonFile.AUTHENTICATION_KEY,
            "internal authentication key",
            use=Always(),
            kind=KeyUse.INTERNAL_AUTHENTICATION,
        ),
        PinFile.of(Pin.COMMON, change=PinVerified(CommonFile.PIN)),
    ),
    pin_change=INS.CHANGE_KEY,
    session_key_refusal=SW.SESSION_KEY_NOT_SUPPORTED,
)
