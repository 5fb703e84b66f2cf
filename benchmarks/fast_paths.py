"""The card's fast paths, each figure beside a baseline measured interleaved in the same run.

    .venv/bin/python benchmarks/fast_paths.py [--rounds N]

| figure                               | baseline                                    | goal     |
| SIGN APDU (DigestInfo, key unlocked) | `cryptography` Prehashed sign, same key     | ≥ 0.9×   |
| VERIFY right PIN, file-backed card   | one 64-byte pwrite + fdatasync (the floor)  | ≤ 2 ms   |
| `jpki --help`, whole process         | `python -c pass`                            | ≤ 100 ms |
| `jpki pin status`, whole process     | `python -c pass`                            |          |

"Interleaved" means one sample of the figure, then one of its baseline, and so on, so a change
in the machine's load hits both alike. Medians in milliseconds; "speed ×" is baseline / figure
(≥ 1 means faster than the baseline), "time ×" is figure / baseline.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, utils  # noqa: E402

from card_emulator.state.store import FileStore  # noqa: E402
from card_emulator.transports.memory import VirtualCard  # noqa: E402
from jpki.issuer.ca import TestCA  # noqa: E402
from jpki.issuer.holder import Holder, Sex  # noqa: E402
from jpki.issuer.provision import provision_card  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import issuing  # noqa: E402
from issuing import Row  # noqa: E402

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
VERIFY_AUTH = bytes.fromhex("002000980431323334")
DIGEST = bytes(range(32))
DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420") + DIGEST
SIGN_APDU = b"\x80\x2a\x00\x97\x33" + DIGEST_INFO + b"\x00"


def interleaved(
    figure: Callable[[], object], baseline: Callable[[], object], rounds: int
) -> tuple[float, float]:
    """Medians (ms) of the figure and its baseline, sampled in turn."""
    figures: list[float] = []
    baselines: list[float] = []
    for _ in range(rounds):
        for call, samples in ((figure, figures), (baseline, baselines)):
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(figures), statistics.median(baselines)


def fresh_card(directory: Path) -> Path:
    """A card issued as `jpki card create` issues it today (PIN hash cost included)."""
    shutil.copytree(ROOT / "fixtures" / "ca", directory / "ca")
    holder = Holder(name="試験　太郎", birth_date=datetime.date(1980, 2, 17),
                    sex=Sex.MALE, address="東京都千代田区千代田１番１号",
                    my_number="123456789018")  # fmt: skip
    image = provision_card(TestCA.load(directory / "ca"), holder, "1234", "ABC123")
    path = directory / "card.json"
    FileStore.create(path, image)
    return path


def run(command: list[str]) -> Callable[[], object]:
    return lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)


def card_rows(directory: Path, rounds: int) -> list[Row]:
    path = fresh_card(directory)
    rows = []
    with VirtualCard.open(path) as card:
        card.transmit(SELECT_JPKI)
        card.transmit(VERIFY_AUTH)
        key = card.image.contents("jpki").keys[0x17]

        def library() -> bytes:
            return key.sign(DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

        sign, library_sign = interleaved(lambda: card.transmit(SIGN_APDU), library, rounds)
        speed = library_sign / sign
        rows.append(Row("SIGN APDU, key unlocked", 1000 / sign, "cryptography Prehashed sign",
                        1000 / library_sign, "/s", "≥ 0.9×", speed >= 0.9))  # fmt: skip
        floor_file = directory / "floor"
        floor_file.write_bytes(bytes(64))
        descriptor = os.open(floor_file, os.O_RDWR)

        def floor() -> None:
            os.pwrite(descriptor, bytes(64), 0)
            os.fdatasync(descriptor)

        verify, synced = interleaved(lambda: card.transmit(VERIFY_AUTH), floor, rounds)
        os.close(descriptor)
    rows.append(Row("VERIFY, file-backed card", verify, "64-byte pwrite + fdatasync", synced,
                    "ms", "≤ 2 ms", verify <= 2))  # fmt: skip
    jpki = [sys.executable, "-m", "cli"]
    python = run([sys.executable, "-c", "pass"])
    processes = max(10, rounds // 15)
    help_wall, bare = interleaved(run([*jpki, "--help"]), python, processes)
    rows.append(Row("jpki --help, whole process", help_wall, "python -c pass", bare, "ms",
                    "≤ 100 ms", help_wall <= 100))  # fmt: skip
    status, bare = interleaved(run([*jpki, "--card", str(path), "pin", "status"]), python,
                               processes)  # fmt: skip
    rows.append(Row("jpki pin status, whole process", status, "python -c pass", bare, "ms",
                    "", None))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="samples of each in-process pair")
    parser.add_argument("--quick", action="store_true", help="fewer samples everywhere")
    arguments = parser.parse_args()
    rounds = 60 if arguments.quick else arguments.rounds
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        rows = card_rows(work, rounds)
        rows += issuing.issuer_rows(work, quick=arguments.quick)
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    issuing.show(rows)
    print("Through pcscd (root): sudo .venv/bin/python benchmarks/pcsc_roundtrip.py")


if __name__ == "__main__":
    main()
