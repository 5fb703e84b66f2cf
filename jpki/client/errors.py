"""Errors of talking to a card: unreachable, removed, a status word, a PIN refused."""

from __future__ import annotations

from card_emulator.vocabulary.sw import SW, describe
from jpki.errors import BadValueError, JpkiError


class CardConnectionError(JpkiError):
    """The card or reader cannot be reached."""


class CardRemovedError(CardConnectionError):
    """The card went away (pulled out, or powered off) during the session."""


class ApduError(JpkiError):
    """The card answered a status word other than 9000."""

    def __init__(self, sw: int, command: str = "") -> None:
        self.sw = sw
        where = f"{command}: " if command else ""
        super().__init__(f"{where}card answered {sw:04X} ({describe(sw)})")


class PinFormatError(BadValueError):
    """A PIN value that cannot be right for that PIN: refused before it reaches the card."""


class PinError(JpkiError):
    """A PIN was refused or cannot be tried."""


class WrongPinError(PinError):
    def __init__(self, label: str, tries_left: int) -> None:
        self.tries_left = tries_left
        if tries_left == 0:
            message = f"wrong {label}: it is now blocked"
        else:
            message = f"wrong {label}: {tries_left} {'try' if tries_left == 1 else 'tries'} left"
        super().__init__(message)


class PinBlockedError(PinError):
    def __init__(self, label: str, unblock_hint: str) -> None:
        super().__init__(f"the {label} is blocked; {unblock_hint}")


class PinRequiredError(PinError):
    """The operation needs a PIN that has not been verified in this session."""


class PinNotChangeableError(PinError):
    """The PIN's value is fixed (the card-face keys are numbers printed on the card)."""


class CardDataError(ApduError):
    """The card answered 9000 with data that is not what the card writes."""

    def __init__(self, message: str) -> None:
        JpkiError.__init__(self, message)
        self.sw = SW.NO_PRECISE_DIAGNOSIS
