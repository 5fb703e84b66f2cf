"""What the card holder's side does with a card: sign a document, answer a login challenge."""

from __future__ import annotations

from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from jpki import cms
from jpki.client.session import JpkiSession
from jpki.login import LoginResponse


def sign_document(session: JpkiSession, key: Key, data: bytes, *, detached: bool = True) -> bytes:
    """A CMS SignedData over `data` (SHA-256); the key's PIN must already be verified."""
    certificate = session.read_certificate(key.certificate)
    return cms.sign_detached(
        data,
        certificate,
        lambda digest_info: session.sign_digest_info(key, digest_info),
        detached=detached,
    )


def answer_login(session: JpkiSession, challenge: bytes, pin: str) -> LoginResponse:
    """The client's half of the login: unlock the authentication key and sign the nonce."""
    session.verify_pin(Pin.AUTH, pin)
    certificate = session.read_certificate_der(Certificate.AUTH)
    return LoginResponse(session.sign(Key.AUTH, challenge), certificate)
