"""A virtual My Number card: the card side only (APDUs in, APDUs out)."""

from card_emulator.card import VirtualCard
from card_emulator.image import CardImage, CardImageError, CardSettings
from card_emulator.store import CardFileError

__all__ = ["CardFileError", "CardImage", "CardImageError", "CardSettings", "VirtualCard"]
