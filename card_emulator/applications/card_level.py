"""The card level (the MF): the data objects GET DATA answers in the power-on state (spec §7).

Stored like an application's files, by tag; SELECT by name never finds it (its AID is empty).
"""

from __future__ import annotations

from card_emulator.applications.model import Application, BinaryFile
from card_emulator.vocabulary.identifiers import CardData

CARD_LEVEL = Application(
    name="card",
    aid=b"",
    label="card level (MF)",
    files=tuple(
        BinaryFile(tag, tag.name.lower().replace("_", " "))
        for tag in CardData
        if tag is not CardData.ATR_INFORMATION  # made from the ATR setting, not stored
    ),
)
