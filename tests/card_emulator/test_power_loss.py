"""Power lost at every persistence point of the card: no lost decrement, no corrupt image.

Each case is a real operation on a file-backed copy of the fixture card that reaches one point
(`PersistencePoint`) with a power cut armed there: a VERIFY (wrong and right PIN, counters
rewritten in place or replaced whole), a CHANGE REFERENCE DATA, a RESET RETRY COUNTER with a new
value, the window's new PIN, a certificate renewal, `jpki card settings`. Whatever the client
was talking to sees no answer; then a fresh `VirtualCard.open` of the file must find an image
that loads, a counter never higher than before a wrong VERIFY, the old PIN after a cut PIN
change, the old certificates (and a CA that recorded no new ones) after a cut renewal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from card_emulator.errors import CardFileError, CardImageError, PowerLost
from card_emulator.faults import power_cuts
from card_emulator.state import counters
from card_emulator.state.image import CardImage
from card_emulator.state.pin_reference import PinReference
from card_emulator.state.store import FileStore, PersistencePoint, arm_power_cut, read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import AID
from card_emulator.vocabulary.keys import Certificate
from card_emulator.vocabulary.pins import Pin
from cli.main import main as jpki
from jpki.client.connection import InProcessConnection
from jpki.client.errors import CardRemovedError, WrongPinError
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from jpki.issuer import lifecycle, window
from jpki.issuer.ca import TestCA
from tests.card_emulator.test_admin import admin_in, send
from tests.conftest import CA_DIR, CARDS, FIXTURE_VALID_AT

ROOT = Path(__file__).resolve().parents[2]
AUTH_PIN, NEW_PIN, WRONG_PIN = "1234", "5790", "0000"
LEFTOVERS = ".card.json.*.tmp"


@dataclass
class Bench:
    """A file-backed copy of the fixture card, its CA, and what the cut operation left."""

    path: Path
    ca_dir: Path
    capsys: pytest.CaptureFixture[str]
    compared: list[bytes] = dataclasses.field(default_factory=list)  # PIN comparisons made

    def card(self) -> VirtualCard:
        return VirtualCard.open(self.path)

    def ca(self) -> TestCA:
        return TestCA.load(self.ca_dir)

    def tries_on_disk(self, pin: Pin = Pin.AUTH) -> int:
        return read_image(self.path).contents("jpki").pins[pin.fid].tries_left

    def leftovers(self) -> list[Path]:
        return sorted(self.path.parent.glob(LEFTOVERS))


@pytest.fixture
def bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Bench]:
    path = tmp_path / "card.json"
    shutil.copyfile(CARDS / "taro.json", path)
    os.chmod(path, 0o600)
    shutil.copytree(CA_DIR, tmp_path / "ca")
    made = Bench(path, tmp_path / "ca", capsys)
    matches = PinReference.matches

    def counted(reference: PinReference, candidate: bytes) -> bool:
        made.compared.append(candidate)
        return matches(reference, candidate)

    monkeypatch.setattr(PinReference, "matches", counted)
    yield made
    arm_power_cut(path, None)


def session_for(card: VirtualCard) -> JpkiSession:
    return JpkiSession(ApduProtocol(InProcessConnection(card)))


@contextlib.contextmanager
def reopened(bench: Bench) -> Iterator[JpkiSession]:
    """A fresh power-up of the card file, as the next process would open it."""
    card = bench.card()
    try:
        yield session_for(card)
    finally:
        card.close()


def assert_whole(bench: Bench) -> None:
    """The card file loads (strict format, checksum) with its counters, and the next open
    removed any copy a torn write left."""
    read_image(bench.path)
    with reopened(bench):
        pass
    assert bench.leftovers() == []


def cut_on_the_card(bench: Bench, point: PersistencePoint) -> VirtualCard:
    """The card open, with power-loss armed at `point` through its faults."""
    card = bench.card()
    card.faults.add(f"power-loss={point.value}")
    return card


@contextlib.contextmanager
def cut_in_the_issuer(bench: Bench, point: PersistencePoint) -> Iterator[None]:
    """Power-loss armed for the card file itself: the window's or a renewal's own store of it
    meets the cut (no card is open: they lock the file themselves). It must fire."""
    lines: list[str] = []
    with power_cuts(bench.path, f"power-loss={point.value}", report=lines.append):
        yield
    assert lines == [f"fault 1 (power-loss={point.value}): power lost at {point.value}"]


def no_answer_to(card: VirtualCard, operation: Callable[[JpkiSession], object]) -> None:
    """Run `operation` as a client would: it gets no answer, the card is out of its slot."""
    session = session_for(card)
    session.select(AID.JPKI)
    with pytest.raises(CardRemovedError):
        operation(session)
    assert_cut(card)


def assert_cut(card: VirtualCard) -> None:
    """The armed cut fired, the card lost power and is out of its slot; closed."""
    [fault] = card.faults.active()
    assert (fault.fired, fault.spent) == (1, True)
    kinds = [event.kind for event in card.trace.since(0)]
    assert kinds[-4:] == ["fault", "apdu", "power", "removed"]
    assert not card.inserted
    card.close()


# The cases: one per persistence point and operation ------------------------------------------


def verify_cut(point: PersistencePoint, pin: str) -> Callable[[Bench], None]:
    def case(bench: Bench) -> None:
        no_answer_to(cut_on_the_card(bench, point), lambda s: s.verify_pin(Pin.AUTH, pin))
        assert bench.compared == []  # cut before the comparison: no try bought
        tries = bench.tries_on_disk()
        if point is PersistencePoint.BEFORE_COUNTER_WRITE:
            assert tries == 3  # nothing written, nothing compared
        else:
            assert tries == 2  # the decrement is on disk, even for the right PIN
        assert_whole(bench)
        with reopened(bench) as session:
            assert session.pin_status(Pin.AUTH).tries_left == tries
            session.verify_pin(Pin.AUTH, AUTH_PIN)  # the PIN still works, tries restored
            assert session.pin_status(Pin.AUTH).tries_left == 3

    return case


def older_counters_record(bench: Bench) -> None:
    """A counters file of the older format (no administrator counter): the next counter write
    replaces it whole instead of rewriting it in place."""
    image = read_image(bench.path)
    image.admin = None
    record = counters.encode(image)
    assert record.startswith(counters.MAGIC)
    counters.counters_path(bench.path).write_bytes(record)


def verify_cut_replacing_counters(point: PersistencePoint) -> Callable[[Bench], None]:
    def case(bench: Bench) -> None:
        older_counters_record(bench)
        verify_cut(point, WRONG_PIN)(bench)

    return case


def pin_change_cut(bench: Bench) -> None:
    no_answer_to(
        cut_on_the_card(bench, PersistencePoint.DURING_PIN_CHANGE),
        lambda s: s.change_pin(Pin.AUTH, AUTH_PIN, NEW_PIN),
    )
    assert_whole(bench)
    with reopened(bench) as session:
        session.verify_pin(Pin.AUTH, AUTH_PIN)  # the old value, and only it
        with pytest.raises(WrongPinError):
            session.verify_pin(Pin.AUTH, NEW_PIN)


def reset_retry_counter_cut(bench: Bench) -> None:
    card = cut_on_the_card(bench, PersistencePoint.DURING_PIN_CHANGE)
    admin_in(card, AID.JPKI.value)
    with pytest.raises(PowerLost):  # RESET RETRY COUNTER, new value 5790, no answer
        send(card, "002C029804" + NEW_PIN.encode().hex())
    assert_cut(card)
    assert_whole(bench)
    with reopened(bench) as session:
        session.verify_pin(Pin.AUTH, AUTH_PIN)


def window_reset_cut(bench: Bench) -> None:
    with cut_in_the_issuer(bench, PersistencePoint.DURING_PIN_CHANGE), pytest.raises(PowerLost):
        window.reset_pin(bench.path, "auth", NEW_PIN, at=FIXTURE_VALID_AT)
    assert_torn_copy_left(bench)
    assert_whole(bench)
    with reopened(bench) as session:
        session.verify_pin(Pin.AUTH, AUTH_PIN)
    assert not bench.path.with_name("card.json.history").exists()  # nothing was recorded


def renewal_cut(bench: Bench) -> None:
    with reopened(bench) as session:
        before = session.read_certificate_der(Certificate.AUTH)
    ca = bench.ca()
    recorded = issuance_record(ca)
    try:
        with (
            cut_in_the_issuer(bench, PersistencePoint.DURING_CERTIFICATE_WRITE),
            pytest.raises(PowerLost),
        ):
            lifecycle.renew(bench.path, ca, at=FIXTURE_VALID_AT, force=True)
    finally:
        ca.close()
    assert_torn_copy_left(bench)
    assert_whole(bench)
    with reopened(bench) as session:
        assert session.read_certificate_der(Certificate.AUTH) == before
    ca = bench.ca()
    try:  # the CA's transaction was rolled back: no new certificate, none superseded
        assert issuance_record(ca) == recorded
    finally:
        ca.close()


def issuance_record(ca: TestCA) -> list[tuple[int, object]]:
    return [(entry.serial, entry.revocation) for entry in ca.issued]


def settings_cut(bench: Bench) -> None:
    before = read_image(bench.path).settings
    changed = "warm_reset_keeps_security_state=false"
    with (
        cut_in_the_issuer(bench, PersistencePoint.DURING_IMAGE_WRITE),
        pytest.raises(SystemExit) as exited,
    ):
        jpki(["--card", str(bench.path), "card", "settings", changed])
    assert exited.value.code != 0
    error = bench.capsys.readouterr().err
    assert error.startswith("jpki: error: ") and "power lost" in error
    assert error.count("\n") == 1
    assert_torn_copy_left(bench)
    assert_whole(bench)
    assert read_image(bench.path).settings == before


def assert_torn_copy_left(bench: Bench) -> None:
    """The cut left a partial copy beside the card, which loads as nothing."""
    [torn] = bench.leftovers()
    assert 0 < torn.stat().st_size < bench.path.stat().st_size
    with pytest.raises(CardImageError):
        CardImage.loads(torn.read_bytes())


@dataclass(frozen=True)
class Case:
    point: PersistencePoint
    run: Callable[[Bench], None]


P = PersistencePoint
COUNTER_POINTS = (P.BEFORE_COUNTER_WRITE, P.AFTER_COUNTER_WRITE)
CASES = {
    **{
        f"{which}-verify-{point.value}": Case(point, verify_cut(point, pin))
        for point in COUNTER_POINTS
        for which, pin in (("wrong", WRONG_PIN), ("right", AUTH_PIN))
    },
    **{
        f"counters-replaced-{point.value}": Case(point, verify_cut_replacing_counters(point))
        for point in COUNTER_POINTS
    },
    "change-reference-data": Case(P.DURING_PIN_CHANGE, pin_change_cut),
    "reset-retry-counter": Case(P.DURING_PIN_CHANGE, reset_retry_counter_cut),
    "window-reset-pin": Case(P.DURING_PIN_CHANGE, window_reset_cut),
    "certificate-renewal": Case(P.DURING_CERTIFICATE_WRITE, renewal_cut),
    "card-settings": Case(P.DURING_IMAGE_WRITE, settings_cut),
}


def test_every_persistence_point_is_reached_by_a_case() -> None:
    assert {case.point for case in CASES.values()} == set(PersistencePoint)


@pytest.mark.parametrize("name", CASES)
def test_power_lost_at_a_persistence_point_keeps_the_durability_promise(
    name: str, bench: Bench
) -> None:
    CASES[name].run(bench)


# The same in a real process killed at the point ------------------------------------------------

KILLED_AT_THE_POINT = """
    import os, sys
    from pathlib import Path
    from card_emulator.state.store import PersistencePoint, arm_power_cut
    from card_emulator.transports.memory import VirtualCard

    path, point, command = Path(sys.argv[1]), PersistencePoint(sys.argv[2]), sys.argv[3]
    card = VirtualCard.open(path)
    card.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))
    card.transmit(bytes.fromhex("002000980431323334"))  # the right PIN, for the change
    arm_power_cut(path, lambda reached: reached is point and os._exit(9))
    print(card.transmit(bytes.fromhex(command)).hex())  # never answered
