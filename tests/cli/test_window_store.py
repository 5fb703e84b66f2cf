"""`jpki window`, `jpki store`, and which lock a blocked PIN is, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from card_emulator.state.administrator import AdministratorKey
from card_emulator.state.store import FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.administration import administrator_proof
from card_emulator.vocabulary.identifiers import AID
from card_emulator.vocabulary.pins import STORE, TARGETS, WINDOW, Pin
from jpki.issuer import history
from jpki.issuer.provision import application_name
from tests.cli.test_card_commands import ROOT, SELECT_JPKI, jpki, years_ago
from tests.conftest import CA_DIR, CARDS
from tests.jpki.test_window import set_tries

T = "2030-04-01T09:00:00+09:00"
T_PLUS = {hours: f"2030-04-{1 + (9 + hours) // 24:02d}T{(9 + hours) % 24:02d}:00:00+09:00"
          for hours in range(0, 48)}  # fmt: skip
NEW_VALUES = {"auth": "4321", "sign": "NEWPASS1", "card-info": "5678", "juki": "2468",
              "common": "1357"}  # fmt: skip
PRINTED = ("collation-a", "collation-b", "birth-date")
SECRETS = ("1234", "ABC123", "4321", "NEWPASS1", "5678", "2468", "1357", "9876")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A JPKI_HOME with the fixture CA and the fixture card taro, given an administrator key
    if the fixture predates them."""
    shutil.copytree(CA_DIR, tmp_path / "ca")
    shutil.copyfile(CARDS / "taro.json", tmp_path / "card.json")
    store = FileStore.open(tmp_path / "card.json")
    if store.image.admin is None:
        store.image.admin = AdministratorKey.create()
        store.commit()
    store.close()
    return tmp_path


def status(home: Path, *args: str) -> dict[str, dict[str, object]]:
    result = jpki(home, *args, "pin", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["key"]: row for row in json.loads(result.stdout)}


def verify_sign(home: Path, value: str, *args: str) -> str:
    """The status word of VERIFY of the signature password (hex of `value`)."""
    result = jpki(
        home, *args, "apdu", SELECT_JPKI, f"0020009B{len(value):02X}{value.encode().hex()}"
    )
    return result.stdout.splitlines()[-1]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jpki: error: ")
    return lines[0]


# The window ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_window_unblock_every_target(home: Path, target: str) -> None:
    set_tries(home / "card.json", TARGETS[target], 0)
    result = jpki(home, "window", "unblock", target)
    assert result.returncode == 0, result.stderr
    assert "unblocked" in result.stdout
    rows = status(home)
    for pin in TARGETS[target]:
        assert rows[pin.key]["tries_left"] == rows[pin.key]["max_tries"]


def test_window_unblock_of_a_pin_that_is_not_blocked(home: Path) -> None:
    result = jpki(home, "window", "unblock", "auth")
    assert (result.returncode, result.stdout) == (0, "authentication PIN unblocked: 3 tries\n")
    paired = jpki(home, "window", "unblock", "collation-a")
    assert paired.stdout == (
        "collation number A unblocked in the card-info and card-face APs: 10 tries\n"
    )


@pytest.mark.parametrize("target", list(NEW_VALUES))
def test_window_reset_pin(home: Path, target: str) -> None:
    set_tries(home / "card.json", TARGETS[target], 0)
    result = jpki(home, "window", "reset-pin", target, "--new-pin", NEW_VALUES[target])
    assert result.returncode == 0, result.stderr
    image = read_image(home / "card.json")
    for pin in TARGETS[target]:  # juki: the 住基 and the common AP's 001C
        reference = image.contents(application_name(pin)).pins[pin.fid]
        assert reference.matches(NEW_VALUES[target].encode())
        assert reference.tries_left == pin.max_tries


def test_window_reset_pin_of_the_auth_pin_verifies(home: Path) -> None:
    assert jpki(home, "window", "reset-pin", "auth", "--new-pin", "4321").returncode == 0
    result = jpki(home, "apdu", SELECT_JPKI, "0020009804 34333231")
    assert result.stdout.splitlines()[-1] == "9000"


