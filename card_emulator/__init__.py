"""A virtual My Number card: the card side only (APDUs in, APDUs out).

`from card_emulator import VirtualCard` works, but nothing is imported until it is asked for:
importing `card_emulator.vocabulary` (what hosts use) never loads the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VirtualCard": "card_emulator.transports.memory",
    "AdministratorKey": "card_emulator.state.administrator",
    "CardImage": "card_emulator.state.image",
    "CardSettings": "card_emulator.state.image",
    "CardEmulatorError": "card_emulator.errors",
    "CardFileError": "card_emulator.errors",
    "CardImageError": "card_emulator.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'card_emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
