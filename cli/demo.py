"""The main job on the embedded default: a throwaway in-memory card, exercised APDU by APDU."""

from __future__ import annotations

import datetime
import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.apdu import CommandApdu, ResponseApdu, redacted_hex
from card_emulator.vocabulary.identifiers import AID
from card_emulator.vocabulary.sw import describe
from jpki.card_face import parse_face
from jpki.cms import digest_info_sha256
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.provision import provision_card

DEMO_AUTH_PIN = "1234"
DEMO_SIGN_PIN = "ABC123"


def run_demo(echo: Callable[[str], None]) -> bool:
    """Issue a card, then read, verify PINs and sign like a JPKI client; True if all went well."""
    holder = Holder(
        name="試験　花子",
        birth_date=datetime.date(1990, 4, 1),
        sex=Sex.FEMALE,
        address="東京都渋谷区神南一丁目１番１号",
        my_number="123456789018",
    )
    echo("Issuing a throwaway card in memory (test CA, RSA-2048 keys, PIN 1234)...")
    with tempfile.TemporaryDirectory() as directory:
        ca = TestCA.create(Path(directory))
        image = provision_card(ca, holder, DEMO_AUTH_PIN, DEMO_SIGN_PIN)
    card = VirtualCard.in_memory(image)
    echo(f"ATR {card.atr.hex().upper()}")

    def send(what: str, command: CommandApdu) -> ResponseApdu:
        raw = command.encode()
        response = ResponseApdu.parse(card.transmit(raw))
        echo(f"{what:<44} > {redacted_hex(raw)}")
        echo(f"{'':<44} < {len(response.data)} bytes, {response.sw:04X} {describe(response.sw)}")
        return response

    digest = hashlib.sha256(b"hello, JPKI").digest()
    send("SELECT the JPKI AP", CommandApdu(0x00, 0xA4, 0x04, 0x0C, AID.JPKI.value))
    send(
        "SELECT EF 000A (authentication certificate)",
        CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x00\x0a"),
    )
    certificate_bytes = send(
        "READ BINARY, whole EF (extended Le)", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=65536)
    ).data
    send("VERIFY retry query (authentication PIN)", CommandApdu(0x00, 0x20, 0x00, 0x98))
    send("VERIFY with a wrong PIN", CommandApdu(0x00, 0x20, 0x00, 0x98, b"0000"))
    send("VERIFY with the right PIN", CommandApdu(0x00, 0x20, 0x00, 0x98, DEMO_AUTH_PIN.encode()))
    send("VERIFY retry query again", CommandApdu(0x00, 0x20, 0x00, 0x98))
    signature = send(
        "COMPUTE DIGITAL SIGNATURE (key 0017)",
        CommandApdu(0x80, 0x2A, 0x00, 0x97, digest_info_sha256(digest), le=256),
    ).data
    send("READ the signature certificate (no password)", CommandApdu(0x00, 0xB0, 0x81, 0x00, le=4))

    public_key = x509.load_der_x509_certificate(certificate_bytes).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(signature, b"hello, JPKI", padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        echo("The card's signature does NOT verify against its certificate.")
        return False
    echo("The card's signature verifies against the authentication certificate.")

    send("SELECT the card-face AP", CommandApdu(0x00, 0xA4, 0x04, 0x0C, AID.CARD_FACE_CONFIRMATION))
    send("VERIFY collation number A (the my number)", CommandApdu(0x00, 0x20, 0x00, 0x93,
                                                        holder.my_number.encode()))  # fmt: skip
    send("SELECT EF 0002 (the card face)", CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x00\x02"))
    face = parse_face(send("READ BINARY, whole EF", CommandApdu(0, 0xB0, 0, 0, le=65536)).data)
    challenge = send("GET CHALLENGE", CommandApdu(0x00, 0x84, 0x00, 0x00, le=16)).data
    challenge_info = digest_info_sha256(hashlib.sha256(challenge).digest())
    answer = send("sign it with the card key", CommandApdu(0x80, 0x2A, 0x00, 0x00, challenge_info,
                                                           le=256)).data  # fmt: skip
    try:
        face.card_key.verify(answer, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        echo("The chip's challenge signature does NOT verify with the key in its face record.")
        return False
    echo(
        f"Card face: born {_iso(face.birth_date)}, card valid until {_iso(face.expiry)}, photo "
        f"{len(face.photo_jp2)} bytes (JPEG 2000); the chip holds the key of its face record."
    )
    return True


def _iso(yyyymmdd: str) -> str:
    return f"{yyyymmdd[:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:]}"
