"""The card's file model as data: applications (DFs), their EFs, keys and PINs, and access rules."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from card_emulator.vocabulary.identifiers import short_id
from card_emulator.vocabulary.pins import Pin, PinRule


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
class PinFile:
    """An EF holding reference data: checked by VERIFY, replaced by CHANGE REFERENCE DATA under
    the `change` rule (never readable)."""

    fid: int
    description: str
    rule: PinRule
    change: AccessRule

    @classmethod
    def of(cls, pin: Pin, change: AccessRule) -> PinFile:
        """The EF of one of the holder's PINs, with its label and rule from the vocabulary."""
        return cls(pin.fid, pin.label, pin.rule, change)


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
        return self._by_fid.get(fid)

    def file_by_short_id(self, sfi: int) -> CardFile | None:
        return self._by_short_id.get(sfi)

    # Looked up on every APDU: built once per application, from the files as listed.
    @functools.cached_property
    def _by_fid(self) -> dict[int, CardFile]:
        return {file.fid: file for file in reversed(self.files)}

    @functools.cached_property
    def _by_short_id(self) -> dict[int, CardFile]:
        return {short_id(file.fid): file for file in reversed(self.files)}
