"""Errors of the card side: each prints as one readable line."""

from __future__ import annotations


class CardEmulatorError(Exception):
    """Base of every error the emulator raises to its user (never to a client: it gets an SW)."""


class CardImageError(CardEmulatorError, ValueError):
    """The card image is malformed."""


class CardFileError(CardEmulatorError):
    """A card file cannot be used (missing, corrupt, locked, not writable)."""


class CardPoweredOff(CardEmulatorError, ConnectionError):
    """A command reached the card while it had no power: to a host, the card is gone."""


class CardRemoved(CardEmulatorError, ConnectionError):
    """A command reached a card that is out of its reader (pulled out, or a fault removed it)."""


class PowerLost(CardEmulatorError, ConnectionError):
    """Power was cut at one of the card's persistence points (an injected fault): the command
    gets no answer, and what is on disk is what a real power cut there would leave."""


class FaultSpecError(CardEmulatorError, ValueError):
    """A fault spec (`sw=6A82,ins=B0`) that cannot be parsed, or not used on this card."""
