"""Per-APDU cost of the in-memory card, against the floor of an APDU the card rejects at once.

    python benchmarks/card_apdu.py [--rounds N]

Prints median and p99 per command, and each median's ratio to the floor (an unknown INS answered
6D00: parse, dispatch, encode). VERIFY is shown in memory and on a file-backed card, where each
VERIFY writes the card image twice with fsync (decrement before comparing, restore after).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from card_emulator.transports.memory import VirtualCard  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "cards" / "taro.json"
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
VERIFY_AUTH = bytes.fromhex("002000980431323334")
DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420") + bytes(32)


def measure(send: Callable[[], bytes], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        send()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds

    memory = VirtualCard.in_memory(FIXTURE)
    memory.transmit(SELECT_JPKI)
    memory.transmit(VERIFY_AUTH)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "card.json"
        shutil.copyfile(FIXTURE, path)
        with VirtualCard.open(path) as durable:
            durable.transmit(SELECT_JPKI)
            read_256 = b"\x00\xb0\x8a\x00\x00"
            read_all = b"\x00\xb0\x8a\x00\x00\x00\x00"
            sign = b"\x80\x2a\x00\x97\x33" + DIGEST_INFO + b"\x00"
            cases: list[tuple[str, Callable[[], bytes], int]] = [
                ("floor: unknown INS -> 6D00", lambda: memory.transmit(b"\x00\xee\0\0"), rounds),
                ("SELECT AP", lambda: memory.transmit(SELECT_JPKI), rounds),
                ("READ BINARY 256 by short EF id", lambda: memory.transmit(read_256), rounds),
                ("READ BINARY whole cert (extended)", lambda: memory.transmit(read_all), rounds),
                ("VERIFY retry query", lambda: memory.transmit(b"\x00\x20\x00\x98"), rounds),
                ("VERIFY right PIN, in memory", lambda: memory.transmit(VERIFY_AUTH), rounds // 10),
                ("VERIFY right PIN, on file", lambda: durable.transmit(VERIFY_AUTH), rounds // 10),
                ("SIGN P1=00 RSA-2048", lambda: memory.transmit(sign), rounds // 10),
            ]
            results = [(name, *measure(send, n)) for name, send, n in cases]
    floor = results[0][1]
    print(f"{'command':<36} {'median us':>10} {'p99 us':>10} {'x floor':>8}")
    for name, median, p99 in results:
        print(f"{name:<36} {median:>10.1f} {p99:>10.1f} {median / floor:>8.1f}")


if __name__ == "__main__":
    main()
