"""The card's file model as data: applications (DFs), their EFs, keys and PINs, and access rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHORT_ID_FLAG = 0x80  # P1/P2 bit that says "the low five bits are a short EF identifier"


def short_id(fid: int) -> int:
    """Short EF identifier of a file: the low five bits of its FID (`000A` → `0A`)."""
    return fid & 0x1F


@dataclass(frozen=True)
class Always:
    """No condition."""


@dataclass(frozen=True, init=False)
class PinVerified:
    """One of these PINs has been verified in the current security state."""

    pins: tuple[int, ...]

    def __init__(self, *pins: int) -> None:
        object.__setattr__(self, "pins", pins)


AccessRule = Always | PinVerified


@dataclass(frozen=True)
class BinaryFile:
    """A transparent EF, read with READ BINARY."""

    fid: int
    description: str
    read: AccessRule = Always()


@dataclass(frozen=True)
class PinPolicy:
    """Length and alphabet a PIN must follow, and its retry limit."""

    min_length: int
    max_length: int
    alphabet: str  # regular-expression character class body, e.g. "0-9" or "A-Z0-9"
    max_tries: int

    def accepts(self, value: bytes) -> bool:
        pattern = f"[{self.alphabet}]{{{self.min_length},{self.max_length}}}"
        return re.fullmatch(pattern.encode(), value) is not None

    def describe(self) -> str:
        """What a valid value looks like, e.g. `exactly 4 digits`."""
        if self.alphabet == "0-9" and self.min_length == self.max_length:
            return f"exactly {self.min_length} digits"
        return f"{self.min_length} to {self.max_length} characters of {self.alphabet} (upper case)"


@dataclass(frozen=True)
class PinFile:
    """An EF holding reference data for VERIFY (never readable)."""

    fid: int
    description: str
    policy: PinPolicy


@dataclass(frozen=True)
class KeyFile:
    """An EF holding an RSA private key for COMPUTE DIGITAL SIGNATURE (never readable)."""

    fid: int
    description: str
    use: AccessRule


CardFile = BinaryFile | PinFile | KeyFile


@dataclass(frozen=True)
class Application:
    """A DF selected by its AID, with the files it may hold."""

    name: str
    aid: bytes
    label: str
    files: tuple[CardFile, ...]

    def file(self, fid: int) -> CardFile | None:
        return next((f for f in self.files if f.fid == fid), None)

    def file_by_short_id(self, sfi: int) -> CardFile | None:
        return next((f for f in self.files if short_id(f.fid) == sfi), None)
