"""Real clients' APDU sequences against every fixture card, for what conformance/*.txt cannot say.

The card-face reads of myna (Go and Rust) and jpki-rs, reassembled the way each client does
(spec jpki-card.md §5 "How clients read it"); the `pin status` queries of spec §8 with the tries
`jpki card info` shows; and the two challenge signatures: the 共通 key's INTERNAL AUTHENTICATE
(§6) and the card-face card key (§5), each checked with the key a verifier would use.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from card_emulator.state.image import CardImage
from card_emulator.state.store import read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.pins import Pin
from jpki.card_face import Face, parse_age_record, parse_face, parse_my_number_image
from jpki.issuer.provision import card_summary
from jpki.issuer.samples import SAMPLES
from jpki.tlv import children, read_tlv
from tests.conftest import AUTH_PIN, CARDS, SIGN_PIN, CardFactory

CARD_NAMES = sorted(path.stem for path in CARDS.glob("*.json"))

JPKI_AP = bytes.fromhex("D392F000260100000001")
TEXT_AP = bytes.fromhex("D3921000310001010408")
FACE_AP = bytes.fromhex("D3921000310001010402")
JUKI_AP = bytes.fromhex("D3921000310001010401")
COMMON_AP = bytes.fromhex("D3921000310001010100")

OK = 0x9000
BLOCKED = 0x6984
NOT_FOUND = 0x6A82
SECURITY_NOT_SATISFIED = 0x6982
RETRIES = 0x63C0
SHA256_DIGEST_INFO = bytes.fromhex("3031300D060960864801650304020105000420")
JP2_SIGNATURE = bytes.fromhex("0000000C6A5020200D0A870A")
TOKEN_LABEL = b"JPKIAPICCTOKEN2".ljust(32)
HEADER_READ = 7  # every client first reads 7 bytes of EF 0002 to learn its size
CHUNK = 0x100
PHOTO_POSITION = 7  # DF27, counting DF21 as the first object (myna skips six, jpki-rs by order)
FACE_EF = 0x0002
COMMON_KEY = 0x0019
COMMON_DEFAULT_PIN = "1234"
# Japanese eras by first day (spec §5): the birth-date key's year is the year within the era.
ERAS = (
    (datetime.date(2019, 5, 1), 2018),  # 令和
    (datetime.date(1989, 1, 8), 1988),  # 平成
    (datetime.date(1926, 12, 25), 1925),  # 昭和
)
UNKNOWN_ERA = 0


# --- the card as a client sees it -------------------------------------------------------------


def send(card: VirtualCard, command: bytes) -> tuple[bytes, int]:
    response = card.transmit(command)
    return response[:-2], int.from_bytes(response[-2:], "big")


def select_ap(card: VirtualCard, aid: bytes) -> int:
    return send(card, bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid)[1]


def select_ef(card: VirtualCard, fid: int) -> int:
    return send(card, bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + fid.to_bytes(2, "big"))[1]


def verify(card: VirtualCard, value: str) -> int:
    data = value.encode("ascii")
    return send(card, bytes([0x00, 0x20, 0x00, 0x80, len(data)]) + data)[1]


def retry_query(card: VirtualCard) -> int:
    return send(card, bytes.fromhex("00200080"))[1]


def read_binary(card: VirtualCard, offset: int, le: int) -> tuple[bytes, int]:
    return send(card, bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le]))


def ok(status: int, what: str) -> None:
    assert status == OK, f"{what}: {status:04X}"


def ber_header(head: bytes) -> tuple[int, int]:
    """(header length, value length) of the BER TLV `head` starts, as the clients' partial
    parsers read it: a two-byte tag, a short or 81/82 length."""
    position = 2 if head[0] & 0x1F == 0x1F else 1
    first = head[position]
    if first < 0x80:
        return position + 1, first
    count = first & 0x7F
    return position + 1 + count, int.from_bytes(head[position + 1 : position + 1 + count], "big")


# --- the holder's values, as printed on the card -----------------------------------------------


@dataclass(frozen=True)
class Holder:
    birth_date: datetime.date
    birth_era: int | None
    my_number: str
    card_expiry: datetime.date
    security_code: str

    @property
    def birth_date_key(self) -> str:
        """Era YYMMDD (1980-02-17 → 昭和55 → 550217); Gregorian YYMMDD when no era is known."""
        if self.birth_era == UNKNOWN_ERA:
            year = self.birth_date.year % 100
        else:
            offset = next(offset for start, offset in ERAS if self.birth_date >= start)
            year = self.birth_date.year - offset
        return f"{year:02d}{self.birth_date:%m%d}"

    @property
    def collation_b(self) -> str:
        return f"{self.birth_date_key}{self.card_expiry.year:04d}{self.security_code}"


def holder_of(image: CardImage) -> Holder:
    metadata = image.metadata
    return Holder(
        birth_date=datetime.date.fromisoformat(metadata["holder"]["birth_date"]),
        birth_era=metadata["holder"].get("birth_era"),
        my_number=metadata["holder"]["my_number"],
        card_expiry=datetime.date.fromisoformat(metadata["card_expiry"]),
        security_code=metadata["security_code"],
    )


def sample_pin(name: str, pin: Pin, default: str) -> str:
    """The sample's own value for `pin`, where it sets one (different-pins), else `default`."""
    sample = next(sample for sample in SAMPLES if sample.name == name)
    return sample.pins.get(pin, default)


