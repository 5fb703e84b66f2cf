"""APDU round trip through a real pcscd: pyscard -> pcscd -> vpcd -> card, against an echo floor.

    .venv/bin/python benchmarks/pcsc_roundtrip.py [--rounds N] [--passes N]  # --help for more

The benchmark starts its own pcscd in a mount namespace of its own (jpki.testing.pcscd, as the
tests do; without --debug --apdu, whose logging would slow every case), so it never touches a
system pcscd and leaves nothing running.

Cards are served one at a time in vpcd slot 0 by a `VpcdLink` in a forked process: the
floor is an echo card answering as many bytes as the card would (same path, no card logic), then
the real card (taro.json, in memory) with SELECT AP, READ BINARY 256 bytes by short EF id and
the VERIFY retry query, each timed separately, then READ BINARY through a `jpki serve`
subprocess. These tuned cases take turns over a few passes so that a change in the machine's
load hits all alike.
The headline figure is interleaved: one served card that is the echo card for one APDU and the
real card for the next, on one connection, so drift in the machine's speed cancels out.
Floor and card run again with Nagle and delayed ACKs left on (few rounds: ~44 ms each).
One pyscard connection per case; only `connection.transmit` is timed, after a warm-up.
Prints median and p99 in microseconds and each median's ratio to the floor of the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from card_emulator.transports.memory import VirtualCard  # noqa: E402
from card_emulator.transports.vpcd import PORT_VARIABLE, ServedCard, SocketTuning, VpcdLink  # noqa: E402
from jpki.testing.pcscd import SOCKET_VARIABLE, PrivatePcscd, wait_for  # noqa: E402
from tests.pcsc import harness  # noqa: E402
from tests.pcsc.harness import READER  # noqa: E402

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
GOAL = 1.1  # READ BINARY through pcscd against an echo card answering the same bytes
TUNED = SocketTuning()
UNTUNED = SocketTuning(nodelay=False, quickack=False)


class EchoCard:
    """The floor: no card logic, but as many bytes as the card answers (zeros for the Le of a
    case 2 APDU, such as READ BINARY 256), then 9000, with the real card's ATR."""

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
        expected = (apdu[4] or 256) if len(apdu) == 5 else 0
        return bytes(expected) + b"\x90\x00"

    inserted = True  # never removed: the link's presence calls are no-ops

    def remove(self) -> None:
        pass

    def insert(self) -> None:
        pass

    def on_presence(self, callback: object) -> None:
        pass


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


def _serve(card: ServedCard, tuning: SocketTuning) -> None:
    """Child process: serve `card` until SIGTERM."""
    link = VpcdLink(card, port=int(os.environ[PORT_VARIABLE]), tuning=tuning)
    signal.signal(signal.SIGTERM, lambda signum, frame: link.stop())
    link.serve_forever()


@contextmanager
def served_in_process(card: ServedCard, tuning: SocketTuning) -> Iterator[None]:
    """The card in vpcd slot 0, served by a forked process (so it never waits for this one's
    GIL), until the block ends; the slot is empty again afterwards."""
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(card, tuning))
    process.start()
    try:
        wait_for(READER, True)
        yield
    finally:
        process.terminate()
        process.join(timeout=10)
        wait_for(READER, False)


Samples = dict[str, list[list[float]]]  # case name -> per pass, microseconds per APDU


def time_served(
    samples: Samples, prefix: str, card: ServedCard, tuning: SocketTuning, rounds: int
) -> None:
    """Serve `card` from this process and time each command on one pyscard connection."""
    commands = (("echo", READ_BINARY),) if isinstance(card, EchoCard) else COMMANDS
    with served_in_process(card, tuning), pyscard_connection() as connection:
        for name, apdu in commands:
            samples.setdefault(f"{prefix}{name}", []).append(measure(connection, apdu, rounds))


def time_cli(samples: Samples, card_file: Path, rounds: int) -> None:
    """`jpki serve` in a subprocess (tuned, as by default), READ BINARY only."""
    served = harness.ServedCard(card_file)
    try:
        with pyscard_connection() as connection:
            connection.transmit(list(SELECT_AP))
            samples.setdefault("cli", []).append(measure(connection, READ_BINARY, rounds))
    finally:
        served.stop()


class SwitchCard:
    """Serves either the echo card or the real card, as the benchmark says before each APDU
    (through shared memory): the two take turns on one connection, so a drift in the machine's
    speed hits both alike."""

    def __init__(self, echo: EchoCard, real: VirtualCard) -> None:
        self.echo, self.real = echo, real
        self.use_real = multiprocessing.get_context("fork").Value("b", 1, lock=False)

    @property
    def atr(self) -> bytes:
        return self.real.atr

    def power_on(self) -> bytes:
        return self.real.power_on()

    def power_off(self) -> None:
        self.real.power_off()

    def reset(self) -> bytes:
        return self.real.reset()

    def transmit(self, apdu: bytes) -> bytes:
        return (self.real if self.use_real.value else self.echo).transmit(apdu)

    inserted = True
    remove, insert, on_presence = EchoCard.remove, EchoCard.insert, EchoCard.on_presence


