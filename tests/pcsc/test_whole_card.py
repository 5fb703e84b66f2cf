"""The whole card through a real reader, as an integrator's script drives it: pyscard alone (no
jpki client), a private pcscd with vpcd, and fixture cards served by `jpki serve`.

Each test writes its APDUs by hand (/work/shared/spec/jpki-card.md §4–§8) and checks what comes
back against the card file: the my number and the four attributes (card-info AP), the card-face
photo read as myna reads it, the face's signature and CVC chain under the fixture CA's pinned
root, the 共通 AP's card identification record, and the `pin status` queries of myna (Rust).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from card_emulator.state.store import read_image
from jpki.attributes import parse_basic_attributes, parse_my_number
from jpki.card_face import Face, parse_face
from jpki.cvc import CardVerifiableCertificate
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder
from jpki.relying_party.card_face import FaceCheck, check_card_face
from jpki.testing.pcscd import PrivatePcscd
from tests.conftest import CA_DIR, CARDS
from tests.pcsc.harness import READER, ServedCard

pytestmark = pytest.mark.reader_stack

# taro: the default card; long-header: EF 0002 written `FF 20 82 00 LL`; unknown-era: a foreign
# resident with no era, sex "9" and a Latin name.
SERVED_CARDS = ("taro", "long-header", "unknown-era")

CARD_INFO_AP = bytes.fromhex("D3921000310001010408")
CARD_FACE_AP = bytes.fromhex("D3921000310001010402")
COMMON_AP = bytes.fromhex("D3921000310001010100")
JPKI_AP = bytes.fromhex("D392F000260100000001")
GLOBAL_PLATFORM_ISD = bytes.fromhex("A0000001510000")

# card-info AP
CARD_INFO_PIN = 0x0011
CARD_INFO_MY_NUMBER = 0x0001
CARD_INFO_ATTRIBUTES = 0x0002
MY_NUMBER_RECORD_SIZE = 0x11
# card-face AP
FACE_COLLATION_A = 0x0013
FACE_COLLATION_B = 0x0012
FACE_RECORD = 0x0002
FACE_AP_CVC = 0x0004
FACE_HEADER_SIZE = 7  # FF 20 82 HH LL DF 21: what myna reads first
# MF GET DATA tags (§7)
ISSUER_CVC_TAG = 0x7F21
MUNICIPALITY_CODE_TAG = 0x00F0
CARD_EXPIRY_TAG = 0x00F2

AUTH_PIN = b"1234"
CHALLENGE_SIZE = 16
SIGNATURE_SIZE = 256
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300D060960864801650304020105000420")
JP2_SIGNATURE = bytes.fromhex("0000000C6A502020")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_IDENTIFICATION_TAG = 0x01
SERIAL_DIGITS, MUNICIPALITY_DIGITS, DATE_DIGITS = 15, 5, 8

SW_OK = 0x9000
SW_TRIES_LEFT = 0x63C0  # | tries left
SHORT_LE_MAX = 256  # Le byte 00
TAG_NUMBER_MASK = 0x1F  # a first tag byte with these bits set continues in the next byte
LENGTH_ONE_BYTE, LENGTH_TWO_BYTES = 0x81, 0x82

# `pin status` of myna (Rust 0.6–0.7), spec §8: (application in the card file, AID, key EF).
MYNA_RUST_PIN_STATUS = (
    ("card-info", CARD_INFO_AP, 0x0011),
    ("card-info", CARD_INFO_AP, 0x0014),
    ("card-info", CARD_INFO_AP, 0x0015),
    ("card-face", CARD_FACE_AP, 0x0013),
    ("card-face", CARD_FACE_AP, 0x0012),
    ("jpki", JPKI_AP, 0x0018),
    ("jpki", JPKI_AP, 0x001B),
)


class StatusError(AssertionError):
    """A command the script expected to succeed did not: the exchange, in hex."""


class Card:
    """A pyscard connection and the handful of commands an integrator's script writes by hand."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data), sw1 << 8 | sw2

    def ok(self, apdu: bytes) -> bytes:
        data, sw = self.send(apdu)
        if sw != SW_OK:
            raise StatusError(f"{apdu.hex(' ').upper()} → {data.hex(' ').upper()} {sw:04X}")
        return data

    def select_ap(self, aid: bytes) -> None:
        assert self.ok(bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid) == b""

    def select_ef(self, fid: int) -> None:
        assert self.ok(bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + fid.to_bytes(2, "big")) == b""

    def verify(self, secret: bytes) -> None:
        """VERIFY of the current key EF, `00 20 00 80 Lc <secret>`."""
        assert self.ok(bytes([0x00, 0x20, 0x00, 0x80, len(secret)]) + secret) == b""

    def retry_query(self) -> int:
        """The status word of `00 20 00 80` (4 bytes, case 1) on the current key EF."""
        data, sw = self.send(bytes.fromhex("00200080"))
        assert data == b""
        return sw

    def read_binary(self, offset: int, length: int) -> bytes:
        """`00 B0 HH LL Le`, Le = `00` for 256; exactly `length` bytes must come back."""
        assert 0 < length <= SHORT_LE_MAX
        le = length % SHORT_LE_MAX
        data = self.ok(bytes([0x00, 0xB0]) + offset.to_bytes(2, "big") + bytes([le]))
        assert len(data) == length, f"READ BINARY at {offset}: {len(data)} bytes, not {length}"
        return data

    def get_data(self, tag: int) -> bytes:
        """GET DATA with extended Le `00 00 00`, as large objects need."""
        return self.ok(bytes([0x00, 0xCA]) + tag.to_bytes(2, "big") + bytes(3))

    def get_data_short(self, tag: int) -> bytes:
        return self.ok(bytes([0x00, 0xCA]) + tag.to_bytes(2, "big") + b"\x00")

    def get_challenge(self) -> bytes:
        challenge = self.ok(bytes([0x00, 0x84, 0x00, 0x00, CHALLENGE_SIZE]))
        assert len(challenge) == CHALLENGE_SIZE
        return challenge

    def sign_with_the_card_face_key(self, message: bytes) -> bytes:
        """`80 2A 00 00 33 <SHA-256 DigestInfo of message> 00`, the card-face AP current."""
        digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(message).digest()
        apdu = bytes([0x80, 0x2A, 0x00, 0x00, len(digest_info)]) + digest_info + b"\x00"
        signature = self.ok(apdu)
        assert len(signature) == SIGNATURE_SIZE
        return signature


