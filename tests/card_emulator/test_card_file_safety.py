"""A card file is read strictly and written safely: no damaged, partial or hand-edited file is
ever loaded (and so never rewritten without its keys), links get no lock of their own, nothing
is left behind, and modes do not depend on the umask."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from card_emulator.errors import CardFileError, CardImageError
from card_emulator.state.image import CHECKSUM_VERSION, FORMAT_VERSION, CardImage, CardSettings
from card_emulator.state.store import FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from tests.cli.test_card_commands import jpki
from tests.conftest import CARDS

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
WRONG_AUTH_PIN = bytes.fromhex("002000980430303030")
RIGHT_AUTH_PIN = bytes.fromhex("002000980431323334")


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    shutil.copyfile(CARDS / "taro.json", path)
    return path


def tries(path: Path) -> int:
    return read_image(path).contents("jpki").pins[0x18].tries_left


def resealed(data: dict[str, Any]) -> bytes:
    """A document with a valid checksum over `data`: what a careless tool would write."""
    content = {key: value for key, value in data.items() if key != "checksum"}
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    document = {**content, "checksum": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()}
    return json.dumps(document, ensure_ascii=False, indent=1).encode() + b"\n"


# Strict reading --------------------------------------------------------------------------


def test_reading_and_writing_back_gives_the_same_bytes() -> None:
    for fixture in sorted(CARDS.glob("*.json")):
        raw = fixture.read_bytes()
        assert CardImage.loads(raw).dumps() == raw, fixture.name


def test_every_single_byte_corruption_is_refused() -> None:
    raw = (CARDS / "taro.json").read_bytes()
    rng = random.Random(20261127)
    for offset in range(len(raw)):
        damaged = bytearray(raw)
        damaged[offset] = rng.choice([b for b in range(256) if b != raw[offset]])
        with pytest.raises(CardImageError) as error:
            CardImage.loads(bytes(damaged))
        assert "\n" not in str(error.value)


def test_every_misspelt_field_name_is_refused() -> None:
    raw = (CARDS / "taro.json").read_text()
    names = {match.start(1) for match in re.finditer(r'"([^"\n]+)":', raw)}
    assert len(names) > 30
    for start in sorted(names):
        misspelt = raw[:start] + ("x" if raw[start] != "x" else "y") + raw[start + 1 :]
        with pytest.raises(CardImageError):
            CardImage.loads(misspelt.encode())


def edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    data = json.loads((CARDS / "taro.json").read_text())
    change(data)
    return resealed(data)


def auth_pin(data: dict[str, Any]) -> dict[str, Any]:
    pin: dict[str, Any] = data["applications"]["jpki"]["pins"]["0018"]
    return pin


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["applications"]["jpki"].update(kdys=d["applications"]["jpki"].pop("keys")),
         "applications.jpki: unknown field 'kdys'"),
        (lambda d: d["applications"]["jpki"].update(pifs=d["applications"]["jpki"].pop("pins")),
         "applications.jpki: unknown field 'pifs'"),
        (lambda d: d["applications"]["jpki"].pop("keys"), "missing field 'keys'"),
        (lambda d: d["settings"].update(warm_reset_keeps_security_state="false"),
         "warm_reset_keeps_security_state must be true or false"),
        (lambda d: d["settings"].update(wram_reset=True), "settings: unknown field 'wram_reset'"),
        (lambda d: auth_pin(d).update(iterations=0), "0018.iterations must be an integer from 1"),
        (lambda d: auth_pin(d).update(tries_left=4), "tries_left must be an integer from 0 to 3"),
        (lambda d: auth_pin(d).update(tries_left=True), "tries_left must be an integer"),
        (lambda d: auth_pin(d).update(salt="00"), "salt must be 16 bytes"),
        (lambda d: d["applications"]["jpki"]["files"].update({"000a": "AA=="}),
         "4 upper-case hex digits"),
        (lambda d: d["applications"]["jpki"]["files"].update({"0017": "AA=="}),
         "not one of the files of jpki"),
        (lambda d: d["applications"].update(other={}), "unknown application 'other'"),
    ],
)  # fmt: skip
def test_fields_are_checked_against_the_schema(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(CardImageError, match=re.escape(message)):
        CardImage.loads(edit(change))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"format": "jpki-emulator-card", "format": "x"}', "'format' appears twice"),
        (b'{"version": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
def test_crafted_files_are_refused_in_one_line(raw: bytes, message: str) -> None:
    with pytest.raises(CardImageError, match=message) as error:
        CardImage.loads(raw)
    assert "\n" not in str(error.value)


def test_a_refused_file_is_never_rewritten(card_file: Path) -> None:
    data = json.loads(card_file.read_text())
    data["applications"]["jpki"]["kdys"] = data["applications"]["jpki"].pop("keys")
    damaged = resealed(data)
    card_file.write_bytes(damaged)
    with pytest.raises(CardFileError, match="unknown field 'kdys'"):
        VirtualCard.open(card_file)
    assert card_file.read_bytes() == damaged  # the keys are still there for a human to rescue


# What files written before format version 3 hold: four settings, and two applications.
SETTINGS_BEFORE_VERSION_3 = (
    "atr", "warm_reset_keeps_security_state", "wrong_length_pin_counts_as_attempt", "select_fci",
)  # fmt: skip
APPLICATIONS_BEFORE_VERSION_3 = ("jpki", "card-info")
SETTINGS_FROM_VERSION_4 = ("admin_apdus",)


def older_file(version: int) -> bytes:
    """The fixture card taro as an emulator that wrote `version` would have: version 1 has no
    checksum; neither has the settings or applications that version 3 added; none has the
    administrator key or the setting that version 4 added."""
    data = json.loads((CARDS / "taro.json").read_text())
    data["version"] = version
    del data["admin"]
    data["settings"] = {
        name: value
        for name, value in data["settings"].items()
        if name not in SETTINGS_FROM_VERSION_4
        and (version >= 3 or name in SETTINGS_BEFORE_VERSION_3)
    }
    data["applications"] = {
        name: value
        for name, value in data["applications"].items()
        if version >= 3 or name in APPLICATIONS_BEFORE_VERSION_3
    }
    if version < CHECKSUM_VERSION:
        del data["checksum"]
        return json.dumps(data).encode()
    return resealed(data)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_file_still_opens_and_is_rewritten_in_the_current_version(
    card_file: Path, version: int
) -> None:
    card_file.write_bytes(older_file(version))
    with VirtualCard.open(card_file) as card:
        card.transmit(SELECT_JPKI)
        assert card.transmit(WRONG_AUTH_PIN) == b"\x63\xc2"
    # A counter alone goes to the counters file: the image is not rewritten for it.
    assert json.loads(card_file.read_text())["version"] == version
    assert tries(card_file) == 2
    with VirtualCard.open(card_file) as card:
        card.transmit(SELECT_JPKI)
        assert card.transmit(RIGHT_AUTH_PIN) == b"\x90\x00"
        assert card.transmit(bytes.fromhex("002401980434333231")) == b"\x90\x00"
    rewritten = card_file.read_bytes()  # a PIN change rewrites the image
    assert json.loads(rewritten)["version"] == FORMAT_VERSION == 4
    assert CardImage.loads(rewritten).dumps() == rewritten  # in canonical form
    assert json.loads(rewritten)["admin"] is None  # the card makes no administrator key
    assert read_image(card_file).settings == CardSettings()  # the added settings' defaults
    assert tries(card_file) == 3


def test_settings_change_through_the_command(tmp_path: Path, card_file: Path) -> None:
    result = jpki(tmp_path, "--card", str(card_file), "card", "settings",
                  "warm_reset_keeps_security_state=false", "select_fci=6F00")  # fmt: skip
    assert result.returncode == 0, result.stderr
    settings = read_image(card_file).settings
    assert settings.warm_reset_keeps_security_state is False
    assert settings.select_fci == b"\x6f\x00"
    refused = jpki(tmp_path, "--card", str(card_file), "card", "settings", "warm_reset=false")
    assert refused.returncode == 2 and "no card setting 'warm_reset'" in refused.stderr


# Links, creation, leftovers, modes ------------------------------------------------------


def test_a_symbolic_link_shares_the_card_and_its_lock(card_file: Path) -> None:
    link = card_file.with_name("link.json")
    link.symlink_to(card_file)
    with VirtualCard.open(link) as card:
        with pytest.raises(CardFileError, match="in use by another process"):
            VirtualCard.open(card_file)
        card.transmit(SELECT_JPKI)
        assert card.transmit(WRONG_AUTH_PIN) == b"\x63\xc2"
    assert link.is_symlink()  # the write went to the card, not over the link
    assert tries(card_file) == 2


def test_a_hard_link_is_refused(card_file: Path) -> None:
    os.link(card_file, card_file.with_name("second-name.json"))
    with pytest.raises(CardFileError, match="2 hard links"):
        VirtualCard.open(card_file)


def race_to_create(target: Path, image: CardImage, racers: int) -> list[str]:
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def create() -> None:
        barrier.wait()
        try:
            FileStore.create(target, image)
            outcomes.append("created")
        except CardFileError:
            outcomes.append("refused")

    threads = [threading.Thread(target=create) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def test_creating_a_card_that_exists_is_refused_atomically(tmp_path: Path) -> None:
    image = read_image(CARDS / "taro.json")
    for round_number in range(20):
        target = tmp_path / f"race-{round_number}.json"
        assert race_to_create(target, image, 4) == ["created", "refused", "refused", "refused"]
        assert read_image(target).dumps() == image.dumps()


def test_leftover_copies_are_removed_on_the_next_open(card_file: Path) -> None:
    leftover = card_file.with_name(f".{card_file.name}.0badf00d.tmp")
    leftover.write_bytes(card_file.read_bytes())
    unrelated = card_file.with_name(".other.json.0badf00d.tmp")
    unrelated.write_text("not ours")
    VirtualCard.open(card_file).close()
    assert not leftover.exists()
    assert unrelated.exists()


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_modes_do_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "new" / "deeper" / "card.json"
    previous = os.umask(umask)
    try:
        FileStore.create(target, read_image(CARDS / "taro.json"))
        with VirtualCard.open(target) as card:
            card.transmit(SELECT_JPKI)
            card.transmit(RIGHT_AUTH_PIN)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.with_name("card.json.lock").stat().st_mode) == 0o600
    for directory in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


# Retry counters --------------------------------------------------------------------------


def test_a_verify_writes_the_counters_not_the_image(card_file: Path) -> None:
    with VirtualCard.open(card_file) as card:
        image_before = card_file.read_bytes()
        card.transmit(SELECT_JPKI)
        assert card.transmit(WRONG_AUTH_PIN) == b"\x63\xc2"
        assert card_file.read_bytes() == image_before  # no rewrite of the 16 KB image
    assert tries(card_file) == 2
    with VirtualCard.open(card_file) as card:
        card.transmit(SELECT_JPKI)
        assert card.transmit(RIGHT_AUTH_PIN) == b"\x90\x00"
    assert tries(card_file) == 3


def test_every_single_byte_corruption_of_the_counters_is_refused(card_file: Path) -> None:
    VirtualCard.open(card_file).close()  # makes the counters file
    counters_file = card_file.with_name(card_file.name + ".counters")
    raw = counters_file.read_bytes()
    for offset in range(len(raw)):
        damaged = bytearray(raw)
        damaged[offset] ^= 0x01
        counters_file.write_bytes(bytes(damaged))
        with pytest.raises(CardFileError, match="counters") as error:
            VirtualCard.open(card_file)
        assert "\n" not in str(error.value)
    counters_file.write_bytes(raw)
    VirtualCard.open(card_file).close()
