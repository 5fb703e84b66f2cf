"""The card's file model as data: applications (DFs), their EFs, keys and PINs, and access rules."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from card_emulator.vocabulary.apdu import INS
from card_emulator.vocabulary.identifiers import short_id
from card_emulator.vocabulary.pins import Pin, PinRule
from card_emulator.vocabulary.sw import SW


@dataclass(frozen=True)
class Always:
    """No condition."""


@dataclass(frozen=True, init=False)
class PinVerified:
    """One of these PINs has been verified in the current security state."""

    pins: tuple[int, ...]

    def __init__(self, *pins: int) -> None:
        object.__setattr__(self, "pins", pins)


@dataclass(frozen=True)
class Never:
    """Not allowed to anyone (the card-face keys' values come from the printed face)."""


AccessRule = Always | PinVerified | Never


@dataclass(frozen=True)
class BinaryFile:
    """A transparent EF, read with READ BINARY."""

    fid: int
    description: str
    read: AccessRule = Always()


@dataclass(frozen=True)
class RecordFile:
    """A record EF, read with READ RECORD: its content is simple-TLV records, one after another."""

    fid: int
    description: str
    read: AccessRule = Always()


class ResetRule(enum.Enum):
    """What the administrator's RESET RETRY COUNTER may do to a key reference (lifecycle.md §6)."""

    NEW_VALUE_OR_UNBLOCK = "new value or unblock"
    UNBLOCK_ONLY = "unblock only"  # its value is printed on the card face
    NEVER = "never"  # blocked at issuance, for good (card-info 0012)


@dataclass(frozen=True)
class PinFile:
    """An EF holding reference data: checked by VERIFY, replaced by CHANGE REFERENCE DATA under
    the `change` rule (never readable), reset by the administrator as `reset` says."""

    fid: int
    description: str
    rule: PinRule
    change: AccessRule
    # (application, EF) whose counter this one uses when the `shared_collation_counters`
    # setting is on: the card-face collation numbers can share the card-info AP's.
    shared_with: tuple[str, int] | None = None
    reset: ResetRule = ResetRule.NEW_VALUE_OR_UNBLOCK

    @classmethod
    def of(
        cls, pin: Pin, change: AccessRule, shared_with: tuple[str, int] | None = None
    ) -> PinFile:
        """The EF of one of the holder's PINs, with its label, rule and what the window may do
        to it from the vocabulary."""
        face = pin.lock.value_from_face
        reset = ResetRule.UNBLOCK_ONLY if face else ResetRule.NEW_VALUE_OR_UNBLOCK
        return cls(pin.fid, pin.label, pin.rule, change, shared_with, reset)


class KeyUse(enum.Enum):
    """What a private key answers to."""

    SIGNATURE = "signature"  # COMPUTE DIGITAL SIGNATURE, every scheme (JPKI); 00 88 → 6982
    CARD_KEY = "card-key"  # COMPUTE DIGITAL SIGNATURE P1 00 with P2 00 (card face); 00 88 → 6985
    INTERNAL_AUTHENTICATION = "internal-authentication"  # INTERNAL AUTHENTICATE (common AP)


@dataclass(frozen=True)
class KeyFile:
    """An EF holding an RSA private key for COMPUTE DIGITAL SIGNATURE (never readable)."""

    fid: int
    description: str
    use: AccessRule
    kind: KeyUse = KeyUse.SIGNATURE


CardFile = BinaryFile | RecordFile | PinFile | KeyFile


@dataclass(frozen=True)
class Application:
    """A DF selected by its AID, with the files it may hold."""

    name: str  # at most 16 ASCII characters (the counters file's slot)
    aid: bytes  # empty for the card level (the MF), which SELECT by name never finds
    label: str
    files: tuple[CardFile, ...]
    # The INS that changes a PIN here: CHANGE REFERENCE DATA, or CHANGE KEY (80 32).
    pin_change: int = INS.CHANGE_REFERENCE_DATA
    # SET SESSION KEY: refused with this SW, or, when `session_key_after` is verified, 6A80
    # (secure messaging is off: no session key is accepted).
    session_key_refusal: int = SW.SECURITY_STATUS_NOT_SATISFIED
    session_key_after: PinVerified | None = None

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
        # Short id 0 names no file (P2 `80` is "the current EF"; FID 0000 is the AP's own key).
        return {short_id(file.fid): file for file in reversed(self.files) if short_id(file.fid)}