def image_of(name: str) -> CardImage:
    return read_image(CARDS / f"{name}.json")


# --- card-face reads: myna Go, myna Rust, jpki-rs ----------------------------------------------


def myna_my_number(card: VirtualCard, card_info_pin: str) -> str:
    """Both myna versions first read the my number from the Text AP with the 4-digit PIN."""
    select_ap(card, TEXT_AP)  # status unchecked by the client
    ok(select_ef(card, 0x0011), "SELECT Text 0011")
    ok(verify(card, card_info_pin), "VERIFY Text PIN")
    ok(select_ef(card, 0x0001), "SELECT Text 0001")
    data, status = read_binary(card, 0, 0x11)
    ok(status, "READ Text 0001")
    tag, start, end = read_tlv(data)
    assert tag == b"\xff\x10"
    return data[start:end].decode("ascii")


def open_face(card: VirtualCard, key_reference: int, value: str) -> None:
    select_ap(card, FACE_AP)
    ok(select_ef(card, key_reference), f"SELECT face {key_reference:04X}")
    ok(verify(card, value), f"VERIFY face {key_reference:04X}")
    ok(select_ef(card, FACE_EF), "SELECT face 0002")


def myna_go_read(card: VirtualCard, size: int) -> bytes:
    """libmyna ReadBinary: from 0, Le=00 while more than FF is left, then the exact rest."""
    result, position = b"", 0
    while position < size:
        le = 0 if size - position > 0xFF else size - position
        data, status = read_binary(card, position, le)
        ok(status, f"READ BINARY at {position}")
        result += data
        position += len(data)
    return result


def myna_go_face(card: VirtualCard, card_info_pin: str) -> bytes:
    """myna (Go) `visual photo`: header 7 bytes, then the whole record again from offset 0."""
    open_face(card, 0x0013, myna_my_number(card, card_info_pin))
    head = myna_go_read(card, HEADER_READ)
    header, value = ber_header(head)
    return myna_go_read(card, header + value)


def myna_rust_read(card: VirtualCard, position: int, size: int) -> bytes:
    """myna (Rust) read_binary(pos, size): Le=00 while more than FF is left, else the rest."""
    result, end = b"", position + size
    while position < end:
        le = 0 if end - position > 0xFF else end - position
        data, status = read_binary(card, position, le)
        ok(status, f"READ BINARY at {position}")
        result += data
        position += len(data)
    return result


def myna_rust_face(card: VirtualCard, card_info_pin: str) -> bytes:
    """myna (Rust) `visual`: header 7 bytes, then from offset 7 what its BER parser still needs."""
    open_face(card, 0x0013, myna_my_number(card, card_info_pin))
    head = myna_rust_read(card, 0, HEADER_READ)
    header, value = ber_header(head)
    needed = value - (HEADER_READ - header)
    return head + myna_rust_read(card, HEADER_READ, needed)


def jpki_rs_read(card: VirtualCard, size: int) -> bytes:
    """jpki-rs Card::read: from 0, Le=00 while more than FF is left, then Le = size & FF;
    stops early on a short answer."""
    result, position = b"", 0
    while position < size:
        le = 0 if size - position > 0xFF else size & 0xFF
        data, status = read_binary(card, position, le)
        ok(status, f"READ BINARY at {position}")
        result += data
        position += len(data)
        if len(data) & 0xFF < le:
            break
    return result


def jpki_rs_face(card: VirtualCard, value: str) -> bytes:
    """jpki-rs `surface get`: a 12-character value is 照合番号A (0013), else B (0012)."""
    open_face(card, 0x0013 if len(value) == 12 else 0x0012, value)
    header, length = ber_header(jpki_rs_read(card, HEADER_READ))
    return jpki_rs_read(card, header + length)