"""
WRONG_VERIFY = "0020009804" + WRONG_PIN.encode().hex()
CHANGE = "0024019804" + NEW_PIN.encode().hex()


@pytest.mark.parametrize(
    ("point", "command", "tries", "pin"),
    [
        (P.BEFORE_COUNTER_WRITE, WRONG_VERIFY, 3, AUTH_PIN),
        (P.AFTER_COUNTER_WRITE, WRONG_VERIFY, 2, AUTH_PIN),
        (P.DURING_PIN_CHANGE, CHANGE, 3, AUTH_PIN),
    ],
    ids=lambda value: value.value if isinstance(value, PersistencePoint) else None,
)
def test_a_process_dying_at_the_point_leaves_the_same(
    bench: Bench, point: PersistencePoint, command: str, tries: int, pin: str
) -> None:
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_AT_THE_POINT), str(bench.path),
         point.value, command],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (child.returncode, child.stdout) == (9, ""), child.stderr
    assert bench.tries_on_disk() == tries
    assert_whole(bench)
    with reopened(bench) as session:
        session.verify_pin(Pin.AUTH, pin)


# The card that lost power ----------------------------------------------------------------------


def test_a_card_that_lost_power_keeps_its_file_and_answers_from_it_when_inserted(
    bench: Bench,
) -> None:
    card = cut_on_the_card(bench, P.AFTER_COUNTER_WRITE)
    session = session_for(card)
    with pytest.raises(CardRemovedError):
        session.verify_pin(Pin.AUTH, WRONG_PIN)
    with pytest.raises(CardFileError, match="in use"):  # its lock was never let go
        FileStore.open(bench.path)
    card.insert()
    assert session_for(card).pin_status(Pin.AUTH).tries_left == 2  # read again from the file
    session_for(card).verify_pin(Pin.AUTH, AUTH_PIN)
    card.close()
    assert bench.tries_on_disk() == 3


def test_a_cut_armed_through_a_link_hits_the_card_file_it_names(bench: Bench) -> None:
    link = bench.path.with_name("link.json")
    link.symlink_to(bench.path)
    reached: list[PersistencePoint] = []

    def cut(point: PersistencePoint) -> bool:
        reached.append(point)
        return True

    arm_power_cut(link, cut)
    with VirtualCard.open(bench.path):  # its own faults answer while it is open
        pass
    with pytest.raises(PowerLost):  # and the cut armed before is back once it is closed
        window.unblock(bench.path, "auth", at=FIXTURE_VALID_AT)
    assert reached == [P.DURING_IMAGE_WRITE]
    assert arm_power_cut(link, None) is cut
    window.unblock(bench.path, "auth", at=FIXTURE_VALID_AT)
    assert reached == [P.DURING_IMAGE_WRITE]
