"""The card file: retry counters survive a kill at any moment, one process at a time, 0600."""

from __future__ import annotations

import os
import random
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from card_emulator.errors import CardFileError
from card_emulator.state.image import FORMAT_VERSION
from card_emulator.state.store import FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from tests.conftest import CARDS

ROOT = Path(__file__).resolve().parents[2]
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
WRONG_AUTH_PIN = bytes.fromhex("002000980430303030")
AUTH_PIN_FID = 0x18


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    shutil.copyfile(CARDS / "taro.json", path)
    os.chmod(path, 0o600)
    return path


def tries_on_disk(path: Path) -> int:
    return read_image(path).contents("jpki").pins[AUTH_PIN_FID].tries_left


def child(script: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# The child stops inside the PIN comparison and tells the parent, which then kills it: the
# card has not answered yet, so a decrement written only after comparing would be lost.
STOP_IN_COMPARISON = """
    import sys, time
    from card_emulator.transports.memory import VirtualCard
    from card_emulator.state.pin_reference import PinReference

    def stall(self, candidate):
        print("comparing", flush=True)
        time.sleep(60)

    PinReference.matches = stall
    card = VirtualCard.open(sys.argv[1])
    card.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))
    print(card.transmit(bytes.fromhex("002000980430303030")).hex(), flush=True)
"""


def test_a_kill_during_a_wrong_verify_still_costs_a_try(card_file: Path) -> None:
    assert tries_on_disk(card_file) == 3
    process = child(STOP_IN_COMPARISON, card_file)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "comparing"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert tries_on_disk(card_file) == 2
    with VirtualCard.open(card_file) as card:  # the lock died with the process
        card.transmit(SELECT_JPKI)
        assert card.transmit(bytes.fromhex("00200098")) == b"\x63\xc2"


KILLED_AT_RANDOM = """
    import sys
    from card_emulator.transports.memory import VirtualCard

    card = VirtualCard.open(sys.argv[1])
    card.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))
    print("ready", flush=True)
    sys.stdin.readline()
    print(card.transmit(bytes.fromhex("002000980430303030")).hex(), flush=True)
"""


UNHINDERED_RUNS = 3  # measure the window on a few runs: one slow start must not stretch it
KILLED_RUNS = 16


def test_kills_at_random_moments_never_corrupt_the_card_nor_refund_a_try(card_file: Path) -> None:
    rng = random.Random(7)
    outcomes: set[str] = set()
    # How long an unhindered wrong VERIFY takes here, from "go" to its answer (not to the exit
    # of the child, whose interpreter shutdown takes many times longer than the command).
    answer_times: list[float] = []
    for _ in range(UNHINDERED_RUNS + KILLED_RUNS):
        before = tries_on_disk(card_file)
        if before == 0:
            store = FileStore.open(card_file)  # as the office's unblock does, through the store
            store.image.contents("jpki").pins[0x0018].tries_left = 3
            store.commit()
            store.close()
            before = 3
        process = child(KILLED_AT_RANDOM, card_file)
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "ready"
        started = time.monotonic()
        process.stdin.write("go\n")
        process.stdin.flush()
        if len(answer_times) < UNHINDERED_RUNS:
            answer = process.stdout.readline().strip()
            answer_times.append(time.monotonic() - started)
            process.wait(timeout=60)
        else:
            window = statistics.median(answer_times)
            try:
                process.wait(timeout=rng.uniform(0.0, 1.5 * window))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            answer = process.stdout.read().strip()
        outcomes.add("answered" if answer else "killed")
        after = tries_on_disk(card_file)  # raises if the file were torn
        if answer:  # the card answered: that answer's count must be on disk
            assert answer == f"63c{before - 1}"
            assert after == before - 1
        else:
            assert after in (before, before - 1)
    assert outcomes == {"answered", "killed"}  # both sides of the window were exercised


def test_the_card_file_is_locked_while_in_use(card_file: Path) -> None:
    with (
        VirtualCard.open(card_file),
        pytest.raises(CardFileError, match="in use by another process"),
    ):
        VirtualCard.open(card_file)
    VirtualCard.open(card_file).close()


def test_files_holding_keys_are_private_after_every_write(card_file: Path) -> None:
    with VirtualCard.open(card_file) as card:
        card.transmit(SELECT_JPKI)
        card.transmit(WRONG_AUTH_PIN)
    assert stat.S_IMODE(card_file.stat().st_mode) == 0o600
    assert not [p.name for p in card_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_counters_persist_across_sessions(card_file: Path) -> None:
    with VirtualCard.open(card_file) as card:
        card.transmit(SELECT_JPKI)
        assert card.transmit(WRONG_AUTH_PIN) == b"\x63\xc2"
    with VirtualCard.open(card_file) as card:
        card.transmit(SELECT_JPKI)
        assert card.transmit(bytes.fromhex("00200098")) == b"\x63\xc2"


def test_an_in_memory_card_never_writes(card_file: Path) -> None:
    before = card_file.read_bytes()
    card = VirtualCard.in_memory(card_file)
    card.transmit(SELECT_JPKI)
    assert card.transmit(WRONG_AUTH_PIN) == b"\x63\xc2"
    assert card_file.read_bytes() == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], "invalid JSON"),
        (
            lambda text: text.replace(f'"version": {FORMAT_VERSION}', '"version": 9'),
            "version 9 is not supported",
        ),
        (lambda text: text.replace('"tries_left": 3', '"tries_left": 7'), "checksum mismatch"),
        (lambda text: text.replace('"jpki-emulator-card"', '"other"'), "not a card image"),
        (lambda text: text.replace("BEGIN PRIVATE KEY", "BEGIN PRIVAT KEY"), "checksum mismatch"),
    ],
)
def test_a_damaged_card_file_gives_one_readable_line(
    card_file: Path, damage: Callable[[str], str], message: str
) -> None:
    text = card_file.read_text()
    assert damage(text) != text
    card_file.write_text(damage(text))
    with pytest.raises(CardFileError, match=message) as error:
        VirtualCard.open(card_file)
    assert "\n" not in str(error.value)
    assert str(card_file) in str(error.value)