def face_objects(ef: bytes) -> list[tuple[bytes, bytes]]:
    tag, start, end = read_tlv(ef)
    assert tag == b"\xff\x20"
    return [(tag, ef[value:value_end]) for tag, _at, value, value_end in children(ef, start, end)]


def assert_holder_face(ef: bytes, image: CardImage) -> Face:
    holder = holder_of(image)
    face = parse_face(ef)
    assert face.birth_date == f"{holder.birth_date:%Y%m%d}"
    assert face.expiry == f"{holder.card_expiry:%Y%m%d}"
    tag, photo = face_objects(ef)[PHOTO_POSITION - 1]
    assert tag == b"\xdf\x27"
    assert photo.startswith(JP2_SIGNATURE)
    assert photo == face.photo_jp2
    return face


def face_readers(name: str) -> Iterator[tuple[str, Callable[[VirtualCard], bytes]]]:
    image = image_of(name)
    holder = holder_of(image)
    pin = sample_pin(name, Pin.CARD_INFO, AUTH_PIN.decode())
    yield "myna Go", lambda card: myna_go_face(card, pin)
    yield "myna Rust", lambda card: myna_rust_face(card, pin)
    yield "jpki-rs A", lambda card: jpki_rs_face(card, holder.my_number)
    pins = card_summary(image)["pins"]
    assert isinstance(pins, dict)
    if not pins["face-b"]["blocked"]:  # a blocked B stops jpki-rs at VERIFY (test below)
        yield "jpki-rs B", lambda card: jpki_rs_face(card, holder.collation_b)


@pytest.mark.parametrize("name", CARD_NAMES)
def test_clients_read_the_holders_face(name: str, make_card: CardFactory) -> None:
    image = image_of(name)
    stored = image.contents("card-face").files[FACE_EF]
    for client, read in face_readers(name):
        ef = read(make_card(name))
        assert ef == stored, client
        assert_holder_face(ef, image)


def test_jpki_rs_b_on_a_blocked_b_stops_at_verify(make_card: CardFactory) -> None:
    card = make_card("collation-b-locked")
    holder = holder_of(card.image)
    select_ap(card, FACE_AP)
    ok(select_ef(card, 0x0012), "SELECT face 0012")
    assert verify(card, holder.collation_b) == BLOCKED
    ok(select_ef(card, FACE_EF), "SELECT face 0002")
    assert read_binary(card, 0, HEADER_READ)[1] == SECURITY_NOT_SATISFIED


@pytest.mark.parametrize("name", CARD_NAMES)
def test_the_birth_date_key_opens_the_age_record(name: str, make_card: CardFactory) -> None:
    card = make_card(name)
    holder = holder_of(card.image)
    select_ap(card, FACE_AP)
    ok(select_ef(card, 0x0011), "SELECT face 0011")
    ok(verify(card, holder.birth_date_key), f"VERIFY birth-date key {holder.birth_date_key}")
    ok(select_ef(card, 0x0001), "SELECT face 0001")
    record = parse_age_record(myna_go_read(card, 547))
    assert record.birth_date == f"{holder.birth_date:%Y%m%d}"


# --- pin status (spec §8) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    aid: bytes
    fid: int
    pin: str  # the key in card_summary()["pins"]


JPKI_AUTH = Query(JPKI_AP, 0x0018, "auth")
JPKI_SIGN = Query(JPKI_AP, 0x001B, "sign")
FACE_A = Query(FACE_AP, 0x0013, "face-a")
FACE_B = Query(FACE_AP, 0x0012, "face-b")
TEXT_PIN = Query(TEXT_AP, 0x0011, "card-info")
TEXT_A = Query(TEXT_AP, 0x0014, "card-info-a")
TEXT_B = Query(TEXT_AP, 0x0015, "card-info-b")
COMMON_PIN = Query(COMMON_AP, 0x001C, "common")

CLIENTS = {
    "myna Go": (JPKI_AUTH, JPKI_SIGN, FACE_A, FACE_B, TEXT_PIN, TEXT_A, TEXT_B),
    "myna Rust": (TEXT_PIN, TEXT_A, TEXT_B, FACE_A, FACE_B, JPKI_AUTH, JPKI_SIGN),
    "jpki-rs": (JPKI_SIGN, JPKI_AUTH, TEXT_PIN, FACE_A, FACE_B),
    "TRET": (JPKI_AUTH, JPKI_SIGN, TEXT_PIN, COMMON_PIN),
    "OpenSC": (JPKI_AUTH, JPKI_SIGN),
}


def expected_tries(name: str) -> dict[str, int]:
    pins = card_summary(image_of(name))["pins"]
    assert isinstance(pins, dict)
    return {key: pin["tries_left"] for key, pin in pins.items()}


