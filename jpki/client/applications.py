"""Sessions with the card's other applications, one class each, all `CardSession`s: they share
its (re-)selection and PIN handling (`pin_status`, `verify_pin`, `change_pin` work for any Pin).

protocol = ApduProtocol(connection)
text = CardInfoSession(protocol)                 # 券面事項入力補助AP
text.verify_pin(Pin.CARD_INFO, "1234")           # or Pin.CARD_INFO_A / Pin.CARD_INFO_B
text.my_number(), text.attributes()
face = CardFaceSession(protocol)                 # 券面事項確認AP
face.verify_pin(Pin.FACE_B, "55021720352285")
face.face()                                      # EF 0002 parsed (jpki.card_face.Face)
CommonSession(protocol).card_identification()    # 共通カードAP: serial, municipality, expiry
CardLevelSession(protocol).get_data(CardData.CARD_EXPIRY)

Sessions on one protocol agree on which application is current (the protocol keeps it), so a
command can hold several at once.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from card_emulator.vocabulary.apdu import INS, SHORT_MAX, CommandApdu
from card_emulator.vocabulary.identifiers import (
    AID,
    CardData,
    CardFaceFile,
    CardInfoFile,
    CommonFile,
    ResidentRegistryFile,
)
from card_emulator.vocabulary.pins import Pin
from card_emulator.vocabulary.sw import SW
from jpki.attributes import BasicAttributes, parse_basic_attributes, parse_my_number
from jpki.card_face import (
    AgeRecord,
    Face,
    MyNumberImage,
    parse_age_record,
    parse_face,
    parse_my_number_image,
)
from jpki.client.errors import ApduError, CardDataError
from jpki.client.session import CardSession

CHALLENGE_LENGTH = 16  # what the card-face AP's clients ask GET CHALLENGE for
CARD_KEY = CardFaceFile.CARD_KEY  # P2 00 of COMPUTE DIGITAL SIGNATURE: the AP's own key
INTERNAL_AUTHENTICATION_KEY_REFERENCE = 0x99  # P2 of INTERNAL AUTHENTICATE: 共通 EF 0019
INTERNAL_AUTHENTICATE_MAX = 255
FIRST_RECORD = 1
# 共通 EF 0001 record 1: tag 01, 28 ASCII digits.
CARD_IDENTIFICATION_TAG = 0x01
SERIAL_DIGITS = 15
MUNICIPALITY_CODE_DIGITS = 5
DATE_DIGITS = 8
CARD_IDENTIFICATION_DIGITS = SERIAL_DIGITS + MUNICIPALITY_CODE_DIGITS + DATE_DIGITS
SIMPLE_TLV_HEADER = 2
DATE_FORMAT = "%Y%m%d"
T = TypeVar("T")


def opened_by(*pins: Pin) -> str:
    """`the card-info PIN or the collation number A`: what a PinRequiredError names."""
    return " or ".join(f"the {pin.label}" for pin in pins)


def _date(digits: bytes, what: str) -> datetime.date:
    try:
        if len(digits) != DATE_DIGITS or not digits.isdigit():
            raise ValueError
        return datetime.datetime.strptime(digits.decode("ascii"), DATE_FORMAT).date()
    except ValueError:
        raise CardDataError(f"the {what} is not a date YYYYMMDD") from None


def _simple_tlv_value(record: bytes, tag: int, what: str) -> bytes:
    if len(record) < SIMPLE_TLV_HEADER or record[0] != tag:
        raise CardDataError(f"the {what} record does not start with tag {tag:02X}")
    value = record[SIMPLE_TLV_HEADER:]
    if len(value) != record[1]:
        raise CardDataError(f"the {what} record's length does not match its value")
    return value


@dataclass(frozen=True)
class CardIdentification:
    """共通カードAP EF 0001 record 1: which card this is, who issued it, until when."""

    serial_number: str  # 15 digits (myna prints it; Mynaportal calls it combination_code)
    municipality_code: str  # 5 digits
    card_expiry: datetime.date

    @classmethod
    def parse(cls, record: bytes) -> CardIdentification:
        """From the record `01 1C <serial 15><municipality 5><expiry YYYYMMDD>`."""
        value = _simple_tlv_value(record, CARD_IDENTIFICATION_TAG, "card identification")
        if len(value) != CARD_IDENTIFICATION_DIGITS or not value.isdigit():
            raise CardDataError(
                f"the card identification is not {CARD_IDENTIFICATION_DIGITS} ASCII digits"
            )
        serial = value[:SERIAL_DIGITS].decode("ascii")
        code = value[SERIAL_DIGITS : SERIAL_DIGITS + MUNICIPALITY_CODE_DIGITS].decode("ascii")
        expiry = _date(value[SERIAL_DIGITS + MUNICIPALITY_CODE_DIGITS :], "card expiry")
        return cls(serial, code, expiry)

    def to_json(self) -> dict[str, str]:
        return {
            "serial_number": self.serial_number,
            "municipality_code": self.municipality_code,
            "card_expiry": self.card_expiry.isoformat(),
        }


class ApplicationSession(CardSession):
    """A session for one application, named by `application`: its reads select it first."""

    application: AID

    def _read_tlv(self, fid: int, needs: str | None = None) -> bytes:
        """The TLV in EF `fid`; a refusal (6982) becomes PinRequiredError saying `needs`."""
        return self._read(self.application, lambda: self.protocol.read_tlv_ef(fid), needs)

    def _first_record(self, fid: int) -> bytes:
        """Record 1 of the record EF `fid`, selected first (`00 B2 01 04 00`)."""

        def read() -> bytes:
            self.protocol.select_file(fid)
            return self.protocol.read_record(FIRST_RECORD)

        return self._in(self.application, read)


class CardInfoSession(ApplicationSession):
    """The card-info input-support AP (券面事項入力補助AP): my number and the four attributes,
    opened by the card-info PIN, or collation number A (my number) / B (attributes)."""

    application = AID.CARD_INFO_INPUT_SUPPORT

    def my_number_record(self) -> bytes:
        """EF 0001 as the card holds it: `FF 10 0C` + 12 digits (the filler `FF FF` left off)."""
        return self._read_tlv(
            CardInfoFile.MY_NUMBER,
            f"reading the my number needs {opened_by(Pin.CARD_INFO, Pin.CARD_INFO_A)}",
        )

    def my_number(self) -> str:
        """The 12-digit individual number."""
        return _parsed(parse_my_number, self.my_number_record())

    def attributes_record(self) -> bytes:
        """EF 0002 as the card holds it (either header form)."""
        return self._read_tlv(
            CardInfoFile.BASIC_ATTRIBUTES,
            f"reading the basic attributes needs {opened_by(Pin.CARD_INFO, Pin.CARD_INFO_B)}",
        )

    def attributes(self) -> BasicAttributes:
        """Name, address, birth date and sex."""
        return _parsed(parse_basic_attributes, self.attributes_record())

    def integrity_record(self) -> bytes:
        """EF 0003: the hashes of EF 0001/0002 and the municipality's signature over them."""
        return self._read_tlv(
            CardInfoFile.INTEGRITY_RECORD,
            "reading the integrity record needs "
            + opened_by(Pin.CARD_INFO, Pin.CARD_INFO_A, Pin.CARD_INFO_B),
        )

    def ap_certificate(self) -> bytes:
        """EF 0004: the AP's card-verifiable certificate (`7F 21 …`), free to read."""
        return self._read_tlv(CardInfoFile.AP_CERTIFICATE)

    def basic_info(self) -> bytes:
        """EF 0005: the AP basic info (`FF 40 …`), free to read."""
        return self._read_tlv(CardInfoFile.AP_BASIC_INFO)


