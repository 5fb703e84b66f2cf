"""Large fuzz runs: APDUs against the in-memory card, kill -9 tearing, vpcd frames.

    python benchmarks/fuzz.py --apdus N [--seed S] [--card NAME] [--setting NAME=VALUE ...]
    python benchmarks/fuzz.py --kills N [--seed S]
    python benchmarks/fuzz.py --frames N [--cuts C] [--seed S]

Each part runs the same checks as its test (tests/card_emulator/test_fuzz.py, test_tearing.py,
test_vpcd_fuzz.py) at the size asked, prints its rate, and exits 1 with the failure (and how to
replay it) if a rule broke. `--apdus` also replays a failure the suite reported: same seed, card,
settings and count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from card_emulator.state.image import CardSettings  # noqa: E402
from tests.card_emulator.test_fuzz import run_fuzz  # noqa: E402


def fuzz_apdus(args: argparse.Namespace) -> None:
    settings: dict[str, object] = {}
    for item in args.setting:  # true/false, numbers, hex for atr and select_fci, words
        name, _, value = item.partition("=")
        settings[name] = CardSettings.value_of(name, value)
    budget = args.signatures if args.signatures is not None else max(25, args.apdus // 400)
    stats = run_fuzz(args.seed, args.apdus, args.card, settings, budget)
    print(
        f"APDUs: {stats.apdus} in {stats.seconds:.2f} s = {stats.apdus / stats.seconds:,.0f} "
        f"APDUs/s (seed {args.seed}, card {args.card}, {stats.events['signature']} signatures)"
    )
    events = ", ".join(f"{name} {count}" for name, count in sorted(stats.events.items()))
    print(f"  events: {events}")
    top = ", ".join(f"{sw:04X} {count}" for sw, count in stats.sws.most_common(12))
    print(f"  status words: {top}")


def tear(args: argparse.Namespace) -> None:
    from tests.card_emulator.test_tearing import _cached_key_loader, run_tearing

    _cached_key_loader()  # as the test's fixture: the parent parses the card's keys once
    with tempfile.TemporaryDirectory() as directory:
        report = run_tearing(Path(directory), args.seed, args.kills)
    print(report.summary())


def fuzz_frames(args: argparse.Namespace) -> None:
    from tests.card_emulator.test_vpcd_fuzz import run_frames

    report = run_frames(args.seed, args.frames, args.cuts)
    print(report.summary())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apdus", type=int, default=0, help="APDUs against the in-memory card")
    parser.add_argument("--kills", type=int, default=0, help="SIGKILLed card processes")
    parser.add_argument("--frames", type=int, default=0, help="vpcd frames to the transport")
    parser.add_argument(
        "--cuts",
        type=int,
        help="links cut for --frames (default one per 500 frames; each "
        "costs the link's 0.2 s reconnection pause)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--card", default="taro", help="fixture card for --apdus")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="card setting for --apdus, as `jpki card settings` takes it (collation_b_tries=3)",
    )
    parser.add_argument(
        "--signatures",
        type=int,
        help="at most this many RSA signatures (default: one per 400 APDUs, at least 25)",
    )
    args = parser.parse_args()
    if not (args.apdus or args.kills or args.frames):
        parser.error("give --apdus, --kills and/or --frames")
    try:
        if args.apdus:
            fuzz_apdus(args)
        if args.kills:
            tear(args)
        if args.frames:
            fuzz_frames(args)
    except AssertionError as failure:  # FuzzFailure, LinkFailure and the tearing checks
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