# Waiting for a card in use: administrative commands queue instead of failing ------------------


def test_open_with_wait_takes_the_card_once_it_is_free(card_file: Path) -> None:
    first = FileStore.open(card_file)
    opened: list[FileStore] = []
    waiter = threading.Thread(target=lambda: opened.append(FileStore.open(card_file, wait=10)))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    assert not opened  # still waiting
    first.image.contents("jpki").pins[AUTH_PIN_FID].tries_left = 1
    first.commit()
    first.close()
    waiter.join(timeout=10)
    (second,) = opened
    try:
        assert time.monotonic() - started >= 0.3
        # It loaded the card only once it held the lock: it sees the first one's change.
        assert second.image.contents("jpki").pins[AUTH_PIN_FID].tries_left == 1
    finally:
        second.close()


def test_open_with_wait_gives_up_after_the_wait(card_file: Path) -> None:
    with VirtualCard.open(card_file):
        started = time.monotonic()
        with pytest.raises(CardFileError, match=r"in use by another process .*waited 0.2 s"):
            FileStore.open(card_file, wait=0.2)
        assert 0.2 <= time.monotonic() - started < 2
        with pytest.raises(CardFileError, match="in use by another process"):
            FileStore.open(card_file)  # the default still fails at once


def test_two_administrative_commands_at_once_both_succeed(card_file: Path) -> None:
    store = FileStore.open(card_file)
    pins = store.image.contents("jpki").pins
    pins[0x18].tries_left = pins[0x1B].tries_left = 0
    assert store.image.admin is not None
    store.image.admin.tries_left = 0
    store.commit()
    store.close()
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def unblock(change: Callable[[FileStore], None]) -> None:
        barrier.wait()
        try:
            store = FileStore.open(card_file, wait=10)
            try:
                change(store)
                time.sleep(0.1)  # holds the card while the others wait
                store.commit()
            finally:
                store.close()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def auth(store: FileStore) -> None:
        store.image.contents("jpki").pins[0x18].tries_left = 3

    def sign(store: FileStore) -> None:
        store.image.contents("jpki").pins[0x1B].tries_left = 5

    def admin(store: FileStore) -> None:
        assert store.image.admin is not None
        store.image.admin.restore()

    threads = [threading.Thread(target=unblock, args=(change,)) for change in (auth, sign, admin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    image = read_image(card_file)  # nothing lost: each saw the one before
    assert image.contents("jpki").pins[0x18].tries_left == 3
    assert image.contents("jpki").pins[0x1B].tries_left == 5
    assert image.admin is not None and image.admin.tries_left == 15
