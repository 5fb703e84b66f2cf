"""The root of every error the `jpki` package raises; each prints as one readable line."""

from __future__ import annotations


class JpkiError(Exception):
    """Base of every error of the host side: client, issuer and relying party."""


class BadValueError(JpkiError, ValueError):
    """A value given by the user cannot be right (a PIN's format, a my number's check digit…)."""
