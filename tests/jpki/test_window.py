"""The municipal window, the convenience-store kiosk and the card's history, on card files."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import stat
import threading
from pathlib import Path

import pytest

from card_emulator.state.administrator import AdministratorKey
from card_emulator.state.image import CardImage
from card_emulator.state.store import CardStore, FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import AID
from card_emulator.vocabulary.pins import TARGETS, Pin
from jpki.errors import BadValueError
from jpki.issuer import history, window
from jpki.issuer.provision import application_name
from jpki.issuer.window import SecretRefused, WindowRefusal
from tests.conftest import AUTH_PIN, CARDS, SIGN_PIN

T = datetime.datetime(2030, 4, 1, 9, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
AUTH, SIGN = AUTH_PIN.decode(), SIGN_PIN.decode()
NEW_VALUES = {"auth": "4321", "sign": "NEWPASS1", "card-info": "5678", "juki": "2468",
              "common": "1357"}  # fmt: skip
PRINTED = ("collation-a", "collation-b", "birth-date")
STORE_CANNOT = [target for target in TARGETS if target not in ("auth", "sign")]


def slot(store: CardStore) -> window.Transmit:
    return VirtualCard(store).transmit


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """A copy of the fixture card taro, with an administrator key (made at issuance since
    format 4; the fixture may be older)."""
    path = tmp_path / "card.json"
    shutil.copyfile(CARDS / "taro.json", path)
    store = FileStore.open(path)
    if store.image.admin is None:
        store.image.admin = AdministratorKey.create()
        store.commit()
    store.close()
    return path


def reference_state(image: CardImage, pin: Pin) -> tuple[bytes, int]:
    reference = image.contents(application_name(pin)).pins[pin.fid]
    return reference.digest, reference.tries_left


def set_tries(card: Path, pins: tuple[Pin, ...], tries: int) -> None:
    store = FileStore.open(card)
    for pin in pins:
        store.image.contents(application_name(pin)).pins[pin.fid].tries_left = tries
    store.commit_counters()
    store.close()


def matches(card: Path, pin: Pin, value: str) -> bool:
    reference = read_image(card).contents(application_name(pin)).pins[pin.fid]
    return reference.matches(value.encode())


def verify(card: Path, pin: Pin, value: str) -> int:
    """The status word a client gets for VERIFY of `value` on the card file."""
    with VirtualCard.open(card) as virtual:
        select = bytes.fromhex("00A4040C0A") + pin.application.value
        assert virtual.transmit(select)[-2:] == b"\x90\x00"
        command = bytes([0x00, 0x20, 0x00, 0x80 | pin.fid & 0x1F, len(value)]) + value.encode()
        return int.from_bytes(virtual.transmit(command)[-2:], "big")


def whats(card: Path) -> list[tuple[str, str, str | None]]:
    return [(entry.what, entry.channel, entry.target) for entry in history.entries(card)]


# The window ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_window_unblocks_every_target_and_keeps_its_value(card: Path, target: str) -> None:
    pins = TARGETS[target]
    set_tries(card, pins, 0)
    before = {pin: reference_state(read_image(card), pin)[0] for pin in pins}
    unblocked = window.unblock(card, target, T)
    image = read_image(card)
    assert unblocked == pins
    for pin in pins:
        digest, tries = reference_state(image, pin)
        assert (digest, tries) == (before[pin], image.settings.max_tries(pin.rule))
    assert whats(card) == [("unblock", "window", target)]


def test_a_collation_number_is_unblocked_in_both_its_applications(card: Path) -> None:
    set_tries(card, (Pin.CARD_INFO_A, Pin.FACE_A), 0)
    window.unblock(card, "collation-a", T)
    image = read_image(card)
    assert reference_state(image, Pin.CARD_INFO_A)[1] == 10  # card-info 0014
    assert reference_state(image, Pin.FACE_A)[1] == 10  # card-face 0013
    entry = history.entries(card)[0]
    assert entry.details == {"references": "card-info 0014, card-face 0013"}


def test_the_window_unblocks_a_pin_that_is_not_blocked(card: Path) -> None:
    set_tries(card, (Pin.AUTH,), 2)
    window.unblock(card, "auth", T)
    assert reference_state(read_image(card), Pin.AUTH)[1] == 3
    window.unblock(card, "auth", T + HOUR)  # at its maximum already: still done, and recorded
    assert reference_state(read_image(card), Pin.AUTH)[1] == 3
    assert verify(card, Pin.AUTH, AUTH) == 0x9000
    assert whats(card) == [("unblock", "window", "auth")] * 2


def test_unblock_follows_the_cards_own_retry_limit(card: Path) -> None:
    store = FileStore.open(card)
    store.image.change_settings(dataclasses.replace(store.image.settings, collation_b_tries=5))
    store.commit()
    store.close()
    set_tries(card, TARGETS["collation-b"], 0)
    window.unblock(card, "collation-b", T)
    assert reference_state(read_image(card), Pin.FACE_B)[1] == 5
    read_image(card)  # counters within the card's limit: the card still opens


@pytest.mark.parametrize("target", list(NEW_VALUES))
def test_the_window_sets_a_new_value(card: Path, target: str) -> None:
    set_tries(card, TARGETS[target], 0)
    window.reset_pin(card, target, NEW_VALUES[target], T)
    for pin in TARGETS[target]:
        assert matches(card, pin, NEW_VALUES[target])
        assert reference_state(read_image(card), pin)[1] == pin.max_tries
    assert verify(card, TARGETS[target][0], NEW_VALUES[target]) == 0x9000
    assert whats(card) == [("reset-pin", "window", target)]


def test_juki_resets_the_common_pin_with_it_and_common_alone_does_not(card: Path) -> None:
    window.reset_pin(card, "juki", "2468", T)
    assert matches(card, Pin.JUKI, "2468") and matches(card, Pin.COMMON, "2468")
    window.reset_pin(card, "common", "1357", T)
    assert matches(card, Pin.COMMON, "1357") and matches(card, Pin.JUKI, "2468")


@pytest.mark.parametrize("target", PRINTED)
def test_the_window_only_unblocks_what_is_printed_on_the_card(card: Path, target: str) -> None:
    before = card.read_bytes()
    with pytest.raises(WindowRefusal, match="printed on the card: the window only unblocks it"):
        window.reset_pin(card, target, "123456789012", T)
    assert card.read_bytes() == before
    assert history.entries(card) == []


@pytest.mark.parametrize(("target", "value"), [("auth", "12345"), ("sign", "abc"),
                                               ("juki", "12"), ("card-info", "")])  # fmt: skip
def test_a_new_value_of_the_wrong_format_changes_nothing(card: Path, target: str,
                                                         value: str) -> None:  # fmt: skip
    set_tries(card, TARGETS[target], 0)
    before = card.read_bytes()
    with pytest.raises(BadValueError, match="must be"):
        window.reset_pin(card, target, value, T)
    assert card.read_bytes() == before
    assert reference_state(read_image(card), TARGETS[target][0])[1] == 0
    assert history.entries(card) == []


def test_the_window_restores_the_administrator(card: Path) -> None:
    store = FileStore.open(card)
    assert store.image.admin is not None
    store.image.admin.tries_left = 0
    store.commit()
    store.close()
    window.unblock(card, "admin", T)
    admin = read_image(card).admin
    assert admin is not None and admin.tries_left == 15
    assert whats(card) == [("unblock", "window", "admin")]


def test_a_pin_the_card_lacks_is_refused(tmp_path: Path) -> None:
    child = tmp_path / "child.json"
    shutil.copyfile(CARDS / "child.json", child)
    with pytest.raises(WindowRefusal, match="this card has no signature password"):
        window.unblock(child, "sign", T)


# The convenience store ----------------------------------------------------------------------


def test_a_reservation_needs_the_right_other_secret(card: Path) -> None:
    with pytest.raises(SecretRefused, match="wrong authentication PIN: 2 tries left"):
        window.reserve(card, "auth", "0000", T, reader=slot)
    assert reference_state(read_image(card), Pin.AUTH)[1] == 2  # the try is spent
    assert window.reservations(card) == []
    assert history.entries(card) == []


def test_a_reservation_with_a_blocked_secret_is_refused(card: Path) -> None:
    set_tries(card, (Pin.AUTH,), 0)
    with pytest.raises(SecretRefused, match="authentication PIN is blocked"):
        window.reserve(card, "auth", AUTH, T, reader=slot)
    assert window.reservations(card) == []


def test_a_face_that_does_not_match_reserves_nothing(card: Path) -> None:
    with pytest.raises(WindowRefusal, match="face did not match"):
        window.reserve(card, "auth", AUTH, T, reader=slot, face_match=False)
    assert window.reservations(card) == []


STORE_RESETS = [("sign", "auth", AUTH, "NEWPASS1"), ("auth", "sign", SIGN, "9876")]


@pytest.mark.parametrize(("target", "proven", "other", "new"), STORE_RESETS)
def test_a_store_reset_within_24_hours(card: Path, target: str, proven: str, other: str,
                                       new: str) -> None:  # fmt: skip
    set_tries(card, TARGETS[target], 0)
    reservation = window.reserve(card, proven, other, T, reader=slot)
    assert (reservation.target, reservation.expires, reservation.used) == (target, T + 24 * HOUR,
                                                                           None)  # fmt: skip
    window.store_reset(card, target, other, new, T + 23 * HOUR, reader=slot)
    assert verify(card, Pin.named(target), new) == 0x9000
    assert window.reservations(card)[0].used == T + 23 * HOUR
    assert whats(card) == [("reserve", "store", target), ("reset-pin", "store", target)]


def test_a_store_reset_after_24_hours_is_refused(card: Path) -> None:
    window.reserve(card, "auth", AUTH, T, reader=slot)
    before = card.read_bytes()
    with pytest.raises(WindowRefusal, match="expired at 2030-04-02T09:00:00"):
        window.store_reset(card, "sign", AUTH, "NEWPASS1", T + 24 * HOUR, reader=slot)
    assert card.read_bytes() == before
    assert matches(card, Pin.SIGN, SIGN)


def test_a_store_reset_without_a_reservation_is_refused(card: Path) -> None:
    window.reserve(card, "sign", SIGN, T, reader=slot)  # reserves the other secret
    with pytest.raises(WindowRefusal, match="no reservation to reset the signature password"):
        window.store_reset(card, "sign", AUTH, "NEWPASS1", T + HOUR, reader=slot)
    assert reference_state(read_image(card), Pin.AUTH)[1] == 3  # not even a VERIFY


def test_a_reservation_is_used_once(card: Path) -> None:
    window.reserve(card, "auth", AUTH, T, reader=slot)
    window.store_reset(card, "sign", AUTH, "NEWPASS1", T + HOUR, reader=slot)
    with pytest.raises(WindowRefusal, match="was already used at 2030-04-01T10:00:00"):
        window.store_reset(card, "sign", AUTH, "NEWPASS2", T + 2 * HOUR, reader=slot)
    assert matches(card, Pin.SIGN, "NEWPASS1")
    window.reserve(card, "auth", AUTH, T + 3 * HOUR, reader=slot)  # a new one replaces it
    window.store_reset(card, "sign", AUTH, "NEWPASS2", T + 4 * HOUR, reader=slot)
    assert matches(card, Pin.SIGN, "NEWPASS2")


@pytest.mark.parametrize("target", STORE_CANNOT)
def test_the_store_cannot_reset_the_other_secrets(card: Path, target: str) -> None:
    before = card.read_bytes()
    with pytest.raises(WindowRefusal, match="a convenience store resets only"):
        window.store_reset(card, target, AUTH, "1111", T, reader=slot)
    assert card.read_bytes() == before


def test_a_wrong_secret_at_the_kiosk_costs_a_try_and_keeps_the_reservation(card: Path) -> None:
    window.reserve(card, "auth", AUTH, T, reader=slot)
    with pytest.raises(SecretRefused, match="wrong authentication PIN: 2 tries left"):
        window.store_reset(card, "sign", "0000", "NEWPASS1", T + HOUR, reader=slot)
    assert matches(card, Pin.SIGN, SIGN)
    assert window.reservations(card)[0].used is None
    window.store_reset(card, "sign", AUTH, "NEWPASS1", T + HOUR, reader=slot)
    assert matches(card, Pin.SIGN, "NEWPASS1")


def test_the_kiosk_goes_through_the_cards_administrator(card: Path) -> None:
    """With the administrator blocked, the card refuses the kiosk; the window restores it."""
    store = FileStore.open(card)
    assert store.image.admin is not None
    store.image.admin.tries_left = 0
    store.commit()
    store.close()
    window.reserve(card, "auth", AUTH, T, reader=slot)
    with pytest.raises(WindowRefusal, match="administrator authentication"):
        window.store_reset(card, "sign", AUTH, "NEWPASS1", T + HOUR, reader=slot)
    assert window.reservations(card)[0].used is None
    window.unblock(card, "admin", T + HOUR)
    window.store_reset(card, "sign", AUTH, "NEWPASS1", T + HOUR, reader=slot)
    assert matches(card, Pin.SIGN, "NEWPASS1")


def test_the_administrator_key_computes_a_proof_the_card_accepts(card: Path) -> None:
    from card_emulator.vocabulary.administration import administrator_proof

    key = window.administrator_key(card)
    assert len(key) == 16
    with VirtualCard.open(card) as virtual:
        assert virtual.transmit(bytes.fromhex("00A4040C0A") + AID.JPKI.value) == b"\x90\x00"
        challenge = virtual.transmit(bytes.fromhex("0084000010"))[:-2]
        proof = administrator_proof(key, challenge, AID.JPKI.value)
        assert virtual.transmit(bytes.fromhex("0082000010") + proof) == b"\x90\x00"


# History ------------------------------------------------------------------------------------


def test_history_is_private_in_order_and_never_holds_a_value(card: Path) -> None:
    window.unblock(card, "collation-b", T)
    window.reset_pin(card, "auth", "4321", T + HOUR)
    window.reserve(card, "sign", SIGN, T + 2 * HOUR, reader=slot)
    window.store_reset(card, "auth", SIGN, "8642", T + 3 * HOUR, reader=slot)
    window.unblock(card, "admin", T + 4 * HOUR)
    path = card.with_name("card.json.history")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [(e.at, e.what, e.channel, e.target) for e in history.entries(card)] == [
        (T, "unblock", "window", "collation-b"),
        (T + HOUR, "reset-pin", "window", "auth"),
        (T + 2 * HOUR, "reserve", "store", "auth"),
        (T + 3 * HOUR, "reset-pin", "store", "auth"),
        (T + 4 * HOUR, "unblock", "window", "admin"),
    ]
    text = path.read_text()
    for secret in ("4321", "8642", SIGN, AUTH, window.administrator_key(card).hex()):
        assert secret.lower() not in text.lower()


def test_a_torn_last_line_is_ignored_and_never_rewritten(card: Path) -> None:
    history.record(card, "unblock", "window", at=T, target="auth")
    path = history.history_path(card)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"at":"2030-04-01T10:00:00+00:00","what":"res')  # a crash
    assert whats(card) == [("unblock", "window", "auth")]
    history.record(card, "reset-pin", "window", at=T + HOUR, target="sign")
    assert path.read_bytes().startswith(whole + b'{"at":"2030-04-01T10:00:00+00:00","what":"res\n')
    assert whats(card) == [("unblock", "window", "auth"), ("reset-pin", "window", "sign")]


def test_history_entries_round_trip_and_need_an_aware_time(card: Path) -> None:
    history.record(card, "renew", "window", at=T, details={"serial": "1A2B"})
    (entry,) = history.entries(card)
    assert entry.to_json() == {"at": "2030-04-01T09:00:00+00:00", "what": "renew",
                               "channel": "window", "target": None,
                               "details": {"serial": "1A2B"}}  # fmt: skip
    with pytest.raises(history.HistoryError):
        history.record(card, "renew", "window", at=T.replace(tzinfo=None))
    assert history.entries(card.with_name("other.json")) == []


def test_two_operations_at_once_both_complete(card: Path) -> None:
    errors: list[BaseException] = []

    def run(target: str) -> None:
        try:
            window.unblock(card, target, T)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    holder = FileStore.open(card)  # another process has the card for a moment
    threads = [threading.Thread(target=run, args=(target,)) for target in ("auth", "sign")]
    for thread in threads:
        thread.start()
    threading.Event().wait(0.2)
    holder.close()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(target or "" for _, _, target in whats(card)) == ["auth", "sign"]


def test_a_card_without_administration_apdus_is_reset_only_at_the_window(card: Path) -> None:
    store = FileStore.open(card)
    store.image.change_settings(dataclasses.replace(store.image.settings, admin_apdus=False))
    store.commit()
    store.close()
    window.reserve(card, "auth", AUTH, T, reader=slot)
    with pytest.raises(WindowRefusal, match="answers no administration APDUs"):
        window.store_reset(card, "sign", AUTH, "NEWPASS1", T + HOUR, reader=slot)
    assert window.reservations(card)[0].used is None
    assert matches(card, Pin.SIGN, SIGN)
