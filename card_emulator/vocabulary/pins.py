"""The card's PINs, one table: where each lives, what people call it, and the rules it follows.

These are the real card's rules, known to any client: a value that breaks them can never be
right, so a host refuses it before it reaches the card (where it would cost a try).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from card_emulator.vocabulary.identifiers import (
    AID,
    CardFaceFile,
    CardInfoFile,
    CommonFile,
    JpkiFile,
    ResidentRegistryFile,
)


@dataclass(frozen=True)
class PinRule:
    """Length and alphabet a PIN must follow, and its retry limit."""

    min_length: int
    max_length: int
    alphabet: str  # regular-expression character class body, e.g. "0-9" or "A-Z0-9"
    max_tries: int
    # The card setting that overrides max_tries, where the spec only guessed the limit.
    tries_setting: str | None = None

    def accepts(self, value: bytes) -> bool:
        pattern = f"[{self.alphabet}]{{{self.min_length},{self.max_length}}}"
        return re.fullmatch(pattern.encode(), value) is not None

    def describe(self) -> str:
        """What a valid value looks like, e.g. `exactly 4 digits`."""
        if self.alphabet == "0-9" and self.min_length == self.max_length:
            return f"exactly {self.min_length} digits"
        return f"{self.min_length} to {self.max_length} characters of {self.alphabet} (upper case)"


FOUR_DIGITS = PinRule(min_length=4, max_length=4, alphabet="0-9", max_tries=3)
SIGNATURE_PASSWORD = PinRule(min_length=6, max_length=16, alphabet="A-Z0-9", max_tries=5)
COLLATION_NUMBER_A = PinRule(12, 12, "0-9", max_tries=10, tries_setting="collation_a_tries")
COLLATION_NUMBER_B = PinRule(14, 14, "0-9", max_tries=10, tries_setting="collation_b_tries")
BIRTH_DATE_KEY = PinRule(6, 6, "0-9", max_tries=10, tries_setting="birth_date_key_tries")


class Pin(enum.Enum):
    """The card's ten key references a holder uses: (name, application, EF, label, rule)."""

    AUTH = ("auth", AID.JPKI, JpkiFile.AUTHENTICATION_PIN, "authentication PIN", FOUR_DIGITS)
    SIGN = ("sign", AID.JPKI, JpkiFile.SIGNATURE_PIN, "signature password", SIGNATURE_PASSWORD)
    CARD_INFO = ("card-info", AID.CARD_INFO_INPUT_SUPPORT, CardInfoFile.PIN, "card-info PIN",
                 FOUR_DIGITS)  # fmt: skip
    CARD_INFO_A = ("card-info-a", AID.CARD_INFO_INPUT_SUPPORT, CardInfoFile.COLLATION_NUMBER_A,
                   "collation number A", COLLATION_NUMBER_A)  # fmt: skip
    CARD_INFO_B = ("card-info-b", AID.CARD_INFO_INPUT_SUPPORT, CardInfoFile.COLLATION_NUMBER_B,
                   "collation number B", COLLATION_NUMBER_B)  # fmt: skip
    FACE_A = ("face-a", AID.CARD_FACE_CONFIRMATION, CardFaceFile.COLLATION_NUMBER_A,
              "collation number A", COLLATION_NUMBER_A)  # fmt: skip
    FACE_B = ("face-b", AID.CARD_FACE_CONFIRMATION, CardFaceFile.COLLATION_NUMBER_B,
              "collation number B", COLLATION_NUMBER_B)  # fmt: skip
    BIRTH_DATE = ("birth-date", AID.CARD_FACE_CONFIRMATION, CardFaceFile.BIRTH_DATE_KEY,
                  "birth-date key", BIRTH_DATE_KEY)  # fmt: skip
    JUKI = ("juki", AID.RESIDENT_REGISTRY, ResidentRegistryFile.PIN, "住基 PIN", FOUR_DIGITS)
    COMMON = ("common", AID.COMMON_CARD, CommonFile.PIN, "common AP PIN", FOUR_DIGITS)

    def __init__(self, key: str, application: AID, fid: int, label: str, rule: PinRule) -> None:
        self.key = key
        self.application = application
        self.fid = fid
        self.label = label
        self.rule = rule

    @property
    def max_tries(self) -> int:
        return self.rule.max_tries

    def accepts(self, value: str) -> bool:
        """Whether `value` can be this PIN at all (length and alphabet)."""
        return value.isascii() and self.rule.accepts(value.encode())

    def refusal(self, value: str) -> str | None:
        """Why `value` can never be this PIN, or None if it can."""
        return None if self.accepts(value) else f"the {self.label} must be {self.rule.describe()}"

    @classmethod
    def named(cls, key: str) -> Pin:
        return next(pin for pin in cls if pin.key == key)

    @property
    def lock(self) -> Lock:
        """What this key reference protects and who can unlock it (lifecycle.md §2)."""
        return LOCKS[self]

    @property
    def target(self) -> str:
        """The window's name for it: its own target, else the pair it belongs to."""
        return next(
            (name for name, pins in TARGETS.items() if pins == (self,)),
            next(name for name, pins in TARGETS.items() if self in pins),
        )


WINDOW = "the municipal window"
STORE = "a convenience store (within 24 hours of a reservation)"


@dataclass(frozen=True)
class Lock:
    """Why a blocked key reference matters and how it is unblocked."""

    protects: str
    channels: tuple[str, ...]
    value_from_face: bool = False  # the window can only unblock it: its value is printed


LOCKS = {
    Pin.AUTH: Lock("logging in (the authentication key)", (WINDOW, STORE)),
    Pin.SIGN: Lock("signing (the signature key and certificate)", (WINDOW, STORE)),
    Pin.CARD_INFO: Lock("the my number and the four attributes (card-info AP)", (WINDOW,)),
    Pin.CARD_INFO_A: Lock("reading the my number without the PIN", (WINDOW,), True),
    Pin.CARD_INFO_B: Lock("reading the four attributes without the PIN", (WINDOW,), True),
    Pin.FACE_A: Lock("the card face and the my-number image", (WINDOW,), True),
    Pin.FACE_B: Lock("the card face (PIN-less identity checks)", (WINDOW,), True),
    Pin.BIRTH_DATE: Lock("the age record (age checks)", (WINDOW,), True),
    Pin.JUKI: Lock("resident-registry services (住基AP)", (WINDOW,)),
    Pin.COMMON: Lock("common-card services (共通AP)", (WINDOW,)),
}

# The names every window and store command takes, and the key references each one resets
# (a collation number lives in two APs; the 住基 PIN is reset with the common AP's).
TARGETS: dict[str, tuple[Pin, ...]] = {
    "auth": (Pin.AUTH,),
    "sign": (Pin.SIGN,),
    "card-info": (Pin.CARD_INFO,),
    "collation-a": (Pin.CARD_INFO_A, Pin.FACE_A),
    "collation-b": (Pin.CARD_INFO_B, Pin.FACE_B),
    "birth-date": (Pin.BIRTH_DATE,),
    "juki": (Pin.JUKI, Pin.COMMON),
    "common": (Pin.COMMON,),
}
