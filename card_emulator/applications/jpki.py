"""The JPKI AP (公的個人認証) as data: its files, PINs, keys and who may use them."""

from __future__ import annotations

from card_emulator.applications.model import Application, BinaryFile, KeyFile, PinFile, PinVerified
from card_emulator.vocabulary.identifiers import AID, JpkiFile
from card_emulator.vocabulary.pins import Pin

JPKI = Application(
    name="jpki",
    aid=AID.JPKI.value,
    label="JPKI AP (公的個人認証)",
    files=(
        BinaryFile(
            JpkiFile.SIGNATURE_CERTIFICATE,
            "signature certificate",
            read=PinVerified(JpkiFile.SIGNATURE_PIN),
        ),
        BinaryFile(JpkiFile.SIGNATURE_CA_CERTIFICATE, "signature CA certificate"),
        BinaryFile(JpkiFile.TOKEN_INFO, "token info"),
        BinaryFile(JpkiFile.CERTIFICATE_AVAILABILITY, "certificate availability"),
        BinaryFile(JpkiFile.AUTHENTICATION_CERTIFICATE, "authentication certificate"),
        BinaryFile(JpkiFile.AUTHENTICATION_CA_CERTIFICATE, "authentication CA certificate"),
        KeyFile(
            JpkiFile.AUTHENTICATION_KEY,
            "authentication private key",
            use=PinVerified(JpkiFile.AUTHENTICATION_PIN),
        ),
        PinFile.of(Pin.AUTH, change=PinVerified(JpkiFile.AUTHENTICATION_PIN)),
        KeyFile(
            JpkiFile.SIGNATURE_KEY,
            "signature private key",
            use=PinVerified(JpkiFile.SIGNATURE_PIN),
        ),
        PinFile.of(Pin.SIGN, change=PinVerified(JpkiFile.SIGNATURE_PIN)),
    ),
)
