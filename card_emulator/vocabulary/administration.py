"""The emulator's administration protocol (lifecycle.md §6): what a terminal that resets PINs
over APDUs must know. It stands in for the real window protocol, which is not public.

A terminal selects an AP, asks GET CHALLENGE for 16 bytes `R`, proves the card's administrator
key `K` with EXTERNAL AUTHENTICATE `00 82 00 00 10 <administrator_proof(K, R, AID)>`, then sends
RESET RETRY COUNTER (`00 2C 03 …` unblock, `00 2C 02 … <new value>` new value).
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

KEY_LENGTH = 16  # AES-128
CHALLENGE_LENGTH = 16  # only a GET CHALLENGE of exactly this length gives a usable R
PROOF_LENGTH = 16  # the full AES-CMAC tag
MAX_TRIES = 15  # the administrator's own retry counter, at issuance and after a right proof
DERIVATION_LABEL = b"JPKI-EMU-ADMIN"


class ResetMode(enum.IntEnum):
    """P1 of RESET RETRY COUNTER."""

    NEW_VALUE = 0x02  # new reference data, counter to its maximum
    UNBLOCK = 0x03  # counter to its maximum, value kept


def administrator_proof(key: bytes, challenge: bytes, aid: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B, 16-byte tag) of the challenge followed by the current AP's AID,
    so a proof made for one AP is refused in another."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(challenge + aid)
    return mac.finalize()


def derive_administrator_key(master: bytes, card_serial: bytes) -> bytes:
    """A fleet's per-card key: AES-CMAC(K_master, "JPKI-EMU-ADMIN" ‖ card serial)."""
    mac = cmac.CMAC(algorithms.AES(master))
    mac.update(DERIVATION_LABEL + card_serial)
    return mac.finalize()
