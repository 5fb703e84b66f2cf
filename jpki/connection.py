"""Connections: the one thing the host code needs from a card is `transmit(bytes) -> bytes`.

A virtual card in memory and (with the PC/SC transport) a card in a real reader both fit here,
so every layer above works the same against either.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Protocol

from card_emulator.card import VirtualCard
from card_emulator.engine import CardPoweredOff
from jpki.errors import CardRemovedError


class Connection(Protocol):
    """A card session: send a command APDU, get the response APDU (data + SW)."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...


class VirtualCardConnection:
    """A connection to a virtual card in this process."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card

    @classmethod
    def open(cls, path: Path) -> VirtualCardConnection:
        """The card in a file: PIN counters are written back, the file is locked meanwhile."""
        return cls(VirtualCard.open(path))

    def transmit(self, apdu: bytes) -> bytes:
        try:
            return self.card.transmit(apdu)
        except CardPoweredOff:
            raise CardRemovedError("the card was removed") from None

    def close(self) -> None:
        self.card.close()

    def __enter__(self) -> VirtualCardConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