def declared_size(header: bytes) -> int:
    """The whole size of the BER TLV whose first bytes are `header` (tags of one or two bytes,
    lengths `LL`, `81 LL` or `82 HH LL`), as a script works it out before reading the rest."""
    at = 2 if header[0] & TAG_NUMBER_MASK == TAG_NUMBER_MASK else 1
    first = header[at]
    if first == LENGTH_ONE_BYTE:
        return at + 2 + header[at + 1]
    if first == LENGTH_TWO_BYTES:
        return at + 3 + int.from_bytes(header[at + 1 : at + 3], "big")
    return at + 1 + first


def read_rest(card: Card, header: bytes) -> bytes:
    """The TLV `header` starts: the rest from where the header ended, in chunks of ≤ 256."""
    size = declared_size(header)
    data = bytearray(header[:size])
    while len(data) < size:
        data += card.read_binary(len(data), min(size - len(data), SHORT_LE_MAX))
    return bytes(data)


def read_like_myna(card: Card, size: int) -> bytes:
    """myna (Go): Le=`00` chunks from offset 0, then one read of the exact remainder."""
    whole, remainder = divmod(size, SHORT_LE_MAX)
    data = b"".join(card.read_binary(SHORT_LE_MAX * n, SHORT_LE_MAX) for n in range(whole))
    if remainder:
        data += card.read_binary(SHORT_LE_MAX * whole, remainder)
    return data


def read_my_number(card: Card) -> str:
    """card-info AP, the PIN, then EF 0001's 17 bytes: what myna does before the card face."""
    card.select_ap(CARD_INFO_AP)
    card.select_ef(CARD_INFO_PIN)
    card.verify(AUTH_PIN)
    card.select_ef(CARD_INFO_MY_NUMBER)
    return parse_my_number(card.read_binary(0, MY_NUMBER_RECORD_SIZE))


def read_face_with_collation_a(card: Card, my_number: str) -> bytes:
    """The card-face AP opened with 照合番号A, EF 0002 read the way myna (Go) reads it."""
    card.select_ap(CARD_FACE_AP)
    card.select_ef(FACE_COLLATION_A)
    card.verify(my_number.encode("ascii"))
    card.select_ef(FACE_RECORD)
    header = card.read_binary(0, FACE_HEADER_SIZE)
    return read_like_myna(card, declared_size(header))


