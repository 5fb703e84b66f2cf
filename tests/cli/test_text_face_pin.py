"""`jpki text`, `jpki face read` and `jpki pin status/change` as a user runs them: a real
process against a card file with every application (and an older one with JPKI and card-info
only), asserting what is printed and the exit codes."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from card_emulator.state.store import FileStore, read_image
from card_emulator.vocabulary.pins import Pin
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.provision import provision_card
from tests.cli.test_card_commands import ROOT
from tests.conftest import CA_DIR, CARDS

TARO = Holder(
    "番号\u3000太郎", datetime.date(1980, 2, 17), Sex.MALE, "東京都渋谷区神南一丁目１９番１１号",
    "123456789018",
)  # fmt: skip
COLLATION_A = "123456789018"
COLLATION_B = "55021720362285"  # Showa 55-02-17, card expiry 2036, security code 2285
BIRTH_DATE_KEY = "550217"
FACE_FILES = ["address.png", "name.png", "photo.jp2", "photo.png", "security-code.png"]


def jpki(
    home: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = ""
) -> subprocess.CompletedProcess[str]:
    """`jpki …` in a process of its own, with no terminal and no $JPKI_PIN unless given."""
    environment = {key: value for key, value in os.environ.items() if key != "JPKI_PIN"}
    environment.update(JPKI_HOME=str(home), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT, env=environment, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a card for TARO with every application (generated keys: once per module)."""
    directory = tmp_path_factory.mktemp("issued")
    shutil.copytree(CA_DIR, directory / "ca")
    image = provision_card(TestCA.load(directory / "ca"), TARO, "1234", "ABC123",
                           security_code="2285")  # fmt: skip
    if "card-face" not in image.applications:
        pytest.skip("provisioning does not write the card-face AP yet")
    FileStore.create(directory / "card.json", image)
    return directory


