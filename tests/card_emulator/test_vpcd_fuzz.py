"""Seeded random and mutated vpcd frames against `VpcdLink`, from a loopback socket in vpcd's place.

The frames: fuzzed APDUs (the grammar and mutations of test_fuzz.py), the four controls, unknown
one-byte controls, zero-length frames, random payloads, a 65535-byte frame, frames split across
many writes, floods of hundreds of frames sent before any answer is read, APDUs to a powered-off
card, and links cut mid-header, mid-frame, with answers unread, or reset (RST). A second card that
gets the same APDUs and power events directly (the shadow) says what each answer must be.

Checked: every APDU frame gets exactly one answer frame, of 2..65535 bytes, ending in a status word
the card knows, with the shadow's status word and length; nothing answers power, reset, unknown
controls or empty frames (a GET ATR after each fuzzed frame must be answered next, by the ATR); an
APDU to a powered-off card gets `6F00` and exactly one log line, and no log record anywhere has a
traceback; after a cut link the card reconnects and keeps answering; `stop()` returns promptly.

Larger: `python benchmarks/fuzz.py --frames N --seed S`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from card_emulator.engine import TRACE_LOGGER
from card_emulator.errors import CardPoweredOff
from card_emulator.transports.memory import VirtualCard
from card_emulator.transports.vpcd import VpcdLink
from card_emulator.vocabulary.sw import SW
from tests.card_emulator.test_fuzz import (
    SHA256_DIGEST_INFO,
    VALID_SW,
    Generator,
    Model,
    prepared_image,
)

ATR = bytes.fromhex("3BE000FF8131FE4514")
POWER_OFF, POWER_ON, RESET, GET_ATR = b"\x00", b"\x01", b"\x02", b"\x04"
UNKNOWN_CONTROLS = [bytes([value]) for value in range(256) if value not in (0, 1, 2, 4)]
UNPOWERED = b"unpowered"
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
TIMEOUT = 10.0  # seconds for any answer or reconnection; far above what a healthy link needs
PROMPTLY = 2.0  # seconds for serve_forever to return after stop()
SUITE_FRAMES = 3000
MUTANT_FRAMES = 1000
SUITE_CUTS = 6  # cut links in the suite run; each costs the link's 0.2 s reconnection pause


class LinkFailure(AssertionError):
    """The transport broke a rule; the message says how to replay it."""


class Records(logging.Handler):
    """Log records of the emulator from any thread, as they come."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def warnings(self) -> list[logging.LogRecord]:
        """Warnings and errors, but not the trace's notes on tries a client burns."""
        with self._lock_records:
            return [
                record
                for record in self.records
                if record.levelno >= logging.WARNING and record.name != TRACE_LOGGER
            ]


