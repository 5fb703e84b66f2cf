"""The JPKI AP's private keys and certificates, by the names people use for them."""

from __future__ import annotations

import enum

from card_emulator.vocabulary.identifiers import JpkiFile
from card_emulator.vocabulary.pins import Pin


class Certificate(enum.Enum):
    """Certificate EFs of the JPKI AP: (name, EF, PIN needed to read it)."""

    AUTH = ("auth", JpkiFile.AUTHENTICATION_CERTIFICATE, None)
    SIGN = ("sign", JpkiFile.SIGNATURE_CERTIFICATE, Pin.SIGN)
    AUTH_CA = ("auth-ca", JpkiFile.AUTHENTICATION_CA_CERTIFICATE, None)
    SIGN_CA = ("sign-ca", JpkiFile.SIGNATURE_CA_CERTIFICATE, None)

    def __init__(self, key: str, fid: int, pin: Pin | None) -> None:
        self.key = key
        self.fid = fid
        self.pin = pin

    @classmethod
    def named(cls, key: str) -> Certificate:
        return next(certificate for certificate in cls if certificate.key == key)


class Key(enum.Enum):
    """Private keys of the JPKI AP: (name, key EF, the PIN that unlocks it, its certificate)."""

    AUTH = ("auth", JpkiFile.AUTHENTICATION_KEY, Pin.AUTH, Certificate.AUTH)
    SIGN = ("sign", JpkiFile.SIGNATURE_KEY, Pin.SIGN, Certificate.SIGN)

    def __init__(self, key: str, fid: int, pin: Pin, certificate: Certificate) -> None:
        self.key = key
        self.fid = fid
        self.pin = pin
        self.certificate = certificate

    @classmethod
    def named(cls, key: str) -> Key:
        return next(k for k in cls if k.key == key)