@pytest.fixture
def home(tmp_path: Path, issued: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(issued, home)
    return home


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    """The fixture card taro as a card file from before the card-face, 住基 and common APs."""
    home = tmp_path / "old"
    shutil.copytree(CA_DIR, home / "ca")
    image = read_image(CARDS / "taro.json")
    for name in ("card-face", "juki", "common", "card"):
        image.applications.pop(name, None)
    FileStore.create(home / "card.json", image)
    return home


@pytest.fixture
def long_header_home(tmp_path: Path) -> Path:
    """The fixture card for TARO whose attributes record has the `FF 20 82 00 LL` header."""
    home = tmp_path / "long"
    shutil.copytree(CA_DIR, home / "ca")
    shutil.copyfile(CARDS / "long-header.json", home / "card.json")
    return home


def status(home: Path) -> dict[tuple[str, str], dict[str, object]]:
    result = jpki(home, "pin", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {(row["application"], row["key"]): row for row in json.loads(result.stdout)}


def tries(home: Path) -> dict[str, object]:
    return {key: row["tries_left"] for (_application, key), row in status(home).items()}


# pin status ---------------------------------------------------------------------------------


def test_pin_status_lists_the_ten_key_references(home: Path) -> None:
    result = jpki(home, "pin", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 10
    assert lines[0].split() == ["jpki", "authentication", "PIN", "3", "of", "3", "tries", "left"]
    assert "card-face  collation number B   10 of 10 tries left" in lines
    assert "card-face  birth-date key       10 of 10 tries left" in lines
    assert any(line.startswith("juki") and "住基 PIN" in line for line in lines)
    assert lines[-1].startswith("common") and "3 of 3 tries left" in lines[-1]


def test_pin_status_json(home: Path) -> None:
    rows = json.loads(jpki(home, "pin", "status", "--json").stdout)
    assert [row["key"] for row in rows] == [pin.key for pin in Pin]
    assert rows[5] == {
        "application": "card-face", "key": "face-a", "label": "collation number A", "ef": "0013",
        "tries_left": 10, "max_tries": 10, "blocked": False, "present": True,
    }  # fmt: skip
    assert {row["application"] for row in rows} == {
        "jpki", "card-info", "card-face", "juki", "common",
    }  # fmt: skip


def test_pin_status_of_an_older_card_file(old_home: Path) -> None:
    result = jpki(old_home, "pin", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum("not on this card" in line for line in lines) == 5
    assert "card-info  collation number A   10 of 10 tries left" in lines
    rows = status(old_home)
    assert rows[("juki", "juki")]["present"] is False
    assert rows[("juki", "juki")]["tries_left"] is None


def test_pin_status_shows_a_blocked_collation_number(home: Path) -> None:
    wrong = jpki(home, "face", "read", "--collation-b", "55021720360000")
    assert wrong.stderr.strip() == "jpki: error: wrong collation number B: 9 tries left"
    store = FileStore.open(home / "card.json")  # the other nine wrong tries, quicker
    store.image.contents("card-face").pins[Pin.FACE_B.fid].tries_left = 0
    store.commit_counters()
    store.close()
    assert status(home)[("card-face", "face-b")]["blocked"] is True
    assert tries(home)["card-info-b"] == 10  # the card-info AP's own counter
    line = next(line for line in jpki(home, "pin", "status").stdout.splitlines()
                if line.startswith("card-face  collation number B"))  # fmt: skip
    assert "BLOCKED" in line


# pin change ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["juki", "common", "card-info"])
def test_pin_change_of_the_other_applications(home: Path, which: str) -> None:
    changed = jpki(home, "pin", "change", which, "--pin", "1234", "--new-pin", "4321")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == f"{Pin.named(which).label} changed"
    again = jpki(home, "pin", "change", which, "--pin", "1234", "--new-pin", "5555")
    assert again.returncode == 6
    assert "2 tries left" in again.stderr
    assert tries(home)["auth"] == 3  # each PIN its own, though all were set to 1234


def test_the_card_face_keys_are_not_changeable(home: Path) -> None:
    result = jpki(home, "pin", "change", "face-a", "--pin", COLLATION_A, "--new-pin", COLLATION_A)
    assert result.returncode == 2
    assert COLLATION_A not in result.stderr


# text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credential", [("--pin", "1234"), ("--collation-a", COLLATION_A)], ids=["pin", "collation-a"]
)
def test_text_mynumber(home: Path, credential: tuple[str, str]) -> None:
    result = jpki(home, "text", "mynumber", *credential)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "123456789018\n"


def test_text_mynumber_takes_the_pin_from_the_environment(home: Path) -> None:
    result = jpki(home, "text", "mynumber", env={"JPKI_PIN": "1234"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "123456789018\n"


def test_text_attributes(home: Path) -> None:
    result = jpki(home, "text", "attributes", "--collation-b", COLLATION_B)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "name         番号\u3000太郎",
        "address      東京都渋谷区神南一丁目１９番１１号",
        "birth date   1980-02-17",
        "sex          male (1)",
        "header form  short (FF 20 LL, or 81 LL)",
    ]


def test_text_attributes_json_of_a_long_header_card(long_header_home: Path) -> None:
    result = jpki(long_header_home, "text", "attributes", "--pin", "1234", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "番号\u3000太郎", "address": "東京都渋谷区神南一丁目１９番１１号",
        "birth_date": "1980-02-17", "sex": "1", "sex_label": "male", "header_form": "long",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("text", "mynumber", "--collation-a", "12345678901"), "exactly 12 digits"),
        (("text", "mynumber", "--pin", "12345"), "exactly 4 digits"),
        (("text", "attributes", "--collation-b", "550217203622"), "exactly 14 digits"),
        (("face", "read", "--collation-a", "12345678901X"), "exactly 12 digits"),
        (("face", "read", "--birth-date-key", "19800217"), "exactly 6 digits"),
    ],
)
def test_a_credential_of_the_wrong_shape_never_reaches_the_card(
    home: Path, args: tuple[str, ...], message: str
) -> None:
    before = tries(home)
    result = jpki(home, *args)
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip() == f"jpki: error: {result.stderr.split('error: ')[1].strip()}"
    assert message in result.stderr and args[-1] not in result.stderr
    assert tries(home) == before


def test_a_wrong_collation_number_costs_a_try_and_says_so(home: Path) -> None:
    result = jpki(home, "text", "attributes", "--collation-b", "55021720369999")
    assert result.returncode == 6
    assert result.stderr.strip() == "jpki: error: wrong collation number B: 9 tries left"
    assert "55021720369999" not in result.stdout + result.stderr


def test_pin_and_collation_number_together_are_a_usage_error(home: Path) -> None:
    result = jpki(home, "text", "mynumber", "--pin", "1234", "--collation-a", COLLATION_A)
    assert result.returncode == 2
    assert "give --pin or --collation-a, not both" in result.stderr


# face read ----------------------------------------------------------------------------------


def test_face_read_with_collation_number_b(home: Path) -> None:
    result = jpki(home, "face", "read", "--collation-b", COLLATION_B)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "birth date       1980-02-17",
        "sex              male (1)",
        "card expiry      2036-02-17",
    ]
    assert any(line.startswith("photo            JPEG 2000 ") for line in lines)
    assert any(line.startswith("security code    PNG 24×12, ") for line in lines)
    assert not any(line.startswith("my-number image") for line in lines)  # A only


def test_face_read_json_with_collation_a_and_the_birth_date_key(home: Path) -> None:
    result = jpki(home, "face", "read", "--collation-a", COLLATION_A, "--birth-date-key",
                  BIRTH_DATE_KEY, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    face = json.loads(result.stdout)
    assert face["credential"] == "collation-a"
    assert (face["birth_date"], face["sex"], face["card_expiry"]) == (
        "1980-02-17", "1", "2036-02-17",
    )  # fmt: skip
    assert face["age_record"] == {"birth_date": "1980-02-17"}
    assert set(face["images"]) == {"name", "address", "photo", "security_code", "my_number"}
    assert face["images"]["my_number"]["format"] == "png"
    assert (face["images"]["my_number"]["width"], face["images"]["my_number"]["height"]) == (72, 12)
    assert COLLATION_A not in result.stdout


def test_face_read_writes_the_images_and_does_not_overwrite_them(home: Path) -> None:
    out = home / "face"
    result = jpki(home, "face", "read", "--collation-a", COLLATION_A, "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == sorted([*FACE_FILES, "my-number.png"])
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert path.read_bytes()[:8] in (b"\x89PNG\r\n\x1a\n", bytes.fromhex("0000000C6A502020"))
    assert (out / "photo.png").stat().st_size > 0
    assert f"wrote            {out / 'photo.png'}" in result.stdout

    (out / "name.png").write_bytes(b"mine")
    again = jpki(home, "face", "read", "--collation-b", COLLATION_B, "--out-dir", str(out))
    assert again.returncode == 2
    assert "name.png" in again.stderr and "--force" in again.stderr
    assert (out / "name.png").read_bytes() == b"mine"
    assert tries(home)["face-b"] == 10  # refused before the card was asked anything
    forced = jpki(home, "face", "read", "--collation-b", COLLATION_B, "--out-dir", str(out),
                  "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert (out / "name.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("value", "credential"), [(COLLATION_A, "a"), (COLLATION_B, "b")])
def test_face_read_takes_a_or_b_from_the_environment_by_length(
    home: Path, value: str, credential: str
) -> None:
    result = jpki(home, "face", "read", "--json", env={"JPKI_PIN": value})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["credential"] == f"collation-{credential}"
    assert tries(home)[f"face-{credential}"] == 10


def test_face_read_with_an_environment_value_of_neither_length(home: Path) -> None:
    result = jpki(home, "face", "read", env={"JPKI_PIN": "1234"})
    assert result.returncode == 5
    assert "collation number A (exactly 12 digits) or B (exactly 14 digits)" in result.stderr
    assert "1234" not in result.stderr


def test_face_read_with_only_the_birth_date_key(home: Path) -> None:
    result = jpki(home, "face", "read", "--birth-date-key", BIRTH_DATE_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "age record       birth date 1980-02-17\n"


def test_face_read_without_a_credential_or_terminal(home: Path) -> None:
    result = jpki(home, "face", "read", stdin="")
    assert result.returncode == 2
    assert "--collation-a" in result.stderr and "$JPKI_PIN" in result.stderr


def test_face_read_of_an_older_card_file(old_home: Path) -> None:
    result = jpki(old_home, "face", "read", "--collation-b", COLLATION_B)
    assert result.returncode == 7
    assert "this card has no collation number B in its card-face AP" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_traces_never_show_a_collation_number(home: Path) -> None:
    result = jpki(home, "-v", "text", "mynumber", "--collation-a", COLLATION_A)
    assert result.returncode == 0, result.stderr
    assert COLLATION_A.encode().hex().upper() not in result.stderr
    assert "002000940C" + "**" * 12 in result.stderr  # the VERIFY, masked


@pytest.mark.parametrize("command", [("text", "mynumber"), ("text", "attributes"),
                                     ("face", "read"), ("pin", "status")])  # fmt: skip
def test_help_has_an_example(command: tuple[str, ...]) -> None:
    result = jpki(Path("/nonexistent"), *command, "--help")
    assert result.returncode == 0
    assert "Example: jpki " + " ".join(command) in result.stdout
