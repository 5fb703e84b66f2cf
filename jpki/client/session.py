"""Sessions: what people do with a My Number card, as method calls on any card (real or virtual).

with VirtualCard.open("card.json") as card:      # or PcscConnection("PCD 00 00")
    session = JpkiSession(ApduProtocol(card))
    session.read_certificate(Certificate.AUTH)
    session.verify_pin(Pin.AUTH, "1234")
    signature = session.sign(Key.AUTH, b"data")      # SHA-256 on the host, DigestInfo to the card

The other applications' sessions (card info, card face, 住基, common, card level) are in
`jpki.client.applications`; all share `CardSession`'s selection and PIN handling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509

from card_emulator.vocabulary.apdu import INS, CommandApdu
from card_emulator.vocabulary.identifiers import AID, SHORT_ID_FLAG, short_id
from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from card_emulator.vocabulary.sw import SW, tries_left_in
from jpki.client.errors import (
    ApduError,
    PinBlockedError,
    PinFormatError,
    PinNotChangeableError,
    PinRequiredError,
    WrongPinError,
)
from jpki.client.protocol import ApduProtocol

# What a card back at the MF (after a reset) answers for an EF or a PIN of the AP it forgot.
NOT_IN_APPLICATION = frozenset({SW.FILE_NOT_FOUND, SW.REFERENCE_DATA_NOT_FOUND})
CURRENT_EF = 0x80  # P2 of VERIFY/CHANGE: the current EF


@dataclass(frozen=True)
class PinChange:
    """The command an application changes a PIN with (after VERIFY; only the new value)."""

    name: str
    cla: int
    ins: int
    p1: int


CHANGE_REFERENCE_DATA = PinChange("CHANGE REFERENCE DATA", 0x00, INS.CHANGE_REFERENCE_DATA, 0x01)
CHANGE_KEY = PinChange("CHANGE KEY", 0x80, INS.CHANGE_KEY, 0x00)
# The card-face AP has none: its keys are the numbers printed on the card.
PIN_CHANGE = {
    AID.JPKI: CHANGE_REFERENCE_DATA,
    AID.CARD_INFO_INPUT_SUPPORT: CHANGE_REFERENCE_DATA,
    AID.RESIDENT_REGISTRY: CHANGE_KEY,
    AID.COMMON_CARD: CHANGE_KEY,
}
# Short, stable names of the applications, as card images and `jpki pin status --json` use them.
APPLICATION_NAMES = {
    AID.JPKI: "jpki",
    AID.CARD_INFO_INPUT_SUPPORT: "card-info",
    AID.CARD_FACE_CONFIRMATION: "card-face",
    AID.RESIDENT_REGISTRY: "juki",
    AID.COMMON_CARD: "common",
}
UNBLOCK_HINT = "the municipal window unblocks it (for a virtual card: jpki window unblock {name})"
T = TypeVar("T")


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


def check_pin_format(pin: Pin, value: str) -> None:
    """Refuse a value that cannot be this PIN, before it reaches the card and costs a try."""
    refusal = pin.refusal(value)
    if refusal is not None:
        raise PinFormatError(refusal)


class CardSession:
    """A session with one card: selects applications as needed and works their PINs."""

    def __init__(self, protocol: ApduProtocol) -> None:
        # Sessions of several applications may share one protocol: which AP is current is
        # the card's state, so the protocol keeps it, not the session.
        self.protocol = protocol

    def select(self, application: AID) -> None:
        """Select an AP (once: re-selecting would be harmless, but costs an APDU)."""
        if self.protocol.selected != application.value:
            self.protocol.select_application(application.value)

    def _in(self, application: AID, action: Callable[[], T]) -> T:
        """Run `action` in `application`, selecting it again if the card forgot it (a reset
        returns the card to the MF, where every EF answers 6A82)."""
        remembered = self.protocol.selected == application.value
        self.select(application)
        try:
            return action()
        except ApduError as error:
            if not (remembered and error.sw in NOT_IN_APPLICATION):
                raise
        self.protocol.selected = None
        self.select(application)
        return action()

    def _read(self, application: AID, read: Callable[[], T], needs: str | None = None) -> T:
        """A read in `application`; the card's 6982 becomes PinRequiredError saying `needs`."""
        try:
            return self._in(application, read)
        except ApduError as error:
            if error.sw == SW.SECURITY_STATUS_NOT_SATISFIED and needs is not None:
                raise PinRequiredError(needs) from None
            raise

    def _pin_command(self, ins: int, p1: int, pin: Pin, value: bytes = b"") -> CommandApdu:
        return CommandApdu(0x00, ins, p1, SHORT_ID_FLAG | short_id(pin.fid), value)

    def _verify(self, pin: Pin, value: bytes) -> int:
        def query() -> int:
            sw = self.protocol.transmit(self._pin_command(INS.VERIFY, 0x00, pin, value)).sw
            if sw in NOT_IN_APPLICATION:
                application = APPLICATION_NAMES[pin.application]
                raise ApduError(sw, f"this card has no {pin.label} in its {application} AP")
            return sw

        return self._in(pin.application, query)

    def pin_status(self, pin: Pin) -> PinStatus:
        """Tries left, from the retry query (a VERIFY with no data): costs no try."""
        sw = self._verify(pin, b"")
        tries = tries_left_in(sw)
        if tries is None:
            raise ApduError(sw, f"retry query of the {pin.label}")
        return PinStatus(pin, tries)

    def verify_pin(self, pin: Pin, value: str) -> None:
        """Verify a PIN; a wrong one raises WrongPinError with the tries left. A value that
        cannot be this PIN raises PinFormatError and never reaches the card."""
        check_pin_format(pin, value)
        sw = self._verify(pin, value.encode())
        if sw == SW.SUCCESS:
            return
        tries = tries_left_in(sw)
        if tries is not None:
            raise WrongPinError(pin.label, tries)
        if sw == SW.AUTHENTICATION_METHOD_BLOCKED:
            raise PinBlockedError(pin.label, UNBLOCK_HINT.format(name=pin.target))
        raise ApduError(sw, f"VERIFY {pin.label}")

    def change_pin(self, pin: Pin, old: str, new: str) -> None:
        """Verify the old value, then set the new one (the card takes only the new value), with
        the command the PIN's application uses. The card-face keys are the printed face's
        numbers and cannot be changed: refused before anything is sent."""
        change = PIN_CHANGE.get(pin.application)
        if change is None:
            raise PinNotChangeableError(
                f"the {pin.label} of the card face cannot be changed: it is printed on the card"
            )
        check_pin_format(pin, new)
        self.verify_pin(pin, old)

        def send() -> bytes:
            self.protocol.select_file(pin.fid)  # the card changes the current PIN EF (P2 80)
            command = CommandApdu(change.cla, change.ins, change.p1, CURRENT_EF, new.encode())
            return self.protocol.send(command, f"{change.name} {pin.label}")

        self._in(pin.application, send)


class JpkiSession(CardSession):
    """The JPKI AP: certificates, PINs and the two private keys."""

    def read_certificate_der(self, certificate: Certificate) -> bytes:
        try:
            return self._in(AID.JPKI, lambda: self.protocol.read_der(certificate.fid))
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

    def sign_digest_info(self, key: Key, digest_info: bytes) -> bytes:
        """The card's PKCS#1 v1.5 signature over a DigestInfo (its PIN must be verified)."""
        command = CommandApdu(0x80, INS.COMPUTE_DIGITAL_SIGNATURE, 0x00,
                              SHORT_ID_FLAG | short_id(key.fid), digest_info, le=256)  # fmt: skip
        try:
            return self._in(
                AID.JPKI, lambda: self.protocol.send(command, f"sign with the {key.key} key")
            )
        except ApduError as error:
            if error.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
                raise PinRequiredError(
                    f"signing with the {key.key} key needs the {key.pin.label}"
                ) from None
            raise

    def sign(self, key: Key, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 with SHA-256 over `data`: hashed here, padded and signed on the card."""
        from jpki.cms import digest_info_sha256  # the CMS code loads only for signing

        return self.sign_digest_info(key, digest_info_sha256(hashlib.sha256(data).digest()))
