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
