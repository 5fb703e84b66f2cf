"""kill -9 at any moment: the card file stays whole, no try comes back, a PIN change is all or none.

A file-backed card (`VirtualCard.open`) runs a seeded script in a child process: SELECT, VERIFY with
the right and wrong PINs (also of the wrong length), retry queries, CHANGE REFERENCE DATA, and
operations that read no certificate (a signature, GET CHALLENGE, the token info), the
administrator's EXTERNAL AUTHENTICATE (wrong tags, and the right proof, which the child computes
from the card's key and challenge) and RESET RETRY COUNTER (unblock, new value, and without the
proof), with warm resets and power cycles. The child prints each answer as it gets it, and is
killed with SIGKILL:

- *pinpointed*: the child stops itself at the n-th file-system step of the script (before or after
  each `os.open`, `os.fsync`, `os.replace`, `os.pwrite`, `os.fdatasync` of a commit, and each PIN
  or administrator-proof comparison) and the parent
  kills it there: these kills land where they are aimed whatever the machine's load;
- *timed*: after a seeded random delay.

From the answers it saw, the parent knows the state after the last answered command and the states
the command in flight may leave (for VERIFY: untouched, decremented, and for the right PIN restored;
for CHANGE: old or new value; for EXTERNAL AUTHENTICATE the same as VERIFY, on the
administrator's counter; for RESET RETRY COUNTER: untouched, or the counter at its maximum, with a
new value the new value first). After each kill, whatever the moment:

- the card file loads (checksum and strict format: never torn);
- a temporary copy a kill left behind does not stop the next open, which removes it;
- both retry counters, the administrator's and both PIN values on disk are one of those allowed
  states: a wrong VERIFY or a failed EXTERNAL AUTHENTICATE never refunds its try, an answered
  `63Cx` is what is on disk, a PIN change leaves exactly one of the old and the new value
  verifying, never neither;
- the next open answers the retry query with the counter on disk, and loads the administrator's.

Only the pinpointed kills are counted for coverage (they are deterministic); timed kills add
random moments on top. Children are forked from one pre-started Python process, so a kill costs
tens of milliseconds, not an interpreter start-up; it also parses the card's RSA keys once (key
parsing is not what is tested here). Larger: `python benchmarks/fuzz.py --kills N --seed S`.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from card_emulator.errors import CardFileError
from card_emulator.state import image as image_module
from card_emulator.state.administrator import AdministratorKey
from card_emulator.state.pin_reference import PinReference
from card_emulator.state.store import FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.administration import administrator_proof

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "cards" / "taro.json"
ATR = "3BE000FF8131FE4514"
SELECT_JPKI = "00A4040C0AD392F000260100000001"
JPKI_AID = bytes.fromhex(SELECT_JPKI[10:])
ADMIN_PROOF = "admin-proof"  # a script line: GET CHALLENGE, then the right proof for it
ADMIN_MAX_TRIES = 15
AUTH, SIGN = 0x18, 0x1B
MAX_TRIES = {AUTH: 3, SIGN: 5}
ALPHABETS = {AUTH: "0123456789", SIGN: "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}
LENGTHS = {AUTH: (4, 4), SIGN: (6, 16)}
ITERATIONS = 2000  # PBKDF2 rounds of the test card's PINs: a real comparison, a short test
CHILD_DEADLINE = 60.0  # seconds any one exchange with the child may take before the test fails
SUITE_KILLS = 64
MUTANT_KILLS = 48
TEMPORARY_GLOB = ".card.json.*.tmp"
PR_SET_PDEATHSIG = 1


# The child side: a pre-started process that forks one card process per kill -------------------


def _cached_key_loader() -> None:
    """Parse each RSA key once per process (OpenSSL's key check can take ~70 ms a key)."""
    original = image_module._load_key
    cache: dict[tuple[Any, ...], Any] = {}

    def load(*args: Any) -> Any:
        if not all(isinstance(arg, str | bool) for arg in args):
            return original(*args)
        if args not in cache:
            cache[args] = original(*args)
        return cache[args]

    image_module._load_key = load  # type: ignore[assignment]


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent goes (Linux): nothing outlives a killed test run."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent went before the request took effect
        os._exit(1)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: whole lines, even when killed


def _stall_forever() -> None:
    while True:
        time.sleep(3600)


class _Stall:
    """Stops the card process (and says where) at the n-th file-system step of one script line:
    before and after each `os.open`, `os.fsync`, `os.replace`, `os.pwrite`, `os.fdatasync`, PIN
    comparison and administrator-proof comparison."""

    def __init__(self, line: int, target: int) -> None:
        self.line, self.target = line, target
        self.current = -1
        self.steps = 0

    def start(self, line: int) -> None:
        self.current, self.steps = line, 0

    def __call__(self, name: str, phase: str) -> None:
        if self.current != self.line:
            return
        if self.steps == self.target:
            _say(f"stall {name} {phase}")
            _stall_forever()
        self.steps += 1


def _install_stall(step: _Stall) -> None:

    def wrap(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            step(name, "before")
            result = original(*args, **kwargs)
            step(name, "after")
            return result

        setattr(owner, name, wrapper)

    for name in ("open", "fsync", "replace", "pwrite", "fdatasync"):
        wrap(os, name)
    wrap(PinReference, "matches")
    wrap(AdministratorKey, "proves")


def _card_process(path: str, request: dict[str, Any]) -> None:
    """One forked card process: open, say ready, run the script, then wait for the kill."""
    _say(f"pid {os.getpid()}")
    stall = _Stall(*request["stall"]) if request["stall"] else None
    try:
        card = VirtualCard.open(path)
        if stall is not None:
            _install_stall(stall)
        _say("ready")
        for index, step in enumerate(request["script"]):
            if stall is not None:
                stall.start(index)
            if step == "reset":
                answer = card.reset()
            elif step == "power-cycle":
                card.power_off()
                answer = card.power_on()
            elif step == ADMIN_PROOF:  # what a window terminal computes, with the card's key
                admin = card.image.admin
                assert admin is not None
                challenge = card.transmit(bytes.fromhex("0084000010"))[:-2]
                proof = administrator_proof(admin.key, challenge, JPKI_AID)
                answer = card.transmit(bytes.fromhex("0082000010") + proof)
            else:
                answer = card.transmit(bytes.fromhex(step))
            _say(f"answer {index} {answer.hex().upper()}")
        _say("done")
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the test
        _say(f"error {error!r}".replace("\n", " "))
    _stall_forever()  # only SIGKILL ends a card process: its pid stays valid until then


def zygote_main() -> None:
    """Read one request per line; fork a card process for it, reap it once killed, say so."""
    path, mutant, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _die_with_parent(parent)
    if mutant:
        MUTANTS[mutant]()
    _cached_key_loader()
    read_image(Path(path))  # parses the keys (the same in every test card) before any fork
    for line in sys.stdin:
        request = json.loads(line)
        zygote = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                _die_with_parent(zygote)
                _card_process(request["path"], request)
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        _say(f"reaped {status}")


class Zygote:
    """The parent's handle on the pre-started process."""

    def __init__(self, card: Path, mutant: str | None = None) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.card_emulator.test_tearing import zygote_main; zygote_main()",
                str(card),
                mutant or "",
                str(os.getpid()),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        self._buffer = b""

    def request(self, path: Path, script: list[str], stall: tuple[int, int] | None) -> None:
        assert self.process.stdin is not None
        request = {"path": str(path), "script": script, "stall": stall}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()

    def line(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError("the card process said nothing before the deadline")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise AssertionError(f"the zygote died (exit {self.process.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# The parent side: scripts, what they may leave on disk, and the checks ------------------------


@dataclass(frozen=True)
class Disk:
    """What matters on disk: both JPKI retry counters, which value each PIN has, and the
    administrator's counter."""

    tries: tuple[tuple[int, int], ...]  # ((fid, tries), ...)
    values: tuple[tuple[int, str], ...]
    admin: int = ADMIN_MAX_TRIES

    def get_tries(self, fid: int) -> int:
        return dict(self.tries)[fid]

    def value(self, fid: int) -> str:
        return dict(self.values)[fid]

    def with_tries(self, fid: int, tries: int) -> Disk:
        return replace(self, tries=tuple((f, tries if f == fid else t) for f, t in self.tries))

    def with_value(self, fid: int, value: str) -> Disk:
        return replace(self, values=tuple((f, value if f == fid else v) for f, v in self.values))

    def with_admin(self, tries: int) -> Disk:
        return replace(self, admin=tries)


@dataclass
class Step:
    """One script line: its APDU (or reset/power-cycle), its expected answer, and the disk states
    it may leave if the card process dies during it."""

    line: str
    kind: str
    expect_sw: str
    expect_data: int  # bytes of data expected with the SW
    during: tuple[Disk, ...]
    after: Disk


def _apdu(header: str, data: str = "") -> str:
    raw = data.encode()
    return header + (f"{len(raw):02X}" + raw.hex().upper() if raw else "")


class Script:
    """A seeded script and, step by step, what the card must answer and may leave on disk."""

    def __init__(self, rng: random.Random, disk: Disk) -> None:
        self.rng = rng
        self.steps: list[Step] = []
        self.disk = disk
        self.verified: set[int] = set()
        self.administrator = False  # the right proof given in this AP
        self._select()
        for _ in range(rng.randint(4, 10)):
            rng.choice(
                (
                    self._verify,
                    self._verify,
                    self._verify,
                    self._change,
                    self._change,
                    self._query,
                    self._other,
                    self._power,
                    self._admin_wrong,
                    self._admin_reset,
                    self._admin_reset,
                )
            )()

    def _add(
        self,
        line: str,
        kind: str,
        sw: str,
        data: int = 0,
        during: tuple[Disk, ...] = (),
        after: Disk | None = None,
    ) -> None:
        after = after or self.disk
        self.steps.append(Step(line, kind, sw, data, (self.disk, *during, after), after))
        self.disk = after

    def _select(self) -> None:
        self._add(SELECT_JPKI, "select", "9000")

    def _value(self, fid: int, valid: bool = True) -> str:
        low, high = LENGTHS[fid]
        length = self.rng.randint(low, high) if valid else self.rng.choice((low - 1, high + 1))
        while True:
            value = "".join(self.rng.choice(ALPHABETS[fid]) for _ in range(length))
            if value != self.disk.value(fid):
                return value

    def _verify(self, fid: int | None = None, right: bool | None = None) -> None:
        fid = fid or self.rng.choice((AUTH, AUTH, SIGN))
        right = self.rng.random() < 0.5 if right is None else right
        value = self.disk.value(fid) if right else self._value(fid, self.rng.random() < 0.8)
        line = _apdu(f"002000{0x80 | fid:02X}", value)
        tries = self.disk.get_tries(fid)
        if tries == 0:
            self._add(line, "verify blocked", "6984")
            return
        decremented = self.disk.with_tries(fid, tries - 1)
        if right:
            self.verified.add(fid)
            self._add(
                line,
                "verify right",
                "9000",
                during=(decremented,),
                after=self.disk.with_tries(fid, MAX_TRIES[fid]),
            )
        else:
            self.verified.discard(fid)
            self._add(line, "verify wrong", f"63C{tries - 1}", after=decremented)

    def _change(self) -> None:
        fid = self.rng.choice((AUTH, SIGN))
        if self.rng.random() < 0.8:
            self._verify(fid, right=True)
        valid = self.rng.random() < 0.9
        new = self._value(fid, valid)
        line = _apdu(f"002401{0x80 | fid:02X}", new)
        if self.disk.get_tries(fid) == 0:
            self._add(line, "change blocked", "6984")
        elif fid not in self.verified:
            self._add(line, "change unverified", "6982")
        elif not valid:
            self._add(line, "change refused", "6A80")
        else:
            self._add(line, "change", "9000", after=self.disk.with_value(fid, new))

    def _query(self) -> None:
        fid = self.rng.choice((AUTH, SIGN))
        self._add(f"002000{0x80 | fid:02X}", "query", f"63C{self.disk.get_tries(fid):X}")

    def _other(self) -> None:
        kind = self.rng.choice(("sign", "challenge", "token"))
        if kind == "sign":
            digest_info = "3031300D060960864801650304020105000420" + self.rng.randbytes(32).hex()
            signs = AUTH in self.verified
            self._add(
                f"802A009733{digest_info}00",
                "sign",
                "9000" if signs else "6982",
                256 if signs else 0,
            )
        elif kind == "challenge":
            self._add("0084000008", "challenge", "9000", 8)
        else:
            self._add("00B0860020", "token info", "9000", 32)

    def _power(self) -> None:
        if self.rng.random() < 0.5:
            self._add("reset", "reset", ATR)  # the security state survives (card setting)
        else:
            self._add("power-cycle", "power cycle", ATR)
            self.verified.clear()
        self.administrator = False  # the administrator state survives neither
        self._select()  # both leave the MF current

    def _admin_wrong(self) -> None:
        """A challenge, then a wrong tag: the administrator's try is spent before comparing."""
        self._add("0084000010", "challenge", "9000", 16)
        line = "0082000010" + self.rng.randbytes(16).hex().upper()
        self.administrator = False
        if self.disk.admin == 0:
            self._add(line, "admin blocked", "6984")
        else:
            tries = self.disk.admin - 1
            self._add(line, "admin wrong", f"63C{tries:X}", after=self.disk.with_admin(tries))

    def _admin_proof(self) -> None:
        if self.disk.admin == 0:
            self._add(ADMIN_PROOF, "admin blocked", "6984")
            return
        self.administrator = True
        self._add(
            ADMIN_PROOF,
            "admin right",
            "9000",
            during=(self.disk.with_admin(self.disk.admin - 1),),
            after=self.disk.with_admin(ADMIN_MAX_TRIES),
        )

    def _admin_reset(self) -> None:
        """The window: the proof (mostly), then an unblock or a new value of a JPKI secret."""
        targets = [self.rng.choice((AUTH, SIGN)) for _ in range(self.rng.randint(1, 2))]
        if self.rng.random() < 0.8:  # a holder who got it wrong first: the reset restores tries
            self._verify(targets[0], right=False)
        if self.rng.random() < 0.85:
            self._admin_proof()
        for fid in targets:
            new_value = self.rng.random() < 0.5
            if new_value:
                new = self._value(fid)
                line = _apdu(f"002C02{0x80 | fid:02X}", new)
            else:
                line = f"002C03{0x80 | fid:02X}"
            if not self.administrator:
                self._add(line, "reset refused", "6982")
                continue
            self.verified.discard(fid)  # a reset does not verify: the holder VERIFYs afterwards
            restored = self.disk.with_tries(fid, MAX_TRIES[fid])
            if new_value:
                # The image (new value) is written before the counters file.
                valued = self.disk.with_value(fid, new)
                self._add(
                    line,
                    "reset new value",
                    "9000",
                    during=(valued,),
                    after=restored.with_value(fid, new),
                )
            else:
                self._add(line, "reset unblock", "9000", after=restored)

    @property
    def lines(self) -> list[str]:
        return [step.line for step in self.steps]


def disk_state(path: Path, candidates: dict[int, set[str]]) -> Disk:
    """Load the card file (raises if torn) and find which candidate value each PIN has."""
    image = read_image(path)
    pins = image.contents("jpki").pins
    values = []
    for fid in (AUTH, SIGN):
        matching = [value for value in sorted(candidates[fid]) if pins[fid].matches(value.encode())]
        assert len(matching) == 1, f"PIN {fid:04X} has {len(matching)} of the values {candidates}"
        values.append((fid, matching[0]))
    assert image.admin is not None, "the card lost its administrator key"
    tries = tuple((fid, pins[fid].tries_left) for fid in (AUTH, SIGN))
    return Disk(tries, tuple(values), image.admin.tries_left)


def make_card(path: Path) -> Disk:
    image = read_image(FIXTURE)
    pins = image.contents("jpki").pins
    values = {AUTH: "1234", SIGN: "ABC123"}
    for fid, value in values.items():
        pins[fid] = PinReference.create(value.encode(), MAX_TRIES[fid], iterations=ITERATIONS)
    assert image.admin is not None, "the fixture card has no administrator key"
    FileStore.create(path, image)  # creates the directory too
    return Disk(tuple((fid, MAX_TRIES[fid]) for fid in values), tuple(values.items()))


@dataclass
class TearingReport:
    kills: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)  # pinpointed kills only
    timed: Counter[str] = field(default_factory=Counter)
    stalls: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        lines = [
            f"kills: {self.kills} in {self.seconds:.2f} s = {self.kills / self.seconds:.1f} kills/s"
        ]
        lines += [
            "  pinpointed: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        ]
        lines += ["  timed: " + ", ".join(f"{k} {v}" for k, v in sorted(self.timed.items()))]
        lines += ["  stopped at: " + ", ".join(f"{k} {v}" for k, v in sorted(self.stalls.items()))]
        return "\n".join(lines)


def _classify(step: Step | None, before: Disk, disk: Disk) -> str:
    if step is None:
        return "script finished"
    if disk == before:
        return f"{step.kind}: nothing written yet"
    if step.kind == "verify wrong":
        return "verify wrong: decremented, unanswered"
    if step.kind == "verify right":
        restored = disk == step.after
        return "verify right: " + (
            "restored, unanswered" if restored else "decremented, not restored"
        )
    if step.kind == "change":
        return "change: new value, unanswered"
    if step.kind == "admin wrong":
        return "admin wrong: decremented, unanswered"
    if step.kind == "admin right":
        restored = disk == step.after
        return "admin right: " + (
            "restored, unanswered" if restored else "decremented, not restored"
        )
    if step.kind == "reset unblock":
        return "reset unblock: restored, unanswered"
    if step.kind == "reset new value":
        done = disk == step.after
        return "reset new value: " + ("done, unanswered" if done else "new value, counter not yet")
    return f"{step.kind}: changed"  # not allowed: caught by the during check


# File-system steps of one script line, from the engine's writes: a counters write is 4 (before
# and after pwrite and fdatasync; 2 for a restore, which is not synced), an image commit 10
# (open, fsync, replace of the copy; open and fsync of the directory) plus a counters write,
# a comparison 2. EXTERNAL AUTHENTICATE writes as VERIFY does; an unblock is one counters write.
PINPOINT_STEPS = {
    "verify wrong": 6,
    "verify right": 8,
    "change": 14,
    "admin wrong": 6,
    "admin right": 8,
    "reset unblock": 4,
    "reset new value": 14,
}


class _Chain:
    """A card file and the seeded randomness of one kind of kill, apart from the other kind: the
    pinpointed chain then does not depend on where the timed kills happened to land."""

    def __init__(self, directory: Path, seed: int, kind: str) -> None:
        self.path = directory / kind / "card.json"
        self.rng = random.Random(f"{seed}-{kind}")
        self.disk = make_card(self.path)
        self.kind = kind


def run_tearing(directory: Path, seed: int, kills: int, mutant: str | None = None) -> TearingReport:
    """`kills` killed card processes (alternately pinpointed and timed, each kind on its own card
    file; only pinpointed with a mutant); AssertionError on a broken rule."""
    chains = [_Chain(directory, seed, kind) for kind in ("pinpointed", "timed")]
    report = TearingReport()
    aimed: Counter[str] = Counter()  # pinpointed kills per kind of line
    steps_left: dict[str, list[int]] = {}  # per kind, its steps not aimed at yet this round
    per_line = 0.01  # seconds per script line, measured on the scripts that run to the end
    zygote = Zygote(chains[0].path, mutant)
    started = time.monotonic()
    try:
        for trial in range(kills):
            chain = chains[0 if trial % 2 == 0 or mutant is not None else 1]
            rng = chain.rng
            script = Script(rng, chain.disk)
            stall = delay = None
            if chain.kind == "pinpointed":  # a line that writes, and one of its file-system steps
                writing = [i for i, s in enumerate(script.steps) if s.kind in PINPOINT_STEPS]
                if writing:  # of the kinds in this script, one the kills have landed in least
                    fewest = min(aimed[script.steps[i].kind] for i in writing)
                    writing = [i for i in writing if aimed[script.steps[i].kind] == fewest]
                line = rng.choice(writing) if writing else len(script.steps) - 1
                kind = script.steps[line].kind
                aimed[kind] += 1
                if not steps_left.get(kind):  # every step of a kind once, in a seeded order
                    count = PINPOINT_STEPS.get(kind, 1)
                    steps_left[kind] = rng.sample(range(count), count)
                stall = (line, steps_left[kind].pop())
                context = f"seed {seed} kill {trial} (stop at step {stall[1]} of line {line})"
            else:
                delay = rng.uniform(0, 0.8 * per_line * len(script.steps))
                context = f"seed {seed} kill {trial} (after {delay * 1000:.1f} ms)"
            context += f" script {script.lines}"
            chain.disk, (duration, outcome) = _one_kill(
                zygote, chain.path, script, stall, delay, context, report
            )
            if duration is not None:
                per_line = 0.8 * per_line + 0.2 * duration / len(script.steps)
            (report.outcomes if stall else report.timed)[outcome] += 1
            chain.disk = _office(chain.path, chain.disk, rng)
            report.kills += 1
    finally:
        zygote.close()
    report.seconds = time.monotonic() - started
    return report


def _one_kill(
    zygote: Zygote,
    path: Path,
    script: Script,
    stall: tuple[int, int] | None,
    delay: float | None,
    context: str,
    report: TearingReport,
) -> tuple[Disk, tuple[float | None, str]]:
    deadline = time.monotonic() + CHILD_DEADLINE
    zygote.request(path, script.lines, stall)
    first = zygote.line(deadline)
    assert first.startswith("pid "), f"{context}: {first}"
    pid = int(first.split()[1])
    lines: list[str] = []
    try:
        ready = zygote.line(deadline)
        assert ready == "ready", f"{context}: {ready}"
        opened = time.monotonic()
        if delay is None:  # pinpointed: run until the child stops itself (or finishes)
            while not (line := zygote.line(deadline)).startswith(("stall", "done", "error")):
                lines.append(line)
            lines.append(line)
        else:
            time.sleep(delay)
    finally:
        os.kill(pid, signal.SIGKILL)
    while not (line := zygote.line(deadline)).startswith("reaped"):
        lines.append(line)
    assert line == f"reaped {signal.SIGKILL}", f"{context}: the card process ended with {line}"
    duration = time.monotonic() - opened if "done" in lines else None
    errors = [line for line in lines if line.startswith("error")]
    assert not errors, f"{context}: the card process failed: {errors}"
    stalled = [" ".join(line.split()[1:]) for line in lines if line.startswith("stall")]
    report.stalls.update(stalled)
    answers = [line.split() for line in lines if line.startswith("answer")]

    # Every answer the card gave is the one the script's state implies.
    for index, (_, number, response) in enumerate(answers):
        step = script.steps[index]
        assert int(number) == index, f"{context}: answers out of order"
        data, sw = response[:-4], response[-4:]
        ok = (
            response == ATR
            if step.line in ("reset", "power-cycle")
            else (sw == step.expect_sw and len(data) // 2 == step.expect_data)
        )
        assert ok, (
            f"{context}: step {index} {step.kind} answered {response[-4:]}, expected "
            f"{step.expect_sw} with {step.expect_data} bytes"
        )

    # What the disk may hold: the state after the last answer, or one the next step may leave.
    answered = len(answers)
    in_flight = script.steps[answered] if answered < len(script.steps) else None
    before = script.steps[answered - 1].after if answered else script.steps[0].during[0]
    allowed = in_flight.during if in_flight else (before,)
    candidates = {fid: {state.value(fid) for state in allowed} for fid in (AUTH, SIGN)}
    leftovers = sorted(p.name for p in path.parent.glob(TEMPORARY_GLOB))
    try:
        disk = disk_state(path, candidates)
    except CardFileError as error:
        raise AssertionError(f"{context}: the card file does not load: {error}") from None
    assert disk in allowed, f"{context}: on disk {disk}, allowed {allowed}"
    for fid in (AUTH, SIGN):  # spelled out, as the rules say it
        if in_flight is not None and in_flight.kind == "verify wrong":
            assert disk.get_tries(fid) <= before.get_tries(fid), f"{context}: a try came back"
    if in_flight is not None and in_flight.kind != "admin right":
        assert disk.admin <= before.admin, f"{context}: an administrator try came back"
    if stalled and stalled[0].startswith(("matches", "proves")) and in_flight is not None:
        # Stopped inside the PIN or proof comparison: its try must already be spent on disk.
        assert disk != before, f"{context}: the PIN was being compared with no try spent on disk"
    outcome = _classify(in_flight, before, disk)
    if leftovers:
        outcome += " (temporary copy left)"

    # The next open works, clears the leftovers, and answers the counters on disk.
    with VirtualCard.open(path) as card:
        assert not list(path.parent.glob(TEMPORARY_GLOB)), f"{context}: leftovers stayed"
        assert card.transmit(bytes.fromhex(SELECT_JPKI)) == b"\x90\x00"
        for fid in (AUTH, SIGN):
            query = card.transmit(bytes([0x00, 0x20, 0x00, 0x80 | fid]))
            assert query == bytes([0x63, 0xC0 | disk.get_tries(fid)]), f"{context}: {query.hex()}"
        assert card.image.admin is not None and card.image.admin.tries_left == disk.admin
    return disk, (duration, outcome)


def _office(path: Path, disk: Disk, rng: random.Random) -> Disk:
    """The municipal office unblocks a blocked PIN, and the issuing side a blocked administrator,
    half the time (so blocked cards get tested)."""
    for fid in (AUTH, SIGN):
        if disk.get_tries(fid) == 0 and rng.random() < 0.5:
            store = FileStore.open(path)
            try:
                store.image.contents("jpki").pins[fid].tries_left = MAX_TRIES[fid]
                store.commit()
            finally:
                store.close()
            disk = disk.with_tries(fid, MAX_TRIES[fid])
    if disk.admin == 0 and rng.random() < 0.5:
        store = FileStore.open(path)
        try:
            assert store.image.admin is not None
            store.image.admin.restore()
            store.commit_counters()
        finally:
            store.close()
        disk = disk.with_admin(ADMIN_MAX_TRIES)
    return disk


# Faults the test must catch: a VERIFY that compares before it spends the try, a card file
# rewritten in place.


def _compare_before_decrement() -> None:
    from card_emulator.applications.model import PinFile
    from card_emulator.engine import CardEngine, StatusError
    from card_emulator.vocabulary.sw import retries_left_sw

    def verify(self: CardEngine, command: Any) -> bytes:
        pin_file = self._referenced(command.p2, PinFile)
        reference = self._contents().pins[pin_file.fid]
        if not command.data:
            raise StatusError(retries_left_sw(reference.tries_left))
        if reference.blocked:
            raise StatusError(0x6984)
        if reference.matches(command.data):
            reference.tries_left = pin_file.rule.max_tries
            self.store.commit()
            self._verified.add(pin_file.fid)
            return b""
        reference.tries_left -= 1
        self.store.commit()
        raise StatusError(retries_left_sw(reference.tries_left))

    CardEngine._verify = verify  # type: ignore[method-assign]


def _rewrite_in_place() -> None:
    from card_emulator.state import store

    def in_place(path: Path, data: bytes) -> None:  # as `path.write_bytes(data)`, in two writes
        with open(path, "wb") as handle:
            handle.write(data[:-64])
            handle.flush()
            os.fsync(handle.fileno())
            handle.write(data[-64:])
            handle.flush()
            os.fsync(handle.fileno())

    store._replace_image = in_place


def _admin_compare_before_decrement() -> None:
    from card_emulator.engine import CardEngine, StatusError
    from card_emulator.vocabulary.sw import retries_left_sw

    def external_authenticate(self: CardEngine, command: Any) -> bytes:
        challenge, self._challenge = self._challenge, None
        admin = self.store.image.admin
        if challenge is None or admin is None or self._current_df is None:
            raise StatusError(0x6985)
        if admin.blocked:
            raise StatusError(0x6984)
        if admin.proves(challenge, self._current_df.aid, command.data):
            admin.restore()
            self.store.commit_counters()
            self._administrator = True
            return b""
        admin.tries_left -= 1
        self.store.commit_counters()
        raise StatusError(retries_left_sw(admin.tries_left))

    CardEngine._external_authenticate = external_authenticate  # type: ignore[method-assign]


MUTANTS = {
    "compare-first": _compare_before_decrement,
    "in-place": _rewrite_in_place,
    "admin-compare-first": _admin_compare_before_decrement,
}


# The suite ---------------------------------------------------------------------------------


@pytest.fixture
def fast_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The parent's card loads parse the keys once, like the children's."""
    monkeypatch.setattr(image_module, "_load_key", image_module._load_key)  # restored after
    _cached_key_loader()
    yield


# Seen in every pinpointed run of this size (deterministic: the child stops where it is told).
MUST_SEE = (
    "verify wrong: decremented, unanswered",
    "verify right: decremented, not restored",
    "change: nothing written yet",
    "change: new value, unanswered",
    "admin wrong: decremented, unanswered",
    "admin right: decremented, not restored",
    "reset unblock: restored, unanswered",
    "reset new value: new value, counter not yet",
)


def test_kill_9_at_any_moment_leaves_a_whole_card_and_no_refunded_try(
    tmp_path: Path, fast_keys: None
) -> None:
    report = run_tearing(tmp_path, seed=1, kills=SUITE_KILLS)
    assert report.kills == SUITE_KILLS
    seen = {outcome.removesuffix(" (temporary copy left)") for outcome in report.outcomes}
    missing = [outcome for outcome in MUST_SEE if outcome not in seen]
    assert not missing, f"pinpointed kills never landed at {missing}:\n{report.summary()}"
    assert any("temporary copy left" in outcome for outcome in report.outcomes), report.summary()


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_tearing_check_catches_a_planted_fault(
    tmp_path: Path, fast_keys: None, mutant: str
) -> None:
    with pytest.raises(AssertionError, match="no try spent|does not load"):
        run_tearing(tmp_path, seed=2, kills=MUTANT_KILLS, mutant=mutant)