@pytest.mark.parametrize("target", PRINTED)
def test_window_reset_pin_is_refused_for_what_is_printed(home: Path, target: str) -> None:
    before = (home / "card.json").read_bytes()
    result = jpki(home, "window", "reset-pin", target, "--new-pin", "123456789012")
    assert result.returncode == 9
    assert "printed on the card" in one_error_line(result)
    assert (home / "card.json").read_bytes() == before


def test_window_reset_pin_checks_the_format_first(home: Path) -> None:
    set_tries(home / "card.json", (Pin.SIGN,), 0)
    before = (home / "card.json").read_bytes()
    result = jpki(home, "window", "reset-pin", "sign", "--new-pin", "abc")
    assert result.returncode == 5
    assert "signature password must be 6 to 16 characters" in one_error_line(result)
    assert (home / "card.json").read_bytes() == before
    assert status(home)["sign"]["blocked"] is True


def test_window_reset_pin_without_a_value_or_a_terminal(home: Path) -> None:
    result = jpki(home, "window", "reset-pin", "auth", stdin="")
    assert result.returncode == 2
    assert "no terminal to ask for the new authentication PIN" in result.stderr


def test_window_unknown_target(home: Path) -> None:
    result = jpki(home, "window", "unblock", "face-a")
    assert result.returncode == 2


def test_window_admin_key_computes_a_proof_the_card_accepts(home: Path) -> None:
    result = jpki(home, "window", "admin-key")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9A-F]{32}\n", result.stdout)
    key = bytes.fromhex(result.stdout)
    with VirtualCard.open(home / "card.json") as card:
        assert card.transmit(bytes.fromhex(SELECT_JPKI)) == b"\x90\x00"
        challenge = card.transmit(bytes.fromhex("0084000010"))[:-2]
        proof = administrator_proof(key, challenge, AID.JPKI.value)
        assert card.transmit(bytes.fromhex("0082000010") + proof) == b"\x90\x00"
        new = b"ABCD1234"
        reset = bytes.fromhex("002C029B") + bytes([len(new)]) + new
        assert card.transmit(reset) == b"\x90\x00"
        assert card.transmit(bytes.fromhex("0020009B") + bytes([len(new)]) + new) == b"\x90\x00"


def test_window_unblock_admin(home: Path) -> None:
    store = FileStore.open(home / "card.json")
    assert store.image.admin is not None
    store.image.admin.tries_left = 0
    store.commit()
    store.close()
    result = jpki(home, "window", "unblock", "admin")
    assert (result.returncode, result.stdout) == (
        0, "administrator authentication unblocked: 15 tries\n",
    )  # fmt: skip
    admin = read_image(home / "card.json").admin
    assert admin is not None and admin.tries_left == 15


def test_card_unblock_is_the_windows_synonym_and_recorded(home: Path) -> None:
    set_tries(home / "card.json", (Pin.FACE_B,), 0)
    assert jpki(home, "card", "unblock", "face-b").returncode == 0
    assert status(home)["face-b"]["tries_left"] == 10
    entries = history.entries(home / "card.json")
    assert [(e.what, e.channel, e.target) for e in entries] == [("unblock", "window", "face-b")]


# The convenience store ----------------------------------------------------------------------


