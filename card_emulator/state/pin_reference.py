"""PIN reference data: a salted hash and a retry counter; the PIN itself is never stored."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

KDF_NAME = "pbkdf2-sha256-length-prefixed"
# Cheap on purpose (docs/CARD_FORMAT.md): the retry counter protects a PIN, not the hash's cost.
DEFAULT_ITERATIONS = 1_000
SALT_LENGTH = 16
DIGEST_LENGTH = 32
MAX_ITERATIONS = 10_000_000


def _derive(value: bytes, salt: bytes, iterations: int) -> bytes:
    # HMAC pads keys with zeros, so "1234" and "1234\x00" would collide without the length prefix.
    return hashlib.pbkdf2_hmac("sha256", len(value).to_bytes(2, "big") + value, salt, iterations)


@dataclass
class PinReference:
    """What the card keeps for one PIN: a salted hash and how many tries are left."""

    salt: bytes
    digest: bytes
    iterations: int
    tries_left: int

    @classmethod
    def create(cls, value: bytes, tries: int, iterations: int = DEFAULT_ITERATIONS) -> PinReference:
        salt = os.urandom(SALT_LENGTH)
        return cls(salt, _derive(value, salt, iterations), iterations, tries)

    def matches(self, candidate: bytes) -> bool:
        """Compare in constant time; the bytes are taken exactly (no case folding, no padding)."""
        return hmac.compare_digest(_derive(candidate, self.salt, self.iterations), self.digest)

    def replace(self, value: bytes) -> None:
        """Set a new PIN value (fresh salt)."""
        self.salt = os.urandom(SALT_LENGTH)
        self.digest = _derive(value, self.salt, self.iterations)

    @property
    def blocked(self) -> bool:
        return self.tries_left <= 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kdf": KDF_NAME,
            "iterations": self.iterations,
            "salt": self.salt.hex(),
            "hash": self.digest.hex(),
            "tries_left": self.tries_left,
        }
