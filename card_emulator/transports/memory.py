"""The in-memory transport: a virtual card object that tests and the CLI send APDU bytes to.

card = VirtualCard.open("card.json")          # changes are durable, the file is locked
card = VirtualCard.in_memory("card.json")     # a throwaway copy: nothing is written
card.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))  # -> b"\\x90\\x00"
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from card_emulator.engine import CardEngine
from card_emulator.state.image import CardImage
from card_emulator.state.store import CardStore, FileStore, MemoryStore, read_image


class VirtualCard:
    """A powered virtual card. `transmit` takes command APDU bytes and returns response bytes."""

    def __init__(self, store: CardStore) -> None:
        self.engine = CardEngine(store)
        self.engine.power_on()

    @classmethod
    def open(cls, path: str | Path) -> VirtualCard:
        """The card in `path`; every change is written back before the card answers."""
        return cls(FileStore.open(Path(path)))

    @classmethod
    def in_memory(cls, source: str | Path | CardImage) -> VirtualCard:
        """A card whose changes live only in this object (the file, if any, is only read)."""
        if isinstance(source, CardImage):
            return cls(MemoryStore(source))
        return cls(MemoryStore(read_image(Path(source))))

    @property
    def image(self) -> CardImage:
        return self.engine.store.image

    @property
    def atr(self) -> bytes:
        return self.engine.atr

    def transmit(self, apdu: bytes) -> bytes:
        return self.engine.transmit(apdu)

    def power_on(self) -> bytes:
        return self.engine.power_on()

    def power_off(self) -> None:
        self.engine.power_off()

    def reset(self) -> bytes:
        return self.engine.reset()

    def close(self) -> None:
        self.engine.power_off()
        self.engine.store.close()

    def __enter__(self) -> VirtualCard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