def test_store_reset_on_a_new_card_within_24_hours_and_not_after(tmp_path: Path) -> None:
    shutil.copytree(CA_DIR, tmp_path / "ca")
    # The fixture CA's generation has ended by T: a new one issues the card.
    assert jpki(tmp_path, "--at", T, "ca", "rollover").returncode == 0
    created = jpki(
        tmp_path, "--at", T, "card", "create", "--auth-pin", "1234", "--sign-pin", "ABC123",
        "--name", "山田　花子", "--birth-date", years_ago(36).isoformat(), "--sex", "female",
        "--address", "東京都千代田区千代田１番１号",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    reserved = jpki(tmp_path, "--at", T, "store", "reserve", "--auth-pin", "1234")
    assert reserved.returncode == 0, reserved.stderr
    assert reserved.stdout == (
        "Reserved a store reset of the signature password until 2030-04-02T09:00:00+09:00\n"
    )
    late = jpki(tmp_path, "--at", T_PLUS[25], "store", "reset-pin", "sign", "--auth-pin", "1234",
                "--new-pin", "NEWPASS1")  # fmt: skip
    assert late.returncode == 9
    assert "expired at 2030-04-02T09:00:00+09:00" in one_error_line(late)
    assert verify_sign(tmp_path, "ABC123") == "9000"  # unchanged
    again = jpki(tmp_path, "--at", T_PLUS[25], "store", "reserve", "--auth-pin", "1234")
    assert again.returncode == 0, again.stderr
    reset = jpki(tmp_path, "--at", T_PLUS[26], "store", "reset-pin", "sign", "--auth-pin", "1234",
                 "--new-pin", "NEWPASS1")  # fmt: skip
    assert (reset.returncode, reset.stdout) == (0, "signature password reset at the store\n")
    assert verify_sign(tmp_path, "NEWPASS1") == "9000"
    used = jpki(tmp_path, "--at", T_PLUS[27], "store", "reset-pin", "sign", "--auth-pin", "1234",
                "--new-pin", "NEWPASS2")  # fmt: skip
    assert used.returncode == 9
    assert "already used" in one_error_line(used)


def test_store_reset_of_the_auth_pin_with_the_signature_password(home: Path) -> None:
    set_tries(home / "card.json", (Pin.AUTH,), 0)
    assert jpki(home, "store", "reserve", "--sign-pin", "ABC123").returncode == 0
    result = jpki(home, "store", "reset-pin", "auth", "--sign-pin", "ABC123", "--new-pin", "9876")
    assert result.returncode == 0, result.stderr
    login = jpki(home, "apdu", SELECT_JPKI, "0020009804 39383736")
    assert login.stdout.splitlines()[-1] == "9000"


def test_store_reserve_with_a_wrong_auth_pin_costs_a_try_and_reserves_nothing(
    home: Path,
) -> None:
    result = jpki(home, "store", "reserve", "--auth-pin", "0000")
    assert result.returncode == 6
    assert one_error_line(result) == "jpki: error: wrong authentication PIN: 2 tries left"
    assert status(home)["auth"]["tries_left"] == 2
    reset = jpki(home, "store", "reset-pin", "sign", "--auth-pin", "1234", "--new-pin", "NEWPASS1")
    assert reset.returncode == 9
    assert "no reservation to reset the signature password" in one_error_line(reset)


def test_store_reserve_with_a_locked_auth_pin_is_refused(home: Path) -> None:
    set_tries(home / "card.json", (Pin.AUTH,), 0)
    result = jpki(home, "store", "reserve", "--auth-pin", "1234")
    assert result.returncode == 6
    assert "authentication PIN is blocked" in one_error_line(result)


def test_store_reset_without_a_reservation_is_refused(home: Path) -> None:
    before = (home / "card.json").read_bytes()
    result = jpki(home, "store", "reset-pin", "sign", "--auth-pin", "1234", "--new-pin", "NEWPASS1")
    assert result.returncode == 9
    assert (home / "card.json").read_bytes() == before


@pytest.mark.parametrize("target", [t for t in TARGETS if t not in ("auth", "sign")])
def test_store_cannot_reset_the_other_pins(home: Path, target: str) -> None:
    result = jpki(home, "store", "reset-pin", target, "--auth-pin", "1234", "--new-pin", "1111")
    assert result.returncode == 9
    message = one_error_line(result)
    assert "a convenience store resets only the signature password and the authentication PIN" in (
        message
    )
    assert "jpki window" in message and target in message


def test_store_options_must_match_the_target(home: Path) -> None:
    result = jpki(home, "store", "reset-pin", "sign", "--sign-pin", "ABC123", "--new-pin", "X1X1X1")
    assert result.returncode == 2
    assert "give --auth-pin, not --sign-pin" in result.stderr
    neither = jpki(home, "store", "reserve")
    assert neither.returncode == 2


def test_store_reserve_refused_when_the_face_does_not_match(home: Path) -> None:
    result = jpki(home, "store", "reserve", "--auth-pin", "1234", "--face-mismatch")
    assert result.returncode == 9
    assert "face did not match" in one_error_line(result)


# History ------------------------------------------------------------------------------------


def test_history_lists_every_operation_in_order_and_never_a_pin(home: Path) -> None:
    steps = [
        ("window", "unblock", "collation-b"),
        ("window", "reset-pin", "auth", "--new-pin", "4321"),
        ("window", "reset-pin", "juki", "--new-pin", "2468"),
        ("store", "reserve", "--auth-pin", "4321"),
        ("store", "reset-pin", "sign", "--auth-pin", "4321", "--new-pin", "NEWPASS1"),
        ("window", "unblock", "admin"),
        ("card", "unblock", "auth", "--new-pin", "9876"),
    ]
    for step in steps:
        result = jpki(home, *step)
        assert result.returncode == 0, (step, result.stderr)
    entries = history.entries(home / "card.json")
    assert [(e.what, e.channel, e.target) for e in entries] == [
        ("unblock", "window", "collation-b"),
        ("reset-pin", "window", "auth"),
        ("reset-pin", "window", "juki"),
        ("reserve", "store", "sign"),
        ("reset-pin", "store", "sign"),
        ("unblock", "window", "admin"),
        ("reset-pin", "window", "auth"),
    ]
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    text = (home / "card.json.history").read_text()
    for secret in SECRETS:
        assert secret not in text


def test_two_window_commands_at_once_both_succeed(home: Path) -> None:
    env = {**os.environ, "JPKI_HOME": str(home)}
    holder = FileStore.open(home / "card.json")  # both commands meet a card in use
    processes = [
        subprocess.Popen([sys.executable, "-m", "cli", "window", "unblock", target], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for target in ("auth", "sign")
    ]  # fmt: skip
    time.sleep(1.0)
    holder.close()
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], results
    targets = sorted(e.target or "" for e in history.entries(home / "card.json"))
    assert targets == ["auth", "sign"]


# Which lock is this? ------------------------------------------------------------------------


def test_pin_status_names_what_a_blocked_pin_protects_and_who_unlocks_it(home: Path) -> None:
    set_tries(home / "card.json", (Pin.AUTH, Pin.FACE_B), 0)
    text = jpki(home, "pin", "status").stdout
    lines = text.splitlines()
    auth = lines.index(next(line for line in lines if "authentication PIN" in line))
    assert lines[auth].endswith("BLOCKED")
    assert lines[auth + 1].strip() == f"protects {Pin.AUTH.lock.protects}"
    assert lines[auth + 2].strip().startswith(f"unlock at {WINDOW}: jpki window unblock auth")
    assert lines[auth + 3].strip() == (
        f"unlock at {STORE}: jpki store reserve --sign-pin …, then jpki store reset-pin auth"
    )
    face_b = lines.index(next(line for line in lines if line.startswith("card-face  collation "
                                                                       "number B")))  # fmt: skip
    assert lines[face_b + 2].strip() == (
        f"unlock at {WINDOW}: jpki window unblock collation-b (its value is printed on the card)"
    )
    assert STORE not in lines[face_b + 3]
    rows = status(home)
    assert rows["auth"]["protects"] == "logging in (the authentication key)"
    assert rows["auth"]["unlock"] == [WINDOW, STORE]
    assert rows["face-b"]["unlock"] == [WINDOW]
    assert "protects" not in rows["sign"] and "unlock" not in rows["sign"]


def test_card_info_names_the_lock_of_a_blocked_pin(home: Path) -> None:
    set_tries(home / "card.json", (Pin.JUKI,), 0)
    pins = json.loads(jpki(home, "card", "info", "--json").stdout)["pins"]
    assert pins["juki"]["protects"] == Pin.JUKI.lock.protects
    assert pins["juki"]["unlock"] == [WINDOW]
    assert "protects" not in pins["common"]
