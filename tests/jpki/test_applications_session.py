"""Sessions with every application of the card, against in-memory cards: the card-info AP on the
fixture cards, the card-face, 住基, common APs and card-level data on a freshly provisioned one;
with the APDUs they send where a real card would care."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from card_emulator.state.store import FileStore
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import (
    AID,
    CardData,
    CardInfoFile,
    CommonFile,
)
from card_emulator.vocabulary.keys import Key
from card_emulator.vocabulary.pins import Pin
from jpki.attributes import MalformedRecordError, parse_basic_attributes, parse_my_number
from jpki.client.applications import (
    CardFaceSession,
    CardIdentification,
    CardInfoSession,
    CardLevelSession,
    CommonSession,
    ResidentRegistrySession,
)
from jpki.client.connection import InProcessConnection
from jpki.client.errors import (
    ApduError,
    CardDataError,
    PinFormatError,
    PinNotChangeableError,
    PinRequiredError,
    WrongPinError,
)
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from jpki.issuer import card_info
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.provision import provision_card
from tests.conftest import CA_DIR, CardFactory

TARO = Holder(
    "番号\u3000太郎", datetime.date(1980, 2, 17), Sex.MALE, "東京都渋谷区神南一丁目１９番１１号",
    "123456789018",
)  # fmt: skip
SECURITY_CODE = "2285"
COLLATION_A = "123456789018"
COLLATION_B = "55021720362285"  # Showa 55-02-17, card expiry 2036, security code 2285
BIRTH_DATE_KEY = "550217"
NEW_APPLICATIONS = ("card-face", "juki", "common", "card")


def collation_b_of(card: VirtualCard) -> str:
    """Collation number B of a fixture card for TARO, from what its issuer recorded."""
    metadata = card.image.metadata
    return BIRTH_DATE_KEY + str(metadata["card_expiry"])[:4] + str(metadata["security_code"])


class Recording:
    """A connection that keeps every command APDU sent, in hex."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self.sent: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex().upper())
        return self.card.transmit(apdu)

    def close(self) -> None:
        self.card.close()