def read_free_ef(card: Card, fid: int, header_size: int = 5) -> bytes:
    card.select_ef(fid)
    return read_rest(card, card.read_binary(0, header_size))


def pin_status(card: Card) -> list[int]:
    """myna (Rust)'s `pin status`: SELECT each AP once, then per key `SELECT EF` + `00 20 00 80`."""
    answers, current = [], None
    for _application, aid, fid in MYNA_RUST_PIN_STATUS:
        if aid != current:
            card.select_ap(aid)
            current = aid
        card.select_ef(fid)
        answers.append(card.retry_query())
    return answers


def tries_in_card_file(path: Path) -> list[int]:
    image = read_image(path)
    return [
        image.contents(application).pins[fid].tries_left
        for application, _aid, fid in MYNA_RUST_PIN_STATUS
    ]


def gregorian(day: datetime.date | str) -> str:
    """YYYYMMDD, as the card writes dates, from a date or an ISO date string."""
    if isinstance(day, str):
        day = datetime.date.fromisoformat(day)
    return day.strftime("%Y%m%d")


@contextmanager
def connected(reader_name: str) -> Iterator[Card]:
    """A pyscard connection to the card in `reader_name`, always let go of."""
    from smartcard.System import readers  # pyscard: the reader_stack marker skips without it

    reader = next(r for r in readers() if str(r) == reader_name)
    connection = reader.createConnection()
    connection.connect()
    try:
        yield Card(connection)
    finally:
        # Disconnects and releases the PC/SC context now, not in a __del__ after pcscd is gone.
        connection.release()


@pytest.fixture(params=SERVED_CARDS)
def card_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.json"
    shutil.copyfile(CARDS / f"{request.param}.json", path)
    return path


@pytest.fixture
def metadata(card_path: Path) -> dict[str, Any]:
    return read_image(card_path).metadata


@pytest.fixture
def holder(metadata: dict[str, Any]) -> Holder:
    return Holder.from_json(metadata["holder"])


@pytest.fixture
def card(pcscd: PrivatePcscd, card_path: Path) -> Iterator[Card]:
    """The card freshly served and connected: in the power-on state, nothing selected."""
    with ServedCard(card_path), connected(READER) as connection:
        yield connection


@pytest.fixture(scope="module")
def pinned_root(tmp_path_factory: pytest.TempPathFactory) -> CardVerifiableCertificate:
    """The root CVC a relying party pins, from a copy of the fixture CA (loading may add files)."""
    ca = tmp_path_factory.mktemp("ca") / "ca"
    shutil.copytree(CA_DIR, ca)
    return TestCA.load(ca).cvc_root()


def test_the_my_number_and_the_four_attributes(
    card: Card, card_path: Path, holder: Holder, metadata: dict[str, Any]
) -> None:
    assert read_my_number(card) == holder.my_number
    card.select_ef(CARD_INFO_ATTRIBUTES)
    header = card.read_binary(0, 5)  # enough for either header form, FF 20 LL or FF 20 82 HH LL
    record = read_rest(card, header)
    attributes = parse_basic_attributes(record)
    assert (attributes.name, attributes.address, attributes.birth_date, attributes.sex) == (
        holder.name,
        holder.address,
        holder.birth_date,
        holder.sex.card_info_code,
    )
    assert attributes.header_form == metadata["attributes_header"]
    assert record == read_image(card_path).contents("card-info").files[CARD_INFO_ATTRIBUTES]


def test_the_card_face_photo_read_as_myna_reads_it(
    card: Card, card_path: Path, holder: Holder, metadata: dict[str, Any]
) -> None:
    record = read_face_with_collation_a(card, read_my_number(card))
    assert record == read_image(card_path).contents("card-face").files[FACE_RECORD][: len(record)]
    face = parse_face(record)
    assert face.photo_jp2.startswith(JP2_SIGNATURE)
    with Image.open(io.BytesIO(face.photo_jp2)) as photo:
        photo.load()
        assert photo.format == "JPEG2000" and photo.width > 0 and photo.height > 0
    for png in (face.name_png, face.address_png, face.security_code_png):
        assert png.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG"
    assert face.birth_date == gregorian(holder.birth_date)
    assert face.sex == holder.sex.card_info_code
    assert face.expiry == gregorian(metadata["card_expiry"])