class CardFaceSession(ApplicationSession):
    """The card-face AP (券面事項確認AP): the printed face as records signed by the issuing
    municipality, opened by collation number A (Pin.FACE_A), B (Pin.FACE_B) or, for the
    age record only, the birth-date key (Pin.BIRTH_DATE); and the card key that signs
    challenges with no credential."""

    application = AID.CARD_FACE_CONFIRMATION

    def age_record(self) -> bytes:
        """EF 0001: birth date and card key, signed (`FF 10 …`)."""
        return self._read_tlv(
            CardFaceFile.AGE_RECORD, f"reading the age record needs {opened_by(Pin.BIRTH_DATE)}"
        )

    def face_record(self) -> bytes:
        """EF 0002: the card face: birth date, sex, card key, name/address/photo images,
        signature, card expiry, security-code image (`FF 20 82 HH LL …`)."""
        return self._read_tlv(
            CardFaceFile.FACE,
            f"reading the card face needs {opened_by(Pin.FACE_A, Pin.FACE_B)}",
        )

    def age(self) -> AgeRecord:
        """The age record, parsed (its signature unchecked: see jpki.card_face)."""
        return _parsed(parse_age_record, self.age_record())

    def face(self) -> Face:
        """The card face, parsed (its signature unchecked: see jpki.card_face)."""
        return _parsed(parse_face, self.face_record())

    def my_number_image(self) -> MyNumberImage:
        """The my-number image record, parsed (its signature unchecked)."""
        return _parsed(parse_my_number_image, self.my_number_image_record())

    def basic_info(self) -> bytes:
        """EF 0003: the AP basic info (`FF 30 …`), free to read."""
        return self._read_tlv(CardFaceFile.AP_BASIC_INFO)

    def ap_certificate(self) -> bytes:
        """EF 0004: the card-verifiable certificate of the key that signs the records."""
        return self._read_tlv(CardFaceFile.AP_CERTIFICATE)

    def my_number_image_record(self) -> bytes:
        """EF 0005: the my number as printed (`FF 40 …`); only collation number A opens it."""
        return self._read_tlv(
            CardFaceFile.MY_NUMBER_IMAGE,
            f"reading the my-number image needs {opened_by(Pin.FACE_A)}",
        )

    def get_challenge(self, length: int = CHALLENGE_LENGTH) -> bytes:
        """Fresh random bytes from the card (GET CHALLENGE)."""
        return self._in(self.application, lambda: self.protocol.get_challenge(length))

    def sign_challenge(self, challenge: bytes) -> bytes:
        """The card key's PKCS#1 v1.5 signature (sha256WithRSAEncryption) of `challenge`:
        `80 2A 00 00 33 <SHA-256 DigestInfo> 00`. Verify it with the card key inside the
        signed face or age record, never with a key taken from anywhere else."""
        from jpki.cms import digest_info_sha256  # the CMS code loads only for signing

        digest_info = digest_info_sha256(hashlib.sha256(challenge).digest())
        command = CommandApdu(0x80, INS.COMPUTE_DIGITAL_SIGNATURE, 0x00, CARD_KEY, digest_info,
                              le=SHORT_MAX)  # fmt: skip
        return self._read(
            self.application,
            lambda: self.protocol.send(command, "sign with the card key"),
            f"signing with the card key needs {opened_by(Pin.BIRTH_DATE)} on this card",
        )