@pytest.fixture(scope="module")
def provisioned_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A card issued for TARO with every application (generated keys: once per module)."""
    directory = tmp_path_factory.mktemp("provisioned")
    shutil.copytree(CA_DIR, directory / "ca")
    image = provision_card(TestCA.load(directory / "ca"), TARO, "1234", "ABC123",
                           security_code=SECURITY_CODE)  # fmt: skip
    if "card-face" not in image.applications:
        pytest.skip("provisioning does not write the card-face AP yet")
    FileStore.create(directory / "card.json", image)
    return directory / "card.json"


@pytest.fixture
def provisioned(provisioned_file: Path) -> VirtualCard:
    return VirtualCard.in_memory(provisioned_file)


@pytest.fixture
def wire(provisioned: VirtualCard) -> Recording:
    return Recording(provisioned)


@pytest.fixture
def protocol(wire: Recording) -> ApduProtocol:
    return ApduProtocol(wire)


def on(card: VirtualCard) -> ApduProtocol:
    return ApduProtocol(InProcessConnection(card))


# The card-info AP's records, parsed --------------------------------------------------------

LONG_ADDRESS = "東" * 100  # 300 bytes: the outer length needs 82 HH LL even when minimal
MEDIUM_ADDRESS = "東" * 35  # 105 bytes: an outer length of 128..255 is 81 LL when minimal


@pytest.mark.parametrize(
    ("address", "long_header", "header", "form"),
    [
        (TARO.address, False, "FF20", "short"),
        (MEDIUM_ADDRESS, False, "FF2081", "short"),
        (TARO.address, True, "FF208200", "long"),
        (LONG_ADDRESS, False, "FF208201", "long"),
    ],
)
def test_basic_attributes_in_every_header_form(
    address: str, long_header: bool, header: str, form: str
) -> None:
    holder = Holder(TARO.name, TARO.birth_date, Sex.NOT_APPLICABLE, address, TARO.my_number)
    record = card_info.basic_attributes_record(holder, long_header=long_header)
    assert record.hex().upper().startswith(header)
    parsed = parse_basic_attributes(record + b"\xff" * 32)  # a whole-EF read's filler too
    assert (parsed.name, parsed.address, parsed.birth_date) == (
        TARO.name, address, datetime.date(1980, 2, 17),
    )  # fmt: skip
    assert (parsed.sex, parsed.sex_label, parsed.header_form) == ("9", "not applicable", form)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: b"\xff\x21" + r[2:], "expected tag FF20"),
        (lambda r: r[:-4], "runs past the end"),
        (lambda r: r[:8] + bytes([r[8] + 1]) + r[9:], "DF21 offsets do not match"),
        (lambda r: r.replace(b"19800217", b"19801317"), "birth date is not YYYYMMDD"),
        (lambda r: r[:-1] + b"7", "unknown sex code"),
    ],
)
def test_malformed_attributes_say_what_is_wrong(damage: object, message: str) -> None:
    record = card_info.basic_attributes_record(TARO, long_header=True)
    with pytest.raises(MalformedRecordError, match=message) as raised:
        parse_basic_attributes(damage(record))  # type: ignore[operator]
    assert isinstance(raised.value, ValueError)


def test_my_number_record() -> None:
    assert parse_my_number(card_info.my_number_record("123456789018")) == "123456789018"
    with pytest.raises(MalformedRecordError, match="12 ASCII digits"):
        parse_my_number(bytes.fromhex("FF100B") + b"12345678901")


# Protocol: whole EFs, records, data objects ------------------------------------------------


def test_read_tlv_ef_reads_the_header_then_exactly_the_rest(make_card: CardFactory) -> None:
    card = make_card()
    wire = Recording(card)
    session = CardInfoSession(ApduProtocol(wire))
    session.verify_pin(Pin.CARD_INFO, "1234")
    wire.sent.clear()
    record = session.attributes_record()
    assert record == card.image.contents("card-info").files[CardInfoFile.BASIC_ATTRIBUTES]
    assert wire.sent[:2] == ["00A4020C020002", "00B0000007"]
    assert wire.sent[2] == f"00B00007{len(record) - 7:02X}"


def test_read_ef_reads_256_byte_chunks_until_6b00_or_a_short_one(make_card: CardFactory) -> None:
    card = make_card()
    files = card.image.contents("card-info").files
    wire = Recording(card)
    protocol = ApduProtocol(wire)
    protocol.select_application(AID.CARD_INFO_INPUT_SUPPORT.value)
    assert protocol.read_ef(CardInfoFile.AP_CERTIFICATE) == files[CardInfoFile.AP_CERTIFICATE]
    assert wire.sent[-3:] == ["00B0000000", "00B0010000", "00B0020000"]  # 568 = 256+256+56
    files[CardInfoFile.AP_BASIC_INFO] = bytes(range(256)) * 2
    wire.sent.clear()
    assert protocol.read_ef(CardInfoFile.AP_BASIC_INFO) == bytes(range(256)) * 2
    assert wire.sent[1:] == ["00B0000000", "00B0010000", "00B0020000"]  # the last one: 6B00


def test_get_data_retries_with_an_extended_le_for_large_objects(
    protocol: ApduProtocol, wire: Recording
) -> None:
    card = CardLevelSession(protocol)
    assert card.get_data(CardData.MUNICIPALITY_CODE) == b"13113"
    assert wire.sent == ["00A4040C07A0000001510000", "00CA00F000"]
    wire.sent.clear()
    root = card.get_data(CardData.ROOT_CVC)
    assert len(root) == 563 and root.startswith(bytes.fromhex("5F4E820129"))
    assert wire.sent[1:] == ["00CA00F800", "00CA00F8000000"]


def test_read_record_in_both_forms(protocol: ApduProtocol, wire: Recording) -> None:
    protocol.select_application(AID.COMMON_CARD.value)
    protocol.select_file(CommonFile.CARD_IDENTIFICATION)
    by_current = protocol.read_record(1)
    by_short_id = protocol.read_record(1, sfi=CommonFile.CARD_IDENTIFICATION)
    assert by_current == by_short_id and by_current[:2] == bytes.fromhex("011C")
    assert wire.sent[-2:] == ["00B2010400", "00B2010C00"]
    with pytest.raises(ApduError, match="6A83"):
        protocol.read_record(2)


# The card-info AP ---------------------------------------------------------------------------


def test_my_number_needs_the_pin_or_collation_number_a(card: VirtualCard) -> None:
    session = CardInfoSession(on(card))
    with pytest.raises(PinRequiredError, match="card-info PIN or the collation number A"):
        session.my_number()
    session.verify_pin(Pin.CARD_INFO_A, COLLATION_A)
    assert session.my_number() == "123456789018"
    with pytest.raises(PinRequiredError, match="card-info PIN or the collation number B"):
        session.attributes()  # A does not open the attributes


def test_attributes_with_collation_number_b(make_card: CardFactory) -> None:
    card = make_card("long-header")
    session = CardInfoSession(on(card))
    session.verify_pin(Pin.CARD_INFO_B, collation_b_of(card))
    attributes = session.attributes()
    assert attributes.name == "番号\u3000太郎"
    assert attributes.address == "東京都渋谷区神南一丁目１９番１１号"
    assert (attributes.birth_date, attributes.sex) == (datetime.date(1980, 2, 17), "1")
    assert attributes.header_form == "long"  # this fixture card has FF 20 82 00 LL
    with pytest.raises(PinRequiredError):
        session.my_number()


def test_a_short_header_card(provisioned: VirtualCard) -> None:
    session = CardInfoSession(on(provisioned))
    session.verify_pin(Pin.CARD_INFO, "1234")
    assert session.attributes().header_form == "short"
    assert session.my_number() == "123456789018"


def test_wrong_collation_numbers_cost_a_try_but_a_wrong_shape_never_reaches_the_card(
    card: VirtualCard,
) -> None:
    wire = Recording(card)
    session = CardInfoSession(ApduProtocol(wire))
    with pytest.raises(WrongPinError, match="collation number B: 9 tries left"):
        session.verify_pin(Pin.CARD_INFO_B, "55021720360000")
    sent = len(wire.sent)
    with pytest.raises(PinFormatError, match="exactly 14 digits"):
        session.verify_pin(Pin.CARD_INFO_B, "5502172036")
    assert len(wire.sent) == sent
    assert session.pin_status(Pin.CARD_INFO_B).tries_left == 9


def test_a_damaged_record_is_a_card_data_error(card: VirtualCard) -> None:
    card.image.contents("card-info").files[CardInfoFile.MY_NUMBER] = bytes.fromhex("FF1003313233")
    session = CardInfoSession(on(card))
    session.verify_pin(Pin.CARD_INFO, "1234")
    with pytest.raises(CardDataError, match="12 ASCII digits"):
        session.my_number()


# The card-face AP ---------------------------------------------------------------------------


def test_collation_number_b_opens_the_face_but_not_the_my_number_image(
    provisioned: VirtualCard,
) -> None:
    session = CardFaceSession(on(provisioned))
    with pytest.raises(PinRequiredError, match="collation number A or the collation number B"):
        session.face_record()
    session.verify_pin(Pin.FACE_B, COLLATION_B)
    face = session.face()
    assert (face.birth_date, face.sex, face.expiry) == ("19800217", "1", "20360217")
    assert face.photo_jp2.startswith(bytes.fromhex("0000000C6A502020"))
    assert face.name_png.startswith(b"\x89PNG")
    with pytest.raises(PinRequiredError, match="my-number image needs the collation number A"):
        session.my_number_image_record()
    with pytest.raises(PinRequiredError, match="birth-date key"):
        session.age_record()


def test_collation_number_a_opens_the_my_number_image(provisioned: VirtualCard) -> None:
    session = CardFaceSession(on(provisioned))
    session.verify_pin(Pin.FACE_A, COLLATION_A)
    image = session.my_number_image()
    assert image.png.startswith(b"\x89PNG")
    assert image.card_key.public_numbers() == session.face().card_key.public_numbers()


def test_the_birth_date_key_opens_only_the_age_record(provisioned: VirtualCard) -> None:
    session = CardFaceSession(on(provisioned))
    session.verify_pin(Pin.BIRTH_DATE, BIRTH_DATE_KEY)
    assert session.age().birth_date == "19800217"
    with pytest.raises(PinRequiredError):
        session.face_record()


def test_free_records_of_the_card_face(provisioned: VirtualCard) -> None:
    session = CardFaceSession(on(provisioned))
    assert session.ap_certificate().startswith(bytes.fromhex("7F21820233"))
    assert len(session.ap_certificate()) == 568
    assert session.basic_info().startswith(bytes.fromhex("FF3082013B"))


def test_the_challenge_signature_verifies_with_the_card_key_of_the_face(
    protocol: ApduProtocol, wire: Recording
) -> None:
    session = CardFaceSession(protocol)
    challenge = session.get_challenge()
    assert len(challenge) == 16 and challenge != session.get_challenge()
    signature = session.sign_challenge(challenge)  # no credential needed
    digest_info_apdu = wire.sent[-1]
    assert digest_info_apdu.startswith("802A000033" + "3031300D060960864801650304020105000420")
    assert digest_info_apdu.endswith("00") and len(digest_info_apdu) == 2 * (5 + 0x33 + 1)
    session.verify_pin(Pin.FACE_B, COLLATION_B)
    card_key = session.face().card_key
    card_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())


def test_the_card_face_keys_cannot_be_changed_and_nothing_is_sent(
    protocol: ApduProtocol, wire: Recording
) -> None:
    session = CardFaceSession(protocol)
    for pin in (Pin.FACE_A, Pin.FACE_B, Pin.BIRTH_DATE):
        with pytest.raises(PinNotChangeableError, match="printed on the card"):
            session.change_pin(pin, COLLATION_A, COLLATION_A)
    assert wire.sent == []


# 住基, common and card level -----------------------------------------------------------------


def test_card_identification_and_key_references(provisioned: VirtualCard) -> None:
    protocol = on(provisioned)
    identification = CommonSession(protocol).card_identification()
    assert identification == CardIdentification(
        provisioned.image.metadata["card_serial_number"], "13113", datetime.date(2036, 2, 17)
    )
    common_reference = CommonSession(protocol).key_reference()
    assert ResidentRegistrySession(protocol).key_reference() == common_reference
    assert len(common_reference) == 18  # a simple TLV, tag and length included
    card_number = CardLevelSession(protocol).get_data(CardData.CARD_IDENTIFICATION_NUMBER)
    assert card_number.decode() == identification.serial_number


def test_card_identification_refuses_a_damaged_record() -> None:
    with pytest.raises(CardDataError, match="28 ASCII digits"):
        CardIdentification.parse(bytes.fromhex("0103") + b"123")
    with pytest.raises(CardDataError, match="card expiry"):
        CardIdentification.parse(bytes.fromhex("011C") + b"4" * 15 + b"13221" + b"20351317")


def test_internal_authenticate(provisioned: VirtualCard, wire: Recording) -> None:
    session = CommonSession(ApduProtocol(wire))
    challenge = bytes(range(16))
    signature = session.internal_authenticate(challenge)
    assert wire.sent[-1] == "0088009910" + challenge.hex().upper() + "00"
    key = provisioned.image.contents("common").keys[CommonFile.AUTHENTICATION_KEY].public_key()
    key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        session.internal_authenticate(b"")


@pytest.mark.parametrize(
    ("pin", "session_type", "change_apdu"),
    [
        (Pin.JUKI, ResidentRegistrySession, "8032008004"),
        (Pin.COMMON, CommonSession, "8032008004"),
        (Pin.CARD_INFO, CardInfoSession, "0024018004"),
        (Pin.AUTH, JpkiSession, "0024018004"),
    ],
)
def test_pin_change_uses_the_command_of_its_application(
    wire: Recording, pin: Pin, session_type: type[JpkiSession], change_apdu: str
) -> None:
    session = session_type(ApduProtocol(wire))
    session.change_pin(pin, "1234", "4321")
    assert wire.sent[-1] == change_apdu + b"4321".hex().upper()
    assert wire.sent[-2] == f"00A4020C02{pin.fid:04X}"  # the PIN EF current for P2 80
    with pytest.raises(WrongPinError, match="2 tries left"):
        session.verify_pin(pin, "1234")
    session.verify_pin(pin, "4321")
    others = {Pin.JUKI, Pin.COMMON, Pin.CARD_INFO, Pin.AUTH} - {pin}
    assert all(session.pin_status(other).tries_left == 3 for other in others)


def test_card_level_data(protocol: ApduProtocol) -> None:
    card = CardLevelSession(protocol)
    assert card.get_data(CardData.CARD_EXPIRY) == b"20360217"
    assert card.get_data(CardData.ATR_INFORMATION) == bytes.fromhex("E000FF8131FE4514")
    assert len(card.get_data(CardData.SECOND_CVC)) > 256


def test_card_level_data_returns_the_card_to_its_power_on_state(protocol: ApduProtocol) -> None:
    """Selecting the card manager forgets what was verified: read card data first."""
    jpki = JpkiSession(protocol)
    jpki.verify_pin(Pin.AUTH, "1234")
    CardLevelSession(protocol).get_data(CardData.MUNICIPALITY_CODE)
    with pytest.raises(PinRequiredError, match="authentication PIN"):
        jpki.sign(Key.AUTH, b"data")
    jpki.verify_pin(Pin.AUTH, "1234")
    assert len(jpki.sign(Key.AUTH, b"data")) == 256


def test_sessions_sharing_a_protocol_agree_on_the_current_application(
    provisioned: VirtualCard, wire: Recording
) -> None:
    protocol = ApduProtocol(wire)
    text, face = CardInfoSession(protocol), CardFaceSession(protocol)
    text.verify_pin(Pin.CARD_INFO, "1234")
    face.ap_certificate()  # selects the card-face AP: the card forgets the card-info PIN
    with pytest.raises(PinRequiredError):
        text.my_number()  # so the card-info AP is selected again, not assumed
    selects = [apdu for apdu in wire.sent if apdu.startswith("00A4040C0A")]
    assert selects == [
        "00A4040C0A" + AID.CARD_INFO_INPUT_SUPPORT.value.hex().upper(),
        "00A4040C0A" + AID.CARD_FACE_CONFIRMATION.value.hex().upper(),
        "00A4040C0A" + AID.CARD_INFO_INPUT_SUPPORT.value.hex().upper(),
    ]


def test_every_pin_of_a_provisioned_card_answers_the_retry_query(
    provisioned: VirtualCard,
) -> None:
    session = JpkiSession(on(provisioned))
    tries = {pin: session.pin_status(pin).tries_left for pin in Pin}
    assert tries == {pin: pin.max_tries for pin in Pin}


def test_a_card_file_without_the_new_applications(card: VirtualCard) -> None:
    for name in NEW_APPLICATIONS:  # as card files made before they were emulated
        del card.image.applications[name]
    session = CardFaceSession(on(card))
    with pytest.raises(ApduError):
        session.pin_status(Pin.FACE_A)
    with pytest.raises(ApduError):
        CommonSession(session.protocol).card_identification()


def test_a_reset_between_commands_is_followed(provisioned: VirtualCard) -> None:
    common = CommonSession(on(provisioned))
    first = common.card_identification()
    provisioned.reset()  # back at the MF: the session selects the AP again
    assert common.card_identification() == first
