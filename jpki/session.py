"""The JPKI session: what people do with a My Number card, as method calls on any card.

with open_card(...) as connection:
    card = JpkiSession(ApduProtocol(connection))
    card.read_certificate(Certificate.AUTH)
    card.verify_pin(Pin.AUTH, "1234")
    signature = card.sign(Key.AUTH, b"data")          # SHA-256 on the host, DigestInfo to the card
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from cryptography import x509

from card_emulator.apdu import INS, CommandApdu
from card_emulator.files import SHORT_ID_FLAG, PinFile, PinPolicy, short_id
from card_emulator.profiles import AID, CardInfoFile, JpkiFile, application_by_aid
from card_emulator.signing import SHA256_DIGEST_INFO_PREFIX
from card_emulator.sw import SW
from jpki.errors import ApduError, PinBlockedError, PinRequiredError, WrongPinError
from jpki.protocol import ApduProtocol

RETRY_COUNTER_SW = 0x63C0
UNBLOCK_HINT = "a municipal office can reset it (for a virtual card: jpki card unblock {name})"


class Pin(enum.Enum):
    """The PINs a holder uses: (name, application, EF, label); rules come from the profile."""

    AUTH = ("auth", AID.JPKI, JpkiFile.AUTHENTICATION_PIN, "authentication PIN")
    SIGN = ("sign", AID.JPKI, JpkiFile.SIGNATURE_PIN, "signature password")
    CARD_INFO = ("card-info", AID.CARD_INFO_INPUT_SUPPORT, CardInfoFile.PIN, "card-info PIN")
    CARD_INFO_A = ("card-info-a", AID.CARD_INFO_INPUT_SUPPORT, CardInfoFile.COLLATION_NUMBER_A,
                   "collation number A")  # fmt: skip
    CARD_INFO_B = ("card-info-b", AID.CARD_INFO_INPUT_SUPPORT, CardInfoFile.COLLATION_NUMBER_B,
                   "collation number B")  # fmt: skip

    def __init__(self, key: str, application: AID, fid: int, label: str) -> None:
        self.key = key
        self.application = application
        self.fid = fid
        self.label = label

    @property
    def policy(self) -> PinPolicy:
        """Length, alphabet and tries, as the card's profile defines them."""
        profile = application_by_aid(self.application.value)
        pin_file = profile.file(self.fid) if profile else None
        assert isinstance(pin_file, PinFile), f"{self} is not in the card profile"
        return pin_file.policy

    @property
    def max_tries(self) -> int:
        return self.policy.max_tries

    @classmethod
    def named(cls, key: str) -> Pin:
        return next(pin for pin in cls if pin.key == key)


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


@dataclass(frozen=True)
class PinStatus:
    pin: Pin
    tries_left: int

    @property
    def max_tries(self) -> int:
        return self.pin.max_tries

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0


class JpkiSession:
    """One holder's session with a My Number card (real or virtual)."""

    def __init__(self, protocol: ApduProtocol) -> None:
        self.protocol = protocol
        self._selected: AID | None = None

    def select(self, application: AID = AID.JPKI) -> None:
        """Select an AP (once: re-selecting would be harmless, but costs an APDU)."""
        if self._selected is not application:
            self._selected = None
            self.protocol.select_application(application.value)
            self._selected = application

    # Certificates ------------------------------------------------------------------------

    def read_certificate_der(self, certificate: Certificate) -> bytes:
        self.select()
        try:
            return self.protocol.read_der(certificate.fid)
        except ApduError as error:
            if error.sw == SW.SECURITY_STATUS_NOT_SATISFIED and certificate.pin is not None:
                raise PinRequiredError(
                    f"reading the {certificate.key} certificate needs the {certificate.pin.label}"
                ) from None
            if error.sw == SW.FILE_NOT_FOUND:
                raise ApduError(
                    error.sw, f"this card has no {certificate.key} certificate"
                ) from None
            raise

    def read_certificate(self, certificate: Certificate) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.read_certificate_der(certificate))

    # PINs ----------------------------------------------------------------------------------

    def _verify_command(self, pin: Pin, value: bytes = b"") -> CommandApdu:
        return CommandApdu(0x00, INS.VERIFY, 0x00, SHORT_ID_FLAG | short_id(pin.fid), value)

    def pin_status(self, pin: Pin) -> PinStatus:
        """Tries left, from the retry query (a VERIFY with no data): costs no try."""
        self.select(pin.application)
        response = self.protocol.transmit(self._verify_command(pin))
        if response.sw & 0xFFF0 != RETRY_COUNTER_SW:
            raise ApduError(response.sw, f"retry query of the {pin.label}")
        return PinStatus(pin, response.sw & 0x0F)

    def verify_pin(self, pin: Pin, value: str) -> None:
        """Verify a PIN; a wrong one raises WrongPinError with the tries left."""
        self.select(pin.application)
        response = self.protocol.transmit(self._verify_command(pin, value.encode()))
        if response.sw == SW.SUCCESS:
            return
        if response.sw & 0xFFF0 == RETRY_COUNTER_SW:
            raise WrongPinError(pin.label, response.sw & 0x0F)
        if response.sw == SW.AUTHENTICATION_METHOD_BLOCKED:
            raise PinBlockedError(pin.label, UNBLOCK_HINT.format(name=pin.key))
        raise ApduError(response.sw, f"VERIFY {pin.label}")

    def change_pin(self, pin: Pin, old: str, new: str) -> None:
        """Verify the old value, then set the new one (the card takes only the new value)."""
        self.verify_pin(pin, old)
        command = CommandApdu(0x00, INS.CHANGE_REFERENCE_DATA, 0x01,
                              SHORT_ID_FLAG | short_id(pin.fid), new.encode())  # fmt: skip
        response = self.protocol.transmit(command)
        if response.sw == SW.INCORRECT_DATA:
            raise ApduError(response.sw, f"the card refused the new {pin.label} (wrong format)")
        if response.sw != SW.SUCCESS:
            raise ApduError(response.sw, f"CHANGE REFERENCE DATA {pin.label}")

    # Signatures ----------------------------------------------------------------------------

    def sign_digest_info(self, key: Key, digest_info: bytes) -> bytes:
        """The card's PKCS#1 v1.5 signature over a DigestInfo (its PIN must be verified)."""
        self.select()
        command = CommandApdu(0x80, INS.COMPUTE_DIGITAL_SIGNATURE, 0x00,
                              SHORT_ID_FLAG | short_id(key.fid), digest_info, le=256)  # fmt: skip
        try:
            return self.protocol.send(command, f"sign with the {key.key} key")
        except ApduError as error:
            if error.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
                raise PinRequiredError(
                    f"signing with the {key.key} key needs the {key.pin.label}"
                ) from None
            raise

    def sign(self, key: Key, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 with SHA-256 over `data`: hashed here, padded and signed on the card."""
        digest = hashlib.sha256(data).digest()
        return self.sign_digest_info(key, SHA256_DIGEST_INFO_PREFIX + digest)