def pin_status(card: VirtualCard, client: str, queries: tuple[Query, ...]) -> dict[str, int]:
    """The client's sequence: each query selects its AP (jpki-rs: one command each) and EF."""
    answers: dict[str, int] = {}
    current: bytes | None = None
    for query in queries:
        if query.aid != current or client == "jpki-rs":
            select_ap(card, query.aid)
            current = query.aid
        status = select_ef(card, query.fid)
        if status != OK:
            answers[query.pin] = status
            continue
        answers[query.pin] = retry_query(card)
        if client == "myna Go" and query is JPKI_SIGN:
            ok(select_ef(card, 0x0006), "SELECT token info")
            label, status = read_binary(card, 0, 0x20)
            ok(status, "READ token label")
            assert label == TOKEN_LABEL
    return answers


def expected_answers(name: str, queries: tuple[Query, ...]) -> dict[str, int]:
    tries = expected_tries(name)
    return {q.pin: RETRIES | tries[q.pin] if q.pin in tries else NOT_FOUND for q in queries}


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("name", CARD_NAMES)
def test_pin_status_answers_the_tries_left(name: str, client: str, make_card: CardFactory) -> None:
    queries = CLIENTS[client]
    answers = pin_status(make_card(name), client, queries)
    assert {k: f"{v:04X}" for k, v in answers.items()} == {
        k: f"{v:04X}" for k, v in expected_answers(name, queries).items()
    }


def right_values(name: str) -> dict[str, str]:
    """The right value of every key reference a client queries, from the holder and the sample."""
    holder = holder_of(image_of(name))
    return {
        "auth": AUTH_PIN.decode(),
        "sign": SIGN_PIN.decode(),
        "card-info": sample_pin(name, Pin.CARD_INFO, AUTH_PIN.decode()),
        "card-info-a": holder.my_number,
        "card-info-b": holder.collation_b,
        "face-a": holder.my_number,
        "face-b": holder.collation_b,
        "common": sample_pin(name, Pin.COMMON, COMMON_DEFAULT_PIN),
    }


@pytest.mark.parametrize("name", CARD_NAMES)
def test_pin_status_after_verifying_every_key(name: str, make_card: CardFactory) -> None:
    """A successful VERIFY resets the counter and the query still answers 63Cx (never 9000);
    a blocked key answers 6984 to the right value and 63C0 to the query."""
    card = make_card(name)
    values = right_values(name)
    summary = card_summary(image_of(name))["pins"]
    assert isinstance(summary, dict)
    all_queries = tuple({q.pin: q for qs in CLIENTS.values() for q in qs}.values())
    expected: dict[str, int] = {}
    for query in all_queries:
        select_ap(card, query.aid)
        if query.pin not in summary:
            assert select_ef(card, query.fid) == NOT_FOUND
            expected[query.pin] = NOT_FOUND
            continue
        ok(select_ef(card, query.fid), f"SELECT {query.pin}")
        blocked = summary[query.pin]["blocked"]
        assert verify(card, values[query.pin]) == (BLOCKED if blocked else OK), query.pin
        expected[query.pin] = RETRIES | (0 if blocked else summary[query.pin]["max_tries"])
        assert retry_query(card) == expected[query.pin], query.pin
    for client, queries in CLIENTS.items():
        answers = pin_status(card, client, queries)
        assert answers == {q.pin: expected[q.pin] for q in queries}, client


# --- challenge signatures ------------------------------------------------------------------------


def internal_authenticate(card: VirtualCard, challenge: bytes) -> bytes:
    select_ap(card, COMMON_AP)
    command = bytes([0x00, 0x88, 0x00, 0x80 | COMMON_KEY, len(challenge)]) + challenge + b"\x00"
    signature, status = send(card, command)
    ok(status, "INTERNAL AUTHENTICATE")
    return signature


@pytest.mark.parametrize("name", CARD_NAMES)
def test_internal_authenticate_is_deterministic_and_verifies(
    name: str, make_card: CardFactory
) -> None:
    card = make_card(name)
    public_key = image_of(name).contents("common").keys[COMMON_KEY].public_key()
    for challenge in (b"\x01", bytes(range(16)), hashlib.sha256(name.encode()).digest() * 7):
        first = internal_authenticate(card, challenge)
        assert len(first) == 256
        assert internal_authenticate(card, challenge) == first
        public_key.verify(first, challenge, padding.PKCS1v15(), hashes.SHA256())
        assert internal_authenticate(card, challenge + b"\x00") != first


