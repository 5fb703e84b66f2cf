"""APDU round trip through a real pcscd: pyscard -> pcscd -> vpcd -> card, against an echo floor.

    sudo .venv/bin/python benchmarks/pcsc_roundtrip.py [--rounds N] [--untuned-rounds N]

Root only: the benchmark enters private mount and network namespaces (tests/pcsc/harness.py) and
starts its own pcscd there, so it never touches a system pcscd and leaves nothing running.

Each card is served in vpcd slot 0 by a `VpcdLink` in a thread of this process, one at a time:
the floor is an echo card that answers 9000 to everything (same path, no card logic), then the
real card (taro.json, in memory) with SELECT AP, READ BINARY 256 bytes by short EF id and the
VERIFY retry query, each timed separately. Both run again with Nagle and delayed ACKs left on
(fewer rounds: ~40 ms each), and the READ BINARY once more through a `jpki serve` subprocess.
One pyscard connection per case; only `connection.transmit` is timed, after a warm-up.
Prints median and p99 in microseconds and each median's ratio to the floor of the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from card_emulator.card import VirtualCard  # noqa: E402
from card_emulator.vpcd import DEFAULT_PORT, ServedCard, SocketTuning, VpcdLink  # noqa: E402
from tests.pcsc import harness  # noqa: E402
from tests.pcsc.harness import READER, wait_for  # noqa: E402

FIXTURE = ROOT / "fixtures" / "cards" / "taro.json"
SELECT_AP = bytes.fromhex("00A4040C0AD392F000260100000001")
READ_BINARY = bytes.fromhex("00B08A0000")  # 256 bytes of the EF with short id 0A
VERIFY_QUERY = bytes.fromhex("00200098")  # retries left, no PIN sent
COMMANDS = (
    ("SELECT AP", SELECT_AP),
    ("READ BINARY 256", READ_BINARY),
    ("VERIFY query", VERIFY_QUERY),
)
WARMUP = 20
TUNED = SocketTuning()
UNTUNED = SocketTuning(nodelay=False, quickack=False)


class EchoCard:
    """The floor: answers 9000 to every APDU, with the real card's ATR (same protocol)."""

    def __init__(self, atr: bytes) -> None:
        self._atr = atr

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> bytes:
        return self._atr

    def power_off(self) -> None:
        pass

    def reset(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        return b"\x90\x00"


@dataclass
class Row:
    case: str
    median: float
    p99: float
    floor: float  # the floor median this row is compared with
    untuned_floor: float | None = None  # for untuned rows: the untuned floor median too


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(int(len(ordered) * 0.99) - 1, 0)]


def measure(connection: Any, apdu: bytes, rounds: int) -> list[float]:
    """Microseconds per `connection.transmit(apdu)`, after a warm-up."""
    command = list(apdu)
    for _ in range(min(WARMUP, rounds)):
        connection.transmit(command)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        _, sw1, sw2 = connection.transmit(command)
        samples.append((time.perf_counter_ns() - start) / 1000)
    if sw1 not in (0x90, 0x63):  # 9000, or 63Cx for the retry query
        raise RuntimeError(f"{apdu.hex().upper()} answered {sw1:02X}{sw2:02X}")
    return samples


@contextmanager
def pyscard_connection() -> Iterator[Any]:
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == READER)
    connection = reader.createConnection()
    connection.connect()
    try:
        yield connection
    finally:
        connection.disconnect()
        connection.release()  # its PC/SC context, while pcscd still runs


