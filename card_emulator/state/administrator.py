"""The card's administrator key and the administrator's own retry counter (lifecycle.md §6).

The issuing side makes the key at issuance, reads it from the card image (never over an APDU)
and is the only one that can restore a blocked counter.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from card_emulator.vocabulary.administration import KEY_LENGTH, MAX_TRIES, administrator_proof


@dataclass
class AdministratorKey:
    """`key`: AES-128 key K; `tries_left`: the administrator's counter (0 = blocked)."""

    key: bytes = field(repr=False)  # never in a trace or an error message
    tries_left: int = MAX_TRIES

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LENGTH:
            raise ValueError(f"an administrator key is {KEY_LENGTH} bytes")
        if not 0 <= self.tries_left <= MAX_TRIES:
            raise ValueError(f"administrator tries must be from 0 to {MAX_TRIES}")

    @classmethod
    def create(cls) -> AdministratorKey:
        """A new key (16 random bytes) with a full counter: what issuance gives a card."""
        return cls(os.urandom(KEY_LENGTH))

    @property
    def max_tries(self) -> int:
        return MAX_TRIES

    @property
    def blocked(self) -> bool:
        return self.tries_left <= 0

    def restore(self) -> None:
        """Counter back to its maximum: after a right proof, or by the issuing side (the only
        way to unblock it). The caller makes it durable (`commit_counters` or `commit`)."""
        self.tries_left = MAX_TRIES

    def proves(self, challenge: bytes, aid: bytes, tag: bytes) -> bool:
        """Whether `tag` is the proof for this challenge in the AP `aid` (constant time)."""
        return hmac.compare_digest(administrator_proof(self.key, challenge, aid), tag)