def time_interleaved(switch: SwitchCard, rounds: int) -> dict[str, float]:
    """Per command: median of (card time / echo time) over APDU pairs sent back to back, the
    order swapped every round."""
    ratios: dict[str, float] = {}
    with served_in_process(switch, TUNED), pyscard_connection() as connection:
        for name, apdu in COMMANDS:
            pairs = []
            command = list(apdu)
            for round_number in range(rounds):
                timings = {}
                for use_real in (True, False) if round_number % 2 else (False, True):
                    switch.use_real.value = use_real
                    start = time.perf_counter_ns()
                    connection.transmit(command)
                    timings[use_real] = time.perf_counter_ns() - start
                pairs.append(timings[True] / timings[False])
            ratios[name] = statistics.median(pairs)
    return ratios


def run(
    arguments: argparse.Namespace, directory: Path
) -> tuple[list[Row], list[float], dict[str, float]]:
    """The table's rows, the READ BINARY / floor ratio of the medians in each pass, and the
    interleaved card / echo ratios."""
    real = VirtualCard.in_memory(FIXTURE)
    echo = EchoCard(real.atr)
    card_file = directory / "taro.json"
    shutil.copyfile(FIXTURE, card_file)
    samples: Samples = {}
    pcscd = PrivatePcscd(directory / "pcscd", debug=arguments.pcscd_debug)
    os.environ[SOCKET_VARIABLE] = str(pcscd.socket_path)  # before this process's first PC/SC call
    with pcscd:
        os.environ.update(pcscd.environment())  # its vpcd port, for the links and `jpki serve`
        interleaved = time_interleaved(SwitchCard(echo, real), arguments.rounds)
        # Tuned, as `jpki serve` runs: floor, card in a thread, card in `jpki serve`, in turn,
        # over several passes, so a change in the machine's load weighs on all of them alike.
        passes = max(1, min(arguments.passes, arguments.rounds))
        per_pass = max(1, arguments.rounds // passes)
        for _ in range(passes):
            time_served(samples, "", echo, TUNED, per_pass)
            time_served(samples, "card: ", real, TUNED, per_pass)
            time_cli(samples, card_file, per_pass)
        # Nagle and delayed ACKs left on: ~40 ms per APDU, so few rounds and one pass.
        time_served(samples, "untuned ", echo, UNTUNED, arguments.untuned_rounds)
        time_served(samples, "untuned card: ", real, UNTUNED, arguments.untuned_rounds)
    stats = {case: summary([us for run in runs for us in run]) for case, runs in samples.items()}
    floor, slow_floor = stats["echo"][0], stats["untuned echo"][0]
    names = [name for name, _ in COMMANDS]
    rows = [Row("echo floor (same bytes)", *stats["echo"], floor)]
    rows += [Row(f"card: {name}", *stats[f"card: {name}"], floor) for name in names]
    rows.append(Row("jpki serve: READ BINARY 256", *stats["cli"], floor))
    rows.append(Row("untuned echo floor", *stats["untuned echo"], floor, slow_floor))
    rows += [
        Row(f"untuned card: {name}", *stats[f"untuned card: {name}"], floor, slow_floor)
        for name in names
    ]
    pass_ratios = [
        statistics.median(read) / statistics.median(echo)
        for read, echo in zip(samples["card: READ BINARY 256"], samples["echo"], strict=True)
    ]
    return rows, pass_ratios, interleaved


def print_table(rows: list[Row], pass_ratios: list[float], interleaved: dict[str, float]) -> None:
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
    print("\nInterleaved (echo and card take turns on one connection; median of pair ratios):")
    for name, ratio in interleaved.items():
        print(f"  card: {name:<26} {ratio:>6.2f}x the echo floor")
    headline = interleaved["READ BINARY 256"]
    verdict = "within" if headline <= GOAL else "OVER"
    print(
        f"\nServed card READ BINARY: {headline:.2f}x the echo floor, interleaved ({verdict} the"
        f" {GOAL}x goal); separate runs: {read.median / read.floor:.2f}x"
        f" ({min(pass_ratios):.2f}-{max(pass_ratios):.2f}x over {len(pass_ratios)} passes);"
        f" socket tuning speeds it up {slow_read.median / read.median:.0f}x"
        f" ({slow_read.median / 1000:.1f} ms untuned)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="timed APDUs per tuned case")
    parser.add_argument(
        "--untuned-rounds", type=int, default=30, help="timed APDUs per untuned case (~40 ms each)"
    )
    parser.add_argument(
        "--passes", type=int, default=10, help="tuned cases alternate over this many passes"
    )
    parser.add_argument(
        "--pcscd-debug", action="store_true", help="run pcscd with --debug --apdu (slower)"
    )
    arguments = parser.parse_args()
    missing = harness.reader_stack_missing() or PrivatePcscd.missing()
    if missing:
        sys.exit(missing)
    with tempfile.TemporaryDirectory() as directory:
        rows, pass_ratios, interleaved = run(arguments, Path(directory))
    print_table(rows, pass_ratios, interleaved)


if __name__ == "__main__":
    main()