@contextmanager
def served_in_thread(card: ServedCard, tuning: SocketTuning) -> Iterator[None]:
    """The card in vpcd slot 0 until the block ends; the slot is empty again afterwards."""
    link = VpcdLink(card, port=DEFAULT_PORT, tuning=tuning)
    thread = threading.Thread(target=link.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for(READER, True)
        yield
    finally:
        link.stop()
        thread.join(timeout=10)
        wait_for(READER, False)


Samples = dict[str, list[float]]  # case name -> microseconds per APDU


def time_in_thread(
    samples: Samples, prefix: str, card: ServedCard, tuning: SocketTuning, rounds: int
) -> None:
    """Serve `card` from this process and time each command on one pyscard connection."""
    commands = (("echo", READ_BINARY),) if isinstance(card, EchoCard) else COMMANDS
    with served_in_thread(card, tuning), pyscard_connection() as connection:
        for name, apdu in commands:
            samples.setdefault(f"{prefix}{name}", []).extend(measure(connection, apdu, rounds))


def time_cli(samples: Samples, card_file: Path, rounds: int) -> None:
    """`jpki serve` in a subprocess (tuned, as by default), READ BINARY only."""
    served = harness.ServedCard(card_file)
    try:
        with pyscard_connection() as connection:
            connection.transmit(list(SELECT_AP))
            samples.setdefault("cli", []).extend(measure(connection, READ_BINARY, rounds))
    finally:
        served.stop()


class QuietPcscd(harness.Pcscd):
    """The harness's pcscd without --debug --apdu: logging every APDU would inflate each case."""

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the daemon for its lifetime
        self.process = subprocess.Popen(["pcscd", "--foreground"], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not harness.PCSCD_SOCKET.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pcscd did not start; see {self.log_path}")
            time.sleep(0.02)


def run(arguments: argparse.Namespace, directory: Path) -> list[Row]:
    real = VirtualCard.in_memory(FIXTURE)
    echo = EchoCard(real.atr)
    card_file = directory / "taro.json"
    shutil.copyfile(FIXTURE, card_file)
    samples: Samples = {}
    daemon_class = harness.Pcscd if arguments.pcscd_debug else QuietPcscd
    with daemon_class(directory / "pcscd.log"):
        # Tuned, as `jpki serve` runs: floor, card in a thread, card in `jpki serve`, in turn,
        # over several passes, so a change in the machine's load weighs on all of them alike.
        passes = max(1, min(arguments.passes, arguments.rounds))
        per_pass = max(1, arguments.rounds // passes)
        for _ in range(passes):
            time_in_thread(samples, "", echo, TUNED, per_pass)
            time_in_thread(samples, "card: ", real, TUNED, per_pass)
            time_cli(samples, card_file, per_pass)
        # Nagle and delayed ACKs left on: ~40 ms per APDU, so few rounds and one pass.
        time_in_thread(samples, "untuned ", echo, UNTUNED, arguments.untuned_rounds)
        time_in_thread(samples, "untuned card: ", real, UNTUNED, arguments.untuned_rounds)
    stats = {case: summary(values) for case, values in samples.items()}
    floor, slow_floor = stats["echo"][0], stats["untuned echo"][0]
    names = [name for name, _ in COMMANDS]
    rows = [Row("echo floor (9000)", *stats["echo"], floor)]
    rows += [Row(f"card: {name}", *stats[f"card: {name}"], floor) for name in names]
    rows.append(Row("jpki serve: READ BINARY 256", *stats["cli"], floor))
    rows.append(Row("untuned echo floor", *stats["untuned echo"], floor, slow_floor))
    rows += [
        Row(f"untuned card: {name}", *stats[f"untuned card: {name}"], floor, slow_floor)
        for name in names
    ]
    return rows


def print_table(rows: list[Row]) -> None:
    print(f"{'case':<34} {'median us':>10} {'p99 us':>10} {'x floor':>8} {'x untuned floor':>16}")
    for row in rows:
        slow = f"{row.median / row.untuned_floor:>16.2f}" if row.untuned_floor else ""
        print(
            f"{row.case:<34} {row.median:>10.1f} {row.p99:>10.1f} {row.median / row.floor:>8.2f}"
            f" {slow}".rstrip()
        )
    by_case = {row.case: row for row in rows}
    read = by_case["card: READ BINARY 256"]
    slow_read = by_case["untuned card: READ BINARY 256"]
    ratio = read.median / read.floor
    verdict = "within" if ratio <= 1.5 else "OVER"
    print(
        f"\nServed card READ BINARY: {read.median:.0f} us median = {ratio:.2f}x the echo floor"
        f" ({verdict} the 1.5x goal); socket tuning speeds it up"
        f" {slow_read.median / read.median:.0f}x ({slow_read.median / 1000:.1f} ms untuned)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="timed APDUs per tuned case")
    parser.add_argument(
        "--untuned-rounds", type=int, default=30, help="timed APDUs per untuned case (~40 ms each)"
    )
    parser.add_argument(
        "--passes", type=int, default=3, help="tuned cases alternate over this many passes"
    )
    parser.add_argument(
        "--pcscd-debug", action="store_true", help="run pcscd with --debug --apdu (slower)"
    )
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: it runs its own pcscd in private mount and network namespaces")
    missing = harness.missing_programs()
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run scripts/install-system-packages")
    harness.enter_private_namespaces()
    with tempfile.TemporaryDirectory() as directory:
        rows = run(arguments, Path(directory))
    print_table(rows)


if __name__ == "__main__":
    main()