class FakeVpcd:
    """The listening side of one vpcd slot, on an ephemeral loopback port."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peer: socket.socket | None = None
        self._buffer = b""

    def accept(self) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            self.peer, _ = self.listener.accept()
        except TimeoutError:
            raise LinkFailure("the card did not (re)connect") from None
        self.peer.settimeout(TIMEOUT)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        assert self.peer is not None
        try:
            self.peer.sendall(data)
        except ConnectionError as error:  # only our own cuts may end a link
            raise LinkFailure(f"the card dropped the link ({error})") from None

    def receive(self) -> bytes:
        length = int.from_bytes(self._exactly(2), "big")
        return self._exactly(length)

    def _exactly(self, size: int) -> bytes:
        assert self.peer is not None
        while len(self._buffer) < size:
            try:
                chunk = self.peer.recv(65536)
            except TimeoutError:
                raise LinkFailure(f"no answer within {TIMEOUT} s") from None
            except ConnectionError as error:
                raise LinkFailure(f"the card dropped the link ({error})") from None
            if not chunk:
                raise LinkFailure("the card closed the link")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def cut(self, reset: bool = False) -> None:
        assert self.peer is not None
        if reset:  # RST instead of FIN
            self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.peer.close()
        self.peer = None

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
        self.listener.close()


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


@dataclass
class FrameReport:
    frames: int = 0  # fuzzed frames (not counting the GET ATR sent after each as a check)
    apdus: int = 0
    unpowered: int = 0
    cuts: int = 0
    seconds: float = 0.0
    stop_seconds: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        operations = ", ".join(f"{name} {count}" for name, count in sorted(self.operations.items()))
        return (
            f"frames: {self.frames} in {self.seconds:.2f} s = {rate:,.0f} frames/s "
            f"({self.apdus} APDUs, {self.unpowered} to a powered-off card, {self.cuts} cut "
            f"links; stop() took {self.stop_seconds * 1000:.0f} ms)\n  operations: "
            f"{operations}"
        )


class FrameFuzzer:
    """The vpcd side: sends the frames, predicts the answers with the shadow card, checks."""

    def __init__(self, seed: int, records: Records, cuts: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        image, values = prepared_image("taro", {}, random.Random(seed))
        keys = [key for contents in image.applications.values() for key in contents.keys.values()]
        shadow_image = copy.deepcopy(image, memo={id(key): key for key in keys})  # keys shared
        self.card = VirtualCard.in_memory(image)
        self.shadow = VirtualCard.in_memory(shadow_image)
        self.generator = Generator(self.rng, Model(shadow_image, dict(values)), 20)
        self.records = records
        self.expected_warnings = 0
        self.cuts_left = cuts
        self.report = FrameReport()
        self.vpcd = FakeVpcd()
        self.link = VpcdLink(self.card, "127.0.0.1", self.vpcd.port)
        self.thread = threading.Thread(
            target=self.link.serve_forever, name="vpcd-fuzz", daemon=True
        )
        self.thread.start()
        self.vpcd.accept()

    # what the card must answer
    def expect(self, payload: bytes) -> bytes | None:
        """The answer the shadow gives (None: no answer frame; UNPOWERED: the card has no power)."""
        if not payload:
            return None
        if len(payload) == 1:
            if payload == POWER_OFF:
                self.shadow.power_off()
            elif payload == POWER_ON:
                self.shadow.power_on()
            elif payload == RESET:
                self.shadow.reset()
            elif payload == GET_ATR:
                return self.shadow.atr
            return None
        self.report.apdus += 1
        try:
            answer = self.shadow.transmit(payload)
        except CardPoweredOff:
            self.report.unpowered += 1
            self.expected_warnings += 1
            return UNPOWERED
        if answer[-2:] == b"\x90\x00" and payload[1:2] == b"\x2a":
            self.generator.model.stats.events["signature"] += 1  # keeps the RSA budget
        return answer

    def check(self, payload: bytes, expected: bytes, got: bytes) -> None:
        where = f"frame {payload[:40].hex().upper()}{'…' if len(payload) > 40 else ''}"
        if not 2 <= len(got) <= 0xFFFF:
            raise LinkFailure(f"{where}: an answer of {len(got)} bytes")
        if len(payload) == 1:  # GET ATR
            if got != expected:
                raise LinkFailure(f"{where}: ATR {got.hex()}, expected {expected.hex()}")
            return
        sw = int.from_bytes(got[-2:], "big")
        if sw not in VALID_SW:
            raise LinkFailure(f"{where}: status word {sw:04X} the card does not know")
        if expected == UNPOWERED:
            if got != SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big"):
                raise LinkFailure(f"{where}: a powered-off card answered {got.hex()}")
            return
        if expected[-2:] == b"\x6f\x00":
            raise LinkFailure(f"{where}: the card itself failed (6F00)")
        if (got[-2:], len(got)) != (expected[-2:], len(expected)):
            raise LinkFailure(
                f"{where}: answered {got[-2:].hex()} with {len(got) - 2} bytes, the "
                f"card {expected[-2:].hex()} with {len(expected) - 2}"
            )

    # sending and checking
    def exchange(self, payloads: list[bytes], chunks: list[bytes] | None = None) -> None:
        """Send these frames (as `chunks` if given, else in one write, from another thread when
        large), then read and check the answers, then a GET ATR that must be answered next."""
        expected = [(p, self.expect(p)) for p in payloads]
        expected.append((GET_ATR, self.expect(GET_ATR)))
        data = b"".join(frame(p) for p in payloads) + frame(GET_ATR)
        writer = None
        if chunks is not None:
            for chunk in chunks:
                self.vpcd.send(chunk)
                if self.rng.random() < 0.3:
                    time.sleep(0.0005)
            self.vpcd.send(data[sum(map(len, chunks)) :])
        elif len(data) > 32768:  # both sides could block on full buffers: write from a thread
            writer = threading.Thread(target=self._send_quietly, args=(data,), daemon=True)
            writer.start()
        else:
            self.vpcd.send(data)
        for payload, answer in expected:
            if answer is not None:
                self.check(payload, answer, self.vpcd.receive())
        if writer is not None:
            writer.join(TIMEOUT)
        self.check_log()

    def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(LinkFailure):  # the reading side reports a dropped link
            self.vpcd.send(data)

    def check_log(self) -> None:
        warnings = self.records.warnings()
        if len(warnings) != self.expected_warnings:
            lines = [record.getMessage() for record in warnings[-5:]]
            raise LinkFailure(
                f"{len(warnings)} warning/error log records, expected "
                f"{self.expected_warnings} (one per powered-off APDU): {lines}"
            )
        for record in self.records.records:
            if record.exc_info or "\n" in record.getMessage():
                raise LinkFailure(
                    f"a log record with a traceback or several lines: {record.getMessage()!r}"
                )

    def reconnect(self) -> None:
        """The link was cut on our side: the card loses power and must come back by itself."""
        self.shadow.power_off()
        self.report.cuts += 1
        self.vpcd.accept()

    # the operations
    def apdu(self) -> list[bytes]:
        return [self.generator.next()]

    def run(self, frames: int) -> FrameReport:
        started = time.monotonic()
        rng = self.rng
        operations = [
            ("apdu", 40),
            ("control", 8),
            ("unknown control", 4),
            ("empty frame", 3),
            ("random payload", 4),
            ("65535-byte frame", 1),
            ("split frames", 5),
            ("flood", 1),
            ("powered off", 4),
            ("client session", 5),
            ("cut", 2),
        ]
        names, weights = zip(*operations, strict=True)
        while self.report.frames < frames:
            (name,) = rng.choices(names, weights)
            if name == "cut" and not self.cuts_left:
                continue
            self.report.operations[name] += 1
            if not self.thread.is_alive():
                raise LinkFailure("the link's thread died")
            try:
                self.operation(name)
            except LinkFailure as failure:
                raise LinkFailure(
                    f"seed {self.seed}, operation {name}: {failure}\n"
                    f"replay: python benchmarks/fuzz.py --frames {frames} "
                    f"--seed {self.seed}"
                ) from None
        self.report.seconds = time.monotonic() - started
        return self.report

    def operation(self, name: str) -> None:
        rng = self.rng
        if name == "apdu":
            payloads = self.apdu()
        elif name == "control":
            payloads = [rng.choice((POWER_OFF, POWER_ON, POWER_ON, POWER_ON, RESET, GET_ATR))]
        elif name == "unknown control":
            payloads = [rng.choice(UNKNOWN_CONTROLS)]
        elif name == "empty frame":
            payloads = [b""] * rng.randint(1, 3)
        elif name == "random payload":
            payloads = [rng.randbytes(rng.choice((2, 3, 4, 5, rng.randrange(2, 600))))]
        elif name == "65535-byte frame":
            ins = rng.choice((0xA4, 0x20, 0x2A, 0xB0, 0x84, 0xEE))
            payloads = [
                bytes([0x00, ins, 0x00, 0x80, 0x00])
                + (65528).to_bytes(2, "big")
                + rng.randbytes(65528)
            ]
            if rng.random() < 0.5:
                payloads = [rng.randbytes(65535)]
        elif name == "split frames":
            payloads = [self.generator.next() for _ in range(rng.randint(1, 3))]
            data = b"".join(frame(p) for p in payloads)
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8))))
            chunks = [data[a:b] for a, b in zip([0, *cuts], cuts, strict=False)]
            self.exchange(payloads, chunks)
            self.report.frames += len(payloads)
            return
        elif name == "flood":
            payloads = []
            for _ in range(rng.randint(100, 400)):
                roll = rng.random()
                payloads.append(
                    self.generator.next()
                    if roll < 0.75
                    else rng.choice(
                        (
                            POWER_ON,
                            RESET,
                            GET_ATR,
                            b"",
                            rng.choice(UNKNOWN_CONTROLS),
                            POWER_OFF if roll > 0.98 else POWER_ON,
                        )
                    )
                )
        elif name == "client session":
            payloads = self.client_session()
        elif name == "powered off":
            payloads = [POWER_OFF, *(self.generator.next() for _ in range(rng.randint(1, 3)))]
            payloads += [rng.choice((POWER_ON, RESET))]
        else:
            self.cut()
            return
        self.exchange(payloads)
        self.report.frames += len(payloads)

    def client_session(self) -> list[bytes]:
        """What a host sends: power, AP, a whole certificate in one read, or a signature."""
        rng = self.rng
        certificate = rng.choice(("000A", "000B", "0002", "0001"))
        reads = [
            bytes.fromhex(f"00A4020C02{certificate}"),
            rng.choice((bytes.fromhex("00B0000000"), bytes.fromhex("00B00000000000"))),
        ]
        signing = [
            bytes.fromhex("002000980431323334"),
            bytes.fromhex("802A009733" + SHA256_DIGEST_INFO.hex() + "00" * 32 + "00"),
        ]
        return [POWER_ON, SELECT_JPKI, *rng.choice((reads, reads, signing))]

    def cut(self) -> None:
        """Cut the link: mid-header, mid-frame, right after an APDU (answer unread), or RST."""
        rng = self.rng
        self.cuts_left -= 1
        kind = rng.choice(("mid-header", "mid-frame", "answer unread", "reset"))
        if kind == "mid-header":
            self.vpcd.send(b"\x00")
        elif kind == "mid-frame":
            length = rng.choice((5, 300, 65535))
            self.vpcd.send(length.to_bytes(2, "big") + rng.randbytes(rng.randrange(length)))
        elif kind == "answer unread":
            payload = self.generator.next()
            if len(payload) < 2:
                payload = SELECT_JPKI
            self.expect(payload)  # the link reads the whole frame before our FIN: it is executed
            self.vpcd.send(frame(payload))
        else:
            self.vpcd.send(b"\x01\x00" + rng.randbytes(rng.randrange(0x100)))
        self.vpcd.cut(reset=kind == "reset")
        self.report.operations[f"cut {kind}"] += 1
        self.reconnect()
        self.exchange([POWER_ON])  # as vpcd does on a new link; checked by the GET ATR after it

    def stop(self) -> None:
        started = time.monotonic()
        self.link.stop()
        self.thread.join(timeout=PROMPTLY)
        self.report.stop_seconds = time.monotonic() - started
        self.vpcd.close()
        if self.thread.is_alive():
            raise LinkFailure(f"serve_forever did not return within {PROMPTLY} s of stop()")


def run_frames(seed: int, frames: int, cuts: int | None = None) -> FrameReport:
    """`frames` fuzzed frames through one link; LinkFailure on a broken rule."""
    records = Records()
    logger = logging.getLogger("card_emulator")
    logger.addHandler(records)
    try:
        fuzzer = FrameFuzzer(seed, records, frames // 500 if cuts is None else cuts)
        try:
            report = fuzzer.run(frames)
            fuzzer.exchange([POWER_ON, SELECT_JPKI])  # still answering, on the same link
        finally:
            fuzzer.stop()
        fuzzer.check_log()
        return report
    finally:
        logger.removeHandler(records)


# The suite ---------------------------------------------------------------------------------


def test_fuzzed_frames_never_kill_the_link(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="card_emulator")  # the engine traces every APDU too
    report = run_frames(seed=1, frames=SUITE_FRAMES, cuts=SUITE_CUTS)
    assert report.cuts == SUITE_CUTS
    assert report.unpowered > 0
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
    assert report.stop_seconds < PROMPTLY


def test_an_apdu_to_a_powered_off_card_gets_a_status_word_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="card_emulator")
    records = Records()
    logging.getLogger("card_emulator").addHandler(records)
    try:
        fuzzer = FrameFuzzer(seed=2, records=records, cuts=0)
        try:
            fuzzer.exchange([POWER_OFF, SELECT_JPKI])
            assert fuzzer.report.unpowered == 1
            fuzzer.exchange([POWER_ON, SELECT_JPKI])
        finally:
            fuzzer.stop()
    finally:
        logging.getLogger("card_emulator").removeHandler(records)
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert errors[0].exc_info is None and "\n" not in errors[0].getMessage()
    assert not [record for record in caplog.records if record.exc_info]


# The checks are not vacuous: faults put into the transport are caught -------------------------

ORIGINAL_HANDLE = VpcdLink._handle


def _answers_unknown_controls(self: VpcdLink, message: bytes) -> bytes | None:
    reply = ORIGINAL_HANDLE(self, message)
    return b"\x6d\x00" if len(message) == 1 and message[0] not in (0, 1, 2, 4) else reply


def _traceback_when_unpowered(self: VpcdLink, message: bytes) -> bytes | None:
    if len(message) > 1:
        try:
            return self.card.transmit(message)
        except CardPoweredOff:
            logging.getLogger("card_emulator.transports.vpcd").exception("card failed")
            return b"\x6f\x00"
    return ORIGINAL_HANDLE(self, message)


def _truncates_long_answers(self: VpcdLink, message: bytes) -> bytes | None:
    reply = ORIGINAL_HANDLE(self, message)
    return reply[:256] + reply[-2:] if reply is not None and len(reply) > 258 else reply


def _dies_on_huge_frames(self: VpcdLink, message: bytes) -> bytes | None:
    if len(message) > 60000:
        raise RuntimeError("a frame too large for this transport")
    return ORIGINAL_HANDLE(self, message)


TRANSPORT_MUTANTS = {
    "answers unknown controls": _answers_unknown_controls,
    "traceback for a powered-off card": _traceback_when_unpowered,
    "truncates long answers": _truncates_long_answers,
    "dies on a huge frame": _dies_on_huge_frames,
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the mutant
@pytest.mark.parametrize("mutant", TRANSPORT_MUTANTS)
def test_the_frame_fuzzer_catches_a_planted_fault(
    monkeypatch: pytest.MonkeyPatch, mutant: str
) -> None:
    monkeypatch.setattr(VpcdLink, "_handle", TRANSPORT_MUTANTS[mutant])
    with pytest.raises(LinkFailure):
        run_frames(seed=3, frames=MUTANT_FRAMES, cuts=0)