def _flip_in_birth_date(record: bytes) -> bytes:
    """The face record with one digit of DF22 (the birth date, signed in group 1) changed."""
    face = parse_face(record)  # checks DF21 points at DF22
    at = int.from_bytes(record[8:10], "big")  # DF21's first offset: FF 20 82 HH LL DF 21 12 ‖ …
    assert record[at : at + 3] == bytes.fromhex("DF2208")
    year_digit = at + 3 + 3  # the last digit of the year: still a date, for any birthday but 29/2
    tampered = record[:year_digit] + bytes([record[year_digit] ^ 0x01]) + record[year_digit + 1 :]
    assert parse_face(tampered).birth_date != face.birth_date
    return tampered


def test_the_face_signature_and_the_cvc_chain_verify(
    card: Card, pinned_root: CardVerifiableCertificate
) -> None:
    issuer_cvc = card.get_data(ISSUER_CVC_TAG)  # the power-on state: nothing selected yet
    record = read_face_with_collation_a(card, read_my_number(card))
    ap_cvc = read_free_ef(card, FACE_AP_CVC)
    challenge = card.get_challenge()
    signature = card.sign_with_the_card_face_key(challenge)

    def check(face: bytes) -> FaceCheck:
        return check_card_face(
            root=pinned_root,
            issuer_cvc=issuer_cvc,
            ap_cvc=ap_cvc,
            face=face,
            challenge=challenge,
            challenge_signature=signature,
        )

    genuine = check(record)
    assert genuine.ok, genuine.failures
    assert isinstance(genuine.face, Face)
    tampered = check(_flip_in_birth_date(record))
    assert not tampered.ok
    assert tampered.failures == ["the card-face signature does not verify"]
    # Back in the power-on state through the GlobalPlatform ISD: the same second CVC.
    card.select_ap(GLOBAL_PLATFORM_ISD)
    assert card.get_data(ISSUER_CVC_TAG) == issuer_cvc


def test_the_common_ap_card_identification_record(
    card: Card, card_path: Path, holder: Holder, metadata: dict[str, Any]
) -> None:
    expiry = gregorian(metadata["card_expiry"])
    # The MF's own copies first, while nothing is selected.
    assert card.get_data_short(MUNICIPALITY_CODE_TAG) == holder.municipality_code.encode()
    assert card.get_data_short(CARD_EXPIRY_TAG) == expiry.encode()
    card.select_ap(COMMON_AP)
    record = card.ok(bytes.fromhex("00B2010C00"))  # record 1 of the EF with SFI 1
    size = SERIAL_DIGITS + MUNICIPALITY_DIGITS + DATE_DIGITS
    assert record[:2] == bytes([CARD_IDENTIFICATION_TAG, size])
    digits = record[2:].decode("ascii")
    assert len(digits) == size and digits.isdigit()
    serial, municipality, card_expiry = (
        digits[:SERIAL_DIGITS],
        digits[SERIAL_DIGITS : SERIAL_DIGITS + MUNICIPALITY_DIGITS],
        digits[SERIAL_DIGITS + MUNICIPALITY_DIGITS :],
    )
    assert municipality == holder.municipality_code
    assert card_expiry == expiry
    assert serial == metadata["card_serial_number"]


def test_myna_pin_status_answers_63cx_for_every_key(card: Card, card_path: Path) -> None:
    fresh = tries_in_card_file(card_path)
    assert pin_status(card) == [SW_TRIES_LEFT | tries for tries in fresh]
    # Also right after successful VERIFYs (the Text PIN and 照合番号A) in the same session.
    read_face_with_collation_a(card, read_my_number(card))
    assert pin_status(card) == [SW_TRIES_LEFT | tries for tries in fresh]
    # A wrong 照合番号B on the card face spends that counter alone, as the card file records.
    card.select_ap(CARD_FACE_AP)
    card.select_ef(FACE_COLLATION_B)
    _, sw = card.send(bytes([0x00, 0x20, 0x00, 0x80, 14]) + b"0" * 14)
    spent = MYNA_RUST_PIN_STATUS.index(("card-face", CARD_FACE_AP, FACE_COLLATION_B))
    after = tries_in_card_file(card_path)
    assert after == [tries - (index == spent) for index, tries in enumerate(fresh)]
    assert sw == SW_TRIES_LEFT | after[spent]
    assert pin_status(card) == [SW_TRIES_LEFT | tries for tries in after]