class ResidentRegistrySession(ApplicationSession):
    """The 住基AP (resident registry): its PIN and one key-reference record."""

    application = AID.RESIDENT_REGISTRY

    def key_reference(self) -> bytes:
        """EF 0002 record 1 (a simple TLV, returned whole)."""
        return self._first_record(ResidentRegistryFile.KEY_REFERENCE)


class CommonSession(ApplicationSession):
    """The common card AP (共通カードAP): the card's identification record, a key reference,
    its PIN, and INTERNAL AUTHENTICATE with a key whose public half is not on the card."""

    application = AID.COMMON_CARD

    def card_identification(self) -> CardIdentification:
        """Serial number, issuing municipality's code, card expiry (EF 0001 record 1)."""
        return CardIdentification.parse(self._first_record(CommonFile.CARD_IDENTIFICATION))

    def key_reference(self) -> bytes:
        """EF 0002 record 1 (a simple TLV, returned whole)."""
        return self._first_record(CommonFile.KEY_REFERENCE)

    def internal_authenticate(self, challenge: bytes) -> bytes:
        """The card's PKCS#1 v1.5 signature of DigestInfo(SHA-256(challenge)), 256 bytes:
        `00 88 00 99 Lc <challenge> 00`. No credential is needed."""
        if not 1 <= len(challenge) <= INTERNAL_AUTHENTICATE_MAX:
            raise ValueError(
                f"a challenge is 1 to {INTERNAL_AUTHENTICATE_MAX} bytes, not {len(challenge)}"
            )
        command = CommandApdu(0x00, INS.INTERNAL_AUTHENTICATE, 0x00,
                              INTERNAL_AUTHENTICATION_KEY_REFERENCE, challenge,
                              le=SHORT_MAX)  # fmt: skip
        return self._in(
            self.application, lambda: self.protocol.send(command, "INTERNAL AUTHENTICATE")
        )


class CardLevelSession(CardSession):
    """The card itself (the MF): GET DATA objects, answered only in the power-on state.

    Selecting the GlobalPlatform ISD returns the card there, which also forgets what was
    verified in the application left: read card-level data before verifying PINs."""

    def get_data(self, tag: CardData) -> bytes:
        """The data object `tag`, whole (an extended Le fetches those over 256 bytes)."""
        try:
            self.protocol.select_card_manager()
        except ApduError as error:
            # A card without a selectable ISD answers GET DATA only straight after a reset.
            if error.sw != SW.FILE_NOT_FOUND:
                raise
        try:
            return self.protocol.get_data(tag)
        except ApduError as error:
            if error.sw == SW.REFERENCE_DATA_NOT_FOUND:
                what = tag.name.lower().replace("_", " ")
                raise ApduError(error.sw, f"GET DATA {tag:04X} ({what})") from None
            raise


def _parsed(parse: Callable[[bytes], T], data: bytes) -> T:
    try:
        return parse(data)
    except ValueError as error:
        raise CardDataError(str(error)) from None
