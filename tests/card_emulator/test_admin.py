"""The administration interface (lifecycle.md §6) where the administrator key K is needed: the
right proof, what it grants and for how long, the administrator's lock and its restoration by
the issuing side, the card image and counters that hold them, and the trace's warnings when a
client burns tries. What needs no K is golden data in conformance/admin.txt."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from card_emulator.engine import TRACE_LOGGER
from card_emulator.errors import CardFileError, CardImageError
from card_emulator.state import counters
from card_emulator.state.administrator import AdministratorKey
from card_emulator.state.image import CardImage
from card_emulator.state.store import FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.administration import (
    administrator_proof,
    derive_administrator_key,
)
from card_emulator.vocabulary.identifiers import AID
from tests.card_emulator.test_card_file_safety import older_file
from tests.conftest import CARDS, CardFactory

JPKI = AID.JPKI.value
CARD_INFO = AID.CARD_INFO_INPUT_SUPPORT.value
CARD_FACE = AID.CARD_FACE_CONFIRMATION.value
JUKI = AID.RESIDENT_REGISTRY.value
COMMON = AID.COMMON_CARD.value
GET_CHALLENGE = bytes.fromhex("0084000010")
EXTERNAL_AUTHENTICATE = bytes.fromhex("0082000010")
WRONG_TAG = bytes(range(16))
OK = "9000"


def select(aid: bytes) -> bytes:
    return bytes.fromhex("00A4040C0A") + aid


def send(card: VirtualCard, apdu: str | bytes) -> str:
    """The status word (and any data) in upper-case hex."""
    raw = bytes.fromhex(apdu.replace(" ", "")) if isinstance(apdu, str) else apdu
    return card.transmit(raw).hex().upper()


def challenge(card: VirtualCard) -> bytes:
    answer = card.transmit(GET_CHALLENGE)
    assert answer[-2:] == b"\x90\x00" and len(answer) == 18
    return answer[:-2]


def key_of(card: VirtualCard) -> bytes:
    admin = card.image.admin
    assert admin is not None
    return admin.key


def authenticate(card: VirtualCard, aid: bytes, proved_for: bytes | None = None) -> str:
    """GET CHALLENGE, then the proof for it, made for `proved_for` (default: `aid`)."""
    tag = administrator_proof(key_of(card), challenge(card), proved_for or aid)
    return send(card, EXTERNAL_AUTHENTICATE + tag)


def in_ap(card: VirtualCard, aid: bytes) -> VirtualCard:
    assert send(card, select(aid)) == OK
    return card


def admin_in(card: VirtualCard, aid: bytes) -> VirtualCard:
    in_ap(card, aid)
    assert authenticate(card, aid) == OK
    return card


# The protocol's primitives ------------------------------------------------------------------


def test_the_proof_is_aes_cmac_of_the_challenge_and_the_aid() -> None:
    # NIST SP 800-38B, AES-128 example 2: a 16-byte message.
    key = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
    message = bytes.fromhex("6BC1BEE22E409F96E93D7E117393172A")
    assert administrator_proof(key, message, b"").hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    assert administrator_proof(key, message[:6], message[6:]) == administrator_proof(
        key, message, b""
    )


def test_a_fleet_key_is_derived_per_card() -> None:
    master = bytes(range(16))
    first = derive_administrator_key(master, b"755826294803783")
    assert len(first) == 16
    assert first == administrator_proof(master, b"JPKI-EMU-ADMIN", b"755826294803783")
    assert first != derive_administrator_key(master, b"755826294803784")


def test_every_new_card_has_its_own_key_and_a_full_counter() -> None:
    keys = set()
    for fixture in sorted(CARDS.glob("*.json")):
        admin = read_image(fixture).admin
        assert admin is not None, fixture.name
        assert len(admin.key) == 16 and admin.tries_left == 15
        keys.add(admin.key)
    assert len(keys) == len(list(CARDS.glob("*.json")))


# The spec's example, and what the proof opens ------------------------------------------------


def test_the_spec_example_resets_the_signature_password(make_card: CardFactory) -> None:
    card = make_card()
    key = read_image(CARDS / "taro.json").admin.key  # type: ignore[union-attr]
    assert send(card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01") == OK
    answer = card.transmit(bytes.fromhex("00 84 00 00 10".replace(" ", "")))
    assert answer[-2:] == b"\x90\x00"
    tag = administrator_proof(key, answer[:-2], bytes.fromhex("D392F000260100000001"))
    assert send(card, bytes.fromhex("0082000010") + tag) == OK
    assert send(card, "00 2C 02 9B 08 41 42 43 44 31 32 33 34") == OK
    assert send(card, "00 20 00 9B") == "63C5"
    assert send(card, "00 20 00 9B 06 41 42 43 31 32 33") == "63C4"  # the old password
    assert send(card, "00 20 00 9B 08 41 42 43 44 31 32 33 34") == OK


def test_an_unblock_keeps_the_value(make_card: CardFactory) -> None:
    card = admin_in(make_card("auth-locked"), JPKI)
    assert send(card, "00200098") == "63C0"
    assert send(card, "0020009804 31323334") == "6984"
    assert send(card, "002C0398") == OK
    assert send(card, "00200098") == "63C3"
    assert send(card, "0020009804 31323334") == OK


def test_the_current_ef_can_be_the_target(make_card: CardFactory) -> None:
    card = admin_in(make_card("sign-locked"), JPKI)
    assert send(card, "00A4020C02001B") == OK
    assert send(card, "002C0380") == OK
    assert send(card, "0020009B") == "63C5"
    assert send(card, "002C028008 5A59583938373635") == OK
    assert send(card, "0020009B08 5A59583938373635") == OK


def test_a_collation_number_is_unblocked_not_replaced(make_card: CardFactory) -> None:
    card = admin_in(make_card("collation-b-locked"), CARD_INFO)
    assert send(card, "002C02950E 3535303231373230333632323835") == "6985"
    assert send(card, "002C0395") == OK
    assert send(card, "002000950E 3535303231373230333632323835") == OK  # 55021720362285
    card = admin_in(card, CARD_FACE)  # the card-face AP's B has its own counter
    assert send(card, "00200092") == "63C0"
    assert send(card, "002C0392") == OK
    assert send(card, "00200092") == "63CA"


def test_with_shared_counters_the_face_unblocks_the_card_info_counter(
    make_card: CardFactory,
) -> None:
    card = admin_in(make_card("collation-b-locked", shared_collation_counters=True), CARD_FACE)
    assert send(card, "002C0392") == OK
    assert send(in_ap(card, CARD_INFO), "00200095") == "63CA"


@pytest.mark.parametrize(
    ("aid", "command", "expected"),
    [
        (JPKI, "002C0198", "6A86"),  # P1: neither 02 nor 03
        (JPKI, "002C0098", "6A86"),
        (JPKI, "002C0498", "6A86"),
        (JPKI, "002C039804 31323334", "6700"),  # unblock with data
        (JPKI, "002C0298", "6700"),  # new value without data
        (JPKI, "002C0398 00", "6700"),  # Le
        (JPKI, "002C0381", "6981"),  # EF 0001: a certificate, not a key with a counter
        (JPKI, "002C0397", "6981"),  # EF 0017: a private key
        (JPKI, "002C0380", "6986"),  # no current EF
        (JPKI, "002C0385", "6A88"),  # no EF with that short id
        (JPKI, "002C0300", "6A86"),  # P2 names no EF
        (JPKI, "002C029B05 4142433132", "6A80"),  # 5 characters
        (JPKI, "002C029B06 616263313233", "6A80"),  # lower case
        (JPKI, "002C029B11 4142434431323334414243443132333441", "6A80"),  # 17 characters
        (JPKI, "002C029805 3132333435", "6A80"),  # the auth PIN: 4 digits
        (JPKI, "002C029804 41424344", "6A80"),
        (JPKI, "002C029804 35353535", OK),
        (CARD_INFO, "002C0392", "6985"),  # 0012: blocked on every card, for good
        (CARD_INFO, "002C029204 31323334", "6985"),
        (CARD_INFO, "002C02940C 313233343536373839303132", "6985"),  # collation number A
        (CARD_INFO, "002C0394", OK),
        (CARD_INFO, "002C029104 35353535", OK),  # the card-info PIN
        (CARD_FACE, "002C029106 353530323137", "6985"),  # the birth-date key
        (CARD_FACE, "002C02930C 313233343536373839303132", "6985"),  # collation number A
        (CARD_FACE, "002C0391", OK),
        (JUKI, "002C029C04 35353535", OK),
        (COMMON, "002C039C", OK),
    ],
)
def test_reset_retry_counter_answers(
    make_card: CardFactory, aid: bytes, command: str, expected: str
) -> None:
    card = admin_in(make_card(), aid)
    assert send(card, command) == expected


def test_a_new_value_holds_and_the_old_one_does_not(make_card: CardFactory) -> None:
    card = admin_in(make_card(), JUKI)
    assert send(card, "002C029C04 35353535") == OK
    assert send(card, "0020009C04 31323334") == "63C2"
    assert send(card, "0020009C04 35353535") == OK


def test_a_reset_does_not_verify_the_key(make_card: CardFactory) -> None:
    card = in_ap(make_card(), JPKI)
    assert send(card, "0020009B06 414243313233") == OK
    assert send(card, "00B0810004").endswith(OK)  # the signature certificate, verified
    assert authenticate(card, JPKI) == OK
    assert send(card, "002C029B08 4142434431323334") == OK
    assert send(card, "00B0810004") == "6982"  # the holder VERIFYs the new value first
    assert send(card, "0020009B08 4142434431323334") == OK
    assert send(card, "00B0810004").endswith(OK)


def test_the_administrator_state_grants_nothing_else(make_card: CardFactory) -> None:
    card = admin_in(make_card(), JPKI)
    assert send(card, "00B0810004") == "6982"  # the signature certificate
    digest_info = "3031300D060960864801650304020105000420" + "00" * 32
    assert send(card, f"802A009A33{digest_info}00") == "6982"
    assert send(card, f"802A009733{digest_info}00") == "6982"
    assert send(card, "0024019B08 4142434431323334") == "6982"  # CHANGE REFERENCE DATA


@pytest.mark.parametrize(
    "event",
    ["select another AP", "select the ISD", "warm reset", "warm reset, state not kept", "power"],
)
def test_the_administrator_state_ends_with(make_card: CardFactory, event: str) -> None:
    keep = event != "warm reset, state not kept"
    card = admin_in(make_card(warm_reset_keeps_security_state=keep), JPKI)
    assert send(card, "0020009804 31323334") == OK
    if event == "select another AP":
        in_ap(card, CARD_INFO)
    elif event == "select the ISD":
        assert send(card, "00A4040C07A0000001510000") == OK
    elif event.startswith("warm reset"):
        card.reset()
    else:
        card.power_off()
        card.power_on()
    in_ap(card, JPKI)
    assert send(card, "002C0398") == "6982"
    verified_kept = event == "warm reset"  # the PINs follow the card's setting, not the proof
    digest_info = "3031300D060960864801650304020105000420" + "00" * 32
    signed = send(card, f"802A009733{digest_info}00").endswith(OK)
    assert signed is verified_kept


def test_reselecting_the_same_ap_keeps_the_administrator_state(make_card: CardFactory) -> None:
    card = admin_in(make_card(), JPKI)
    in_ap(card, JPKI)
    assert send(card, "00A4020C020018") == OK
    assert send(card, "002C0380") == OK
    assert send(card, "002C0398") == OK  # one proof, several resets


# The challenge and the proof -----------------------------------------------------------------


def test_a_failed_attempt_consumes_the_challenge(make_card: CardFactory) -> None:
    card = in_ap(make_card(), JPKI)
    r = challenge(card)
    assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == "63CE"
    assert send(card, EXTERNAL_AUTHENTICATE + administrator_proof(key_of(card), r, JPKI)) == "6985"


def test_a_success_consumes_the_challenge_too(make_card: CardFactory) -> None:
    card = in_ap(make_card(), JPKI)
    tag = administrator_proof(key_of(card), challenge(card), JPKI)
    assert send(card, EXTERNAL_AUTHENTICATE + tag) == OK
    assert send(card, EXTERNAL_AUTHENTICATE + tag) == "6985"
    challenge(card)
    assert send(card, EXTERNAL_AUTHENTICATE + tag) == "63CE"  # replayed for a new challenge


def test_a_proof_made_for_one_ap_is_refused_in_another(make_card: CardFactory) -> None:
    card = in_ap(make_card(), JPKI)
    assert authenticate(card, JPKI, proved_for=CARD_INFO) == "63CE"
    assert send(card, "002C0398") == "6982"
    card = in_ap(card, CARD_INFO)
    assert authenticate(card, CARD_INFO, proved_for=JPKI) == "63CD"
    assert authenticate(card, CARD_INFO) == OK
    assert send(card, "002C029104 35353535") == OK
    assert send(card, "0020009104 35353535") == OK


def test_a_wrong_proof_ends_the_administrator_state(make_card: CardFactory) -> None:
    card = admin_in(make_card(), JPKI)
    challenge(card)
    assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == "63CE"
    assert send(card, "002C0398") == "6982"


def test_a_right_proof_restores_the_administrator_counter(make_card: CardFactory) -> None:
    card = in_ap(make_card(), JPKI)
    for expected in ("63CE", "63CD"):
        challenge(card)
        assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == expected
    assert authenticate(card, JPKI) == OK
    assert card.image.admin is not None and card.image.admin.tries_left == 15
    challenge(card)
    assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == "63CE"


def test_a_card_without_an_administrator_key(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(older_file(3))  # written before the card had one
    with VirtualCard.open(path) as card:
        assert card.image.admin is None
        in_ap(card, JPKI)
        challenge(card)
        assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == "6985"
        assert send(card, "002C0398") == "6982"
        assert send(card, "0020009804 31323334") == OK  # everything else works as before


# The administrator's lock, on disk ----------------------------------------------------------


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    shutil.copyfile(CARDS / "taro.json", path)
    return path


def admin_tries_on_disk(path: Path) -> int:
    admin = read_image(path).admin
    assert admin is not None
    return admin.tries_left


def test_the_lock_and_its_restoration_by_the_issuing_side(card_file: Path) -> None:
    with VirtualCard.open(card_file) as card:
        in_ap(card, JPKI)
        for tries in range(14, -1, -1):
            challenge(card)
            assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == f"63C{tries:X}"
            assert admin_tries_on_disk(card_file) == tries  # durable before the answer
        assert authenticate(card, JPKI) == "6984"  # even the right proof
        challenge(card)
        assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == "6984"
    assert admin_tries_on_disk(card_file) == 0
    with VirtualCard.open(card_file) as card:  # no APDU unblocks it, no power cycle either
        assert authenticate(in_ap(card, CARD_INFO), CARD_INFO) == "6984"

    # The issuing side: the only way back.
    store = FileStore.open(card_file)
    try:
        assert store.image.admin is not None and store.image.admin.blocked
        store.image.admin.restore()
        store.commit_counters()
    finally:
        store.close()
    assert admin_tries_on_disk(card_file) == 15
    with VirtualCard.open(card_file) as card:
        assert authenticate(in_ap(card, JPKI), JPKI) == OK


def test_resets_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    shutil.copyfile(CARDS / "auth-locked.json", path)
    with VirtualCard.open(path) as card:
        admin_in(card, JPKI)
        assert send(card, "002C0398") == OK
        assert send(card, "002C029B08 4142434431323334") == OK
    image = read_image(path)
    pins = image.contents("jpki").pins
    assert pins[0x18].tries_left == 3 and pins[0x18].matches(b"1234")
    assert pins[0x1B].matches(b"ABCD1234") and not pins[0x1B].matches(b"ABC123")


def test_the_key_is_never_in_a_response(make_card: CardFactory) -> None:
    card = make_card()
    key = key_of(card)
    answers = []
    for aid, pins in (
        (JPKI, ("0020009804 31323334", "0020009B06 414243313233")),
        (CARD_INFO, ("0020009104 31323334",)),
    ):
        in_ap(card, aid)
        for pin in pins:
            assert send(card, pin) == OK
        for sfi in range(1, 31):
            answers.append(card.transmit(bytes([0x00, 0xB0, 0x80 | sfi, 0x00, 0x00])))
        assert authenticate(card, aid) == OK
        answers.append(card.transmit(GET_CHALLENGE))
    assert not any(key in answer or key.hex().encode() in answer for answer in answers)


# The card image and the counters file -----------------------------------------------------


def test_version_4_holds_the_key_and_its_counter() -> None:
    raw = (CARDS / "taro.json").read_bytes()
    data = json.loads(raw)
    assert data["version"] == 4
    admin = read_image(CARDS / "taro.json").admin
    assert admin is not None
    assert data["admin"] == {"key": admin.key.hex(), "tries_left": 15}
    assert list(data)[:6] == ["format", "version", "settings", "metadata", "admin", "applications"]
    assert data["settings"]["admin_apdus"] is True
    no_key = CardImage.loads(raw)
    no_key.admin = None
    assert json.loads(no_key.dumps())["admin"] is None
    assert CardImage.loads(no_key.dumps()).admin is None


def test_the_key_never_shows_in_a_repr() -> None:
    admin = AdministratorKey.create()
    assert admin.key.hex() not in repr(admin) and str(admin.key) not in repr(admin)


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ({"key": "00" * 15, "tries_left": 15}, "admin.key must be 16 bytes"),
        ({"key": "zz" * 16, "tries_left": 15}, "admin.key must be hex digits"),
        ({"key": "00" * 16, "tries_left": 16}, "admin.tries_left must be an integer from 0 to 15"),
        ({"key": "00" * 16, "tries_left": -1}, "admin.tries_left must be an integer"),
        ({"key": "00" * 16}, "admin: missing field 'tries_left'"),
        ({"key": "00" * 16, "tries_left": 15, "master": "00"}, "admin: unknown field 'master'"),
        ("00" * 16, "admin must be an object"),
    ],
)
def test_the_admin_section_is_read_strictly(admin: object, message: str) -> None:
    from tests.card_emulator.test_card_file_safety import edit

    with pytest.raises(CardImageError, match=message):
        CardImage.loads(edit(lambda data: data.update(admin=admin)))


def test_a_version_4_file_needs_the_admin_field() -> None:
    from tests.card_emulator.test_card_file_safety import edit

    with pytest.raises(CardImageError, match="missing field 'admin'"):
        CardImage.loads(edit(lambda data: data.pop("admin")))


def _old_counters(image: CardImage) -> bytes:
    """The counters record an emulator without administrator keys wrote (JPKICTR1)."""
    admin, image.admin = image.admin, None
    try:
        return counters.encode(image)
    finally:
        image.admin = admin


def test_an_older_counters_file_still_opens(card_file: Path) -> None:
    image = read_image(card_file)
    image.contents("jpki").pins[0x18].tries_left = 1
    counters_file = counters.counters_path(card_file)
    counters_file.write_bytes(_old_counters(image))
    assert read_image(card_file).contents("jpki").pins[0x18].tries_left == 1
    assert admin_tries_on_disk(card_file) == 15  # from the image
    with VirtualCard.open(card_file) as card:
        in_ap(card, JPKI)
        challenge(card)
        assert send(card, EXTERNAL_AUTHENTICATE + WRONG_TAG) == "63CE"
    assert counters_file.read_bytes().startswith(b"JPKICTR2")  # rewritten whole, then in place
    assert admin_tries_on_disk(card_file) == 14
    assert read_image(card_file).contents("jpki").pins[0x18].tries_left == 1
    assert not list(card_file.parent.glob(".*.tmp"))


def test_counters_with_an_administrator_are_refused_for_a_card_without_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(older_file(3))
    image = read_image(path)
    image.admin = AdministratorKey.create()
    counters.counters_path(path).write_bytes(counters.encode(image))
    with pytest.raises(CardFileError, match="not this card's retry counters"):
        read_image(path)


def test_an_administrator_counter_above_15_is_refused(card_file: Path) -> None:
    raw = counters.encode(read_image(card_file))
    body = bytearray(raw[:-4])
    body[-2:] = bytes([16, 16 ^ 0xFF])
    counters.counters_path(card_file).write_bytes(bytes(body) + struct.pack(">I", zlib.crc32(body)))
    with pytest.raises(CardFileError, match="administrator has more tries than it may"):
        read_image(card_file)


# Trace warnings: a client burning tries ------------------------------------------------------


def trace_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == TRACE_LOGGER]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == TRACE_LOGGER), (
        "trace notes are warnings"
    )
    assert all("\n" not in line for line in lines)
    return lines


def test_four_digits_sent_to_collation_number_b(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="card_emulator")
    card = in_ap(make_card(), CARD_INFO)
    assert send(card, "0020009504 39383736") == "63C9"
    (line,) = trace_lines(caplog)
    assert line.startswith("VERIFY of the collation number B (券面事項入力補助AP")
    assert "shaped like the authentication PIN" in line and "(exactly 4 digits)" in line
    assert "not like this key reference (exactly 14 digits)" in line
    assert line.endswith("9 tries left")
    assert "9876" not in line


def test_twelve_digits_sent_to_the_authentication_pin(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="card_emulator")
    card = in_ap(make_card(), JPKI)
    assert send(card, "002000980C 393837363534333231303938") == "63C2"
    (line,) = trace_lines(caplog)
    assert line.startswith("VERIFY of the authentication PIN (JPKI AP")
    assert "collation number A (exactly 12 digits)" in line
    assert "987654321098" not in line


def test_a_second_wrong_value_in_one_session(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="card_emulator")
    card = in_ap(make_card(), JPKI)
    assert send(card, "0020009804 39383736") == "63C2"
    assert trace_lines(caplog) == []  # one wrong value of the right shape: a typo
    assert send(card, "0020009804 39383735") == "63C1"
    assert trace_lines(caplog) == [
        "VERIFY of the authentication PIN (JPKI AP (公的個人認証)): "
        "the second wrong value in this session; 1 tries left"
    ]
    assert send(card, "0020009804 39383734") == "63C0"
    assert trace_lines(caplog)[-1].endswith("the third wrong value in this session; 0 tries left")


def test_the_count_starts_again_after_power_off_or_a_right_value(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="card_emulator")
    card = in_ap(make_card(), JPKI)
    assert send(card, "0020009804 39383736") == "63C2"
    card.power_off()
    card.power_on()
    in_ap(card, JPKI)
    assert send(card, "0020009804 39383736") == "63C1"
    assert send(card, "0020009804 31323334") == OK
    assert send(card, "0020009804 39383736") == "63C2"
    card.reset()  # a warm reset keeps the power session
    in_ap(card, JPKI)
    assert send(card, "0020009B06 414243313234") == "63C4"  # another key reference
    assert trace_lines(caplog) == []
    assert send(card, "0020009804 39383736") == "63C1"
    assert len(trace_lines(caplog)) == 1


def test_no_warning_without_a_try_burned(
    make_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="card_emulator")
    card = in_ap(make_card("auth-locked", wrong_length_pin_counts_as_attempt=False), JPKI)
    assert send(card, "0020009804 39383736") == "6984"  # blocked: nothing spent
    assert send(card, "0020009B04 39383736") == "6700"  # refused by length: nothing spent
    assert send(card, "00200098") == "63C0"  # a retry query
    assert trace_lines(caplog) == []