def test_internal_authenticate_does_not_verify_under_another_card(make_card: CardFactory) -> None:
    signature = internal_authenticate(make_card("taro"), b"challenge")
    other = image_of("different-pins").contents("common").keys[COMMON_KEY].public_key()
    with pytest.raises(InvalidSignature):
        other.verify(signature, b"challenge", padding.PKCS1v15(), hashes.SHA256())


def card_key_signature(card: VirtualCard) -> tuple[bytes, bytes]:
    """The challenge step of spec §5: GET CHALLENGE, then the card key signs its DigestInfo."""
    select_ap(card, FACE_AP)
    challenge, status = send(card, bytes.fromhex("0084000010"))
    ok(status, "GET CHALLENGE")
    assert len(challenge) == 16
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(challenge).digest()
    command = bytes([0x80, 0x2A, 0x00, 0x00, len(digest_info)]) + digest_info + b"\x00"
    signature, status = send(card, command)
    ok(status, "COMPUTE DIGITAL SIGNATURE with the card key")
    return challenge, signature


def public_numbers(key: rsa.RSAPublicKey) -> tuple[int, int]:
    numbers = key.public_numbers()
    return numbers.n, numbers.e


@pytest.mark.parametrize("name", CARD_NAMES)
def test_card_key_signature_verifies_under_the_face_records_key(
    name: str, make_card: CardFactory
) -> None:
    card = make_card(name)
    holder = holder_of(card.image)
    face = parse_face(jpki_rs_face(card, holder.my_number))
    challenge, signature = card_key_signature(card)
    assert len(signature) == 256
    face.card_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    # The same card key is in the age record (DF12) and the my-number image (DF42).
    contents = image_of(name).contents("card-face")
    age = parse_age_record(contents.files[0x0001])
    image = parse_my_number_image(contents.files[0x0005])
    assert public_numbers(age.card_key) == public_numbers(face.card_key)
    assert public_numbers(image.card_key) == public_numbers(face.card_key)


def test_a_copied_face_record_fails_the_challenge(make_card: CardFactory) -> None:
    """The face record read off one card does not vouch for another card's key (spec §5 (3))."""
    taro = make_card("taro")
    copied = parse_face(jpki_rs_face(taro, holder_of(taro.image).my_number))
    challenge, signature = card_key_signature(make_card("different-pins"))
    with pytest.raises(InvalidSignature):
        copied.card_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())


# --- identifiers that must agree (spec §6, §7) ----------------------------------------------------


def read_record(card: VirtualCard, aid: bytes, sfi: int) -> bytes:
    select_ap(card, aid)
    record, status = send(card, bytes([0x00, 0xB2, 0x01, sfi << 3 | 0x04, 0x00]))
    ok(status, f"READ RECORD SFI {sfi}")
    return record


def get_data(card: VirtualCard, tag: int) -> bytes:
    card.reset()
    data, status = send(card, bytes([0x00, 0xCA, tag >> 8, tag & 0xFF, 0x00, 0x00, 0x00]))
    ok(status, f"GET DATA {tag:04X}")
    return data


@pytest.mark.parametrize("name", CARD_NAMES)
def test_serial_and_key_reference_agree_across_the_card(name: str, make_card: CardFactory) -> None:
    card = make_card(name)
    image = image_of(name)
    holder = holder_of(image)
    municipality = image.metadata["holder"]["municipality_code"]
    identification = read_record(card, COMMON_AP, 1)
    assert identification[:2] == b"\x01\x1c"
    digits = identification[2:].decode("ascii")
    assert digits.isdigit() and len(digits) == 28
    serial = digits[:15]
    assert serial == image.metadata["card_serial_number"]
    assert digits[15:] == f"{municipality}{holder.card_expiry:%Y%m%d}"
    assert get_data(card, 0x0045) == serial.encode()
    assert get_data(card, 0x00F0) == municipality.encode()
    assert get_data(card, 0x00F2) == f"{holder.card_expiry:%Y%m%d}".encode()
    # 住基 0002 is byte-identical to 共通 0002.
    assert read_record(card, JUKI_AP, 2) == read_record(card, COMMON_AP, 2)
    # 00F7 names the key that signs 7F21: 00F8's subject and 7F21's issuer.
    signer = get_data(card, 0x00F7)
    assert get_data(card, 0x00F8)[21:37] == signer
    assert get_data(card, 0x7F21)[5:21] == signer


def test_fixture_cards_are_all_here() -> None:
    assert {"taro", "different-pins", "long-header", "collation-b-locked"} <= set(CARD_NAMES)
    assert {sample.name for sample in SAMPLES} == set(CARD_NAMES)
