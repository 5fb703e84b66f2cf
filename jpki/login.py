"""The JPKI login's messages, shared by the card holder's side and the relying party's side.

The server sends a random nonce; the client answers with the card's signature over it (the
authentication key, RSA PKCS#1 v1.5 with SHA-256) and the authentication certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

NONCE_LENGTH = 32


@dataclass(frozen=True)
class LoginResponse:
    """What the client sends back: the signature over the nonce and the auth certificate (DER)."""

    signature: bytes
    certificate: bytes
