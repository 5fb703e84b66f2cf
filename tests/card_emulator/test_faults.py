"""Injected faults: the spec grammar, then every kind and matcher against an in-memory card,
as the host library sees them (status words, a removed card, a slow answer), and the trace."""

from __future__ import annotations

import re
import time

import pytest

from card_emulator.errors import CardEmulatorError, FaultSpecError
from card_emulator.faults import FAULT_HELP, Command, Fault, FaultKind, Faults
from card_emulator.state.store import PersistencePoint
from card_emulator.transports.memory import VirtualCard
from card_emulator.transports.vpcd import VpcdLink
from card_emulator.vocabulary.identifiers import AID
from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from card_emulator.vocabulary.sw import SW
from jpki.client.connection import InProcessConnection
from jpki.client.errors import ApduError, CardRemovedError, PinBlockedError, PinRequiredError
from jpki.client.protocol import ApduProtocol
from jpki.client.session import JpkiSession
from tests.card_emulator.test_admin import admin_in, send
from tests.card_emulator.test_vpcd import SELECT_JPKI, FakeVpcd, assert_stops, start
from tests.conftest import CardFactory

AUTH_PIN, SIGN_PIN = "1234", "ABC123"


def session_for(card: VirtualCard) -> JpkiSession:
    return JpkiSession(ApduProtocol(InProcessConnection(card)))


def fault_lines(card: VirtualCard) -> list[str]:
    return [event.text for event in card.trace.since(0) if event.kind == "fault"]


def apdus(card: VirtualCard) -> int:
    return sum(event.kind == "apdu" for event in card.trace.since(0))


# The grammar --------------------------------------------------------------------------------

CANONICAL = [
    ("sw=6a82", "sw=6A82"),
    ("SW=6A82,ins=b0,nth=2", "sw=6A82,ins=B0,nth=2"),
    (" file=000a , sw=6A82 ", "sw=6A82,file=000A"),
    ("remove", "remove"),
    ("remove,after=12", "remove,after=12"),
    ("during=2a,remove", "remove,during=2A"),
    ("ins=20,ap=card-info,remove", "remove,ap=card-info,ins=20"),
    ("latency=50ms,jitter=10ms", "latency=50ms,jitter=10ms"),
    ("latency=1.5s", "latency=1500ms"),
    ("latency=2000ms", "latency=2s"),
    ("latency=0.5ms,ap=jpki", "latency=0.5ms,ap=jpki"),
    ("latency=0ms,jitter=1s", "latency=0ms,jitter=1s"),
    ("power-loss=after-counter-write", "power-loss=after-counter-write"),
    ("power-loss=during-pin-change,ins=24,nth=1", "power-loss=during-pin-change,ins=24,nth=1"),
    ("ap=D392F000260100000001,sw=6982", "sw=6982,ap=jpki"),  # an AID is named canonically
    ("sw=9000,ap=card,after=0", "sw=9000,ap=card,after=0"),
]


@pytest.mark.parametrize(("spec", "canonical"), CANONICAL)
def test_each_spec_has_one_canonical_text_that_parses_back_to_it(spec: str, canonical: str) -> None:
    fault = Fault.parse(spec)
    assert str(fault) == canonical
    assert Fault.parse(str(fault)) == fault


def test_a_parsed_fault_says_what_it_is() -> None:
    fault = Fault.parse("latency=50ms,jitter=10ms,ins=B0,nth=3")
    assert fault.kind is FaultKind.LATENCY
    assert (fault.latency_us, fault.jitter_us, fault.ins, fault.nth) == (50_000, 10_000, 0xB0, 3)
    point = Fault.parse("power-loss=before-counter-write").point
    assert point is PersistencePoint.BEFORE_COUNTER_WRITE


REFUSED = [
    (
        "sw=6A82,foo=1",
        "unknown key 'foo' in 'sw=6A82,foo=1' (kinds: sw=, remove, latency=, "
        "power-loss=; matchers: ap=, ins=, file=, nth=, after=, during=)",
    ),  # fmt: skip
    ("sw=6A82,remove", "two kinds (sw and remove)"),
    ("latency=5ms,power-loss=after-counter-write", "two kinds"),
    ("ins=B0,nth=2", "no kind"),
    ("", "no kind"),
    ("sw=6A82,,ins=B0", "an empty part"),
    ("sw=6A8Z", "sw=6A8Z is not a status word"),
    ("sw=1234", "sw=1234 is not a status word"),
    ("sw=6A820", "not a status word"),
    ("sw=6A82,ins=B", "ins=B is not 2 hex digits"),
    ("sw=6A82,file=0G01", "file=0G01 is not 4 hex digits"),
    ("remove,during=2AA", "during=2AA is not 2 hex digits"),
    ("sw=6A82,nth=0", "nth=0 is not a whole number of at least 1"),
    ("sw=6A82,nth=-2", "nth=-2 is not a whole number"),
    ("remove,after=-1", "after=-1 is not a whole number of at least 0"),
    ("remove,after=two", "after=two"),
    ("sw=6A82,during=2A", "during= goes with remove only"),
    ("sw=6A82,jitter=5ms", "jitter= goes with latency= only"),
    ("latency=50", "latency=50 is not a duration with its unit"),
    ("latency=50us", "latency=50us is not a duration with its unit"),
    ("latency=61s", "latency=61s is longer than 60 s"),
    ("latency=40s,jitter=30s", "latency plus jitter is longer than 60 s"),
    ("latency=0.0001ms", "finer than a microsecond"),
    ("remove=1", "remove takes no value"),
    ("sw=", "sw= needs a value"),
    ("sw=6A82,sw=6A84", "'sw' given twice"),
    (
        "sw=6A82,ap=bank",
        "ap=bank is no application (jpki, card-info, card-face, juki, common, card, or an AID)",
    ),  # fmt: skip
    ("sw=6A82,ap=A0000000031010", "ap=A0000000031010 is no application"),
    (
        "power-loss=during-lunch",
        "unknown persistence point 'during-lunch' in "
        "'power-loss=during-lunch' (points: before-counter-write, after-counter-write, "
        "during-pin-change, during-certificate-write, during-image-write)",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("spec", "message"), REFUSED)
def test_a_bad_spec_is_refused_in_one_line_naming_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as refused:
        Fault.parse(spec)
    text = str(refused.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, CardEmulatorError)


def test_the_help_names_every_kind_matcher_and_point_in_a_few_lines() -> None:
    keys = ["sw=", "remove", "latency=", "jitter=", "power-loss=", "ap=", "ins=", "file=", "nth=",
            "after=", "during="]  # fmt: skip
    for key in keys + [point.value for point in PersistencePoint]:
        assert key in FAULT_HELP
    assert len(FAULT_HELP.splitlines()) <= 12
    assert max(len(line) for line in FAULT_HELP.splitlines()) <= 100
    for example in re.findall(r"  (\S+=\S+|remove,\S+)", FAULT_HELP.splitlines()[-1]):
        Fault.parse(example)


def test_a_power_loss_needs_a_card_with_a_file(card: VirtualCard) -> None:
    with pytest.raises(FaultSpecError, match="needs a file-backed card"):
        card.faults.add("power-loss=before-counter-write")
    assert card.faults.active() == []


# The faults of a card: ids, listing, lifetimes -----------------------------------------------


def test_faults_are_listed_by_id_until_discarded_or_cleared(card: VirtualCard) -> None:
    first = card.faults.add("sw=6A82,ins=B0")
    second = card.faults.add(Fault.parse("latency=1ms"))
    assert (first, second) == (1, 2)
    assert card.faults.to_json() == [
        {"id": 1, "spec": "sw=6A82,ins=B0", "fired": 0, "spent": False},
        {"id": 2, "spec": "latency=1ms", "fired": 0, "spent": False},
    ]
    card.faults.discard(first)
    card.faults.discard(99)  # an unknown id is no error
    assert [active.id for active in card.faults.active()] == [2]
    card.faults.clear()
    assert card.faults.active() == []
    assert card.faults.add("sw=6A82") == 3  # ids are never reused


def test_a_status_word_fault_fires_for_every_match_until_discarded(card: VirtualCard) -> None:
    session = session_for(card)
    fault = card.faults.add("sw=6A82,ins=B0")
    for _ in range(2):
        with pytest.raises(ApduError) as refused:
            session.read_certificate_der(Certificate.AUTH)
        assert refused.value.sw == SW.FILE_NOT_FOUND
    assert card.faults.active()[0].fired >= 2
    assert not card.faults.active()[0].spent
    card.faults.discard(fault)
    assert session.read_certificate_der(Certificate.AUTH)


def test_a_status_word_is_answered_without_running_the_command(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("sw=9000,ins=24")  # CHANGE REFERENCE DATA "succeeds" and changes nothing
    session.change_pin(Pin.AUTH, AUTH_PIN, "5790")
    card.faults.add("sw=6982,ins=20,nth=1")  # a wrong VERIFY that never reaches the PIN
    with pytest.raises(ApduError):
        session.verify_pin(Pin.AUTH, "0000")
    session.verify_pin(Pin.AUTH, AUTH_PIN)  # the old value, every try still there
    assert session.pin_status(Pin.AUTH).tries_left == 3


# Matchers -----------------------------------------------------------------------------------


def test_ins_matches_only_that_instruction(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("sw=6984,ins=20")
    with pytest.raises(PinBlockedError):
        session.verify_pin(Pin.AUTH, AUTH_PIN)
    assert session.read_certificate_der(Certificate.AUTH_CA)  # SELECT, READ BINARY: untouched


@pytest.mark.parametrize("ap", ["jpki", AID.JPKI.value.hex().upper()])
def test_ap_matches_the_application_current_before_the_command(card: VirtualCard, ap: str) -> None:
    session = session_for(card)
    card.faults.add(f"sw=6982,ap={ap},ins=20")
    assert session.pin_status(Pin.CARD_INFO).tries_left == 3  # in the card-info AP
    with pytest.raises(ApduError) as refused:
        session.pin_status(Pin.AUTH)  # its SELECT runs in card-info, the VERIFY in jpki
    assert refused.value.sw == SW.SECURITY_STATUS_NOT_SATISFIED


def test_ap_card_is_the_card_level_before_any_application(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("sw=6A88,ap=card")
    with pytest.raises(ApduError) as refused:
        session.pin_status(Pin.AUTH)  # the first SELECT finds no AP current
    assert refused.value.sw == SW.REFERENCE_DATA_NOT_FOUND
    card.faults.clear()
    assert session.pin_status(Pin.AUTH).tries_left == 3
    card.faults.add("sw=6A88,ap=card")
    assert session.pin_status(Pin.SIGN).tries_left == 5  # in the JPKI AP now: no match


def test_file_matches_a_select_target_and_the_current_ef(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add(f"sw=6A82,file={Certificate.AUTH.fid:04X}")
    with pytest.raises(ApduError) as refused:
        session.read_certificate_der(Certificate.AUTH)
    assert refused.value.sw == SW.FILE_NOT_FOUND
    assert session.read_certificate_der(Certificate.AUTH_CA)
    card.faults.clear()
    card.faults.add(f"sw=6B00,ins=B0,file={Certificate.AUTH_CA.fid:04X}")  # the current EF
    with pytest.raises(ApduError) as refused:
        session.read_certificate_der(Certificate.AUTH_CA)
    assert refused.value.sw == 0x6B00


def test_file_matches_an_ef_named_by_its_short_id(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add(f"sw=6984,file={Pin.AUTH.fid:04X}")  # VERIFY P2 = 80|SFI
    with pytest.raises(PinBlockedError):
        session.verify_pin(Pin.AUTH, AUTH_PIN)
    session.verify_pin(Pin.SIGN, SIGN_PIN)


def test_nth_fires_for_that_matching_command_only(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("sw=6982,ins=20,nth=2")
    assert session.pin_status(Pin.AUTH).tries_left == 3
    with pytest.raises(ApduError) as refused:
        session.pin_status(Pin.AUTH)
    assert refused.value.sw == SW.SECURITY_STATUS_NOT_SATISFIED
    assert session.pin_status(Pin.AUTH).tries_left == 3
    [active] = card.faults.active()
    assert (active.fired, active.spent) == (1, True)


def test_after_counts_the_apdus_answered_since_the_fault_was_added(card: VirtualCard) -> None:
    session = session_for(card)
    session.pin_status(Pin.AUTH)  # before the fault: not counted
    card.faults.add("sw=6982,after=3")
    for _ in range(3):
        assert session.pin_status(Pin.SIGN).tries_left == 5
    for _ in range(2):  # the 4th APDU on, every one
        with pytest.raises(ApduError):
            session.pin_status(Pin.SIGN)


# Removal ------------------------------------------------------------------------------------


def test_remove_alone_pulls_the_card_out_at_once(card: VirtualCard) -> None:
    seen: list[bool] = []
    card.on_presence(seen.append)
    session = session_for(card)
    session.pin_status(Pin.AUTH)
    card.faults.add("remove")
    assert not card.inserted
    assert seen == [False]
    with pytest.raises(CardRemovedError):
        session.pin_status(Pin.AUTH)
    card.insert()
    assert seen == [False, True]
    assert session_for(card).pin_status(Pin.AUTH).tries_left == 3
    assert card.faults.to_json() == [{"id": 1, "spec": "remove", "fired": 1, "spent": True}]


def test_remove_after_n_the_next_apdu_finds_no_card(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("remove,after=3")
    for pin in (Pin.AUTH, Pin.SIGN):  # SELECT, VERIFY, VERIFY: 3 APDUs answered
        session.pin_status(pin)
    assert card.inserted
    with pytest.raises(CardRemovedError):
        session.pin_status(Pin.AUTH)
    assert not card.inserted
    assert apdus(card) == 4  # the 4th reached the slot and got no answer
    assert fault_lines(card) == [
        "fault 1 (remove,after=3): card removed; the command got no answer"
    ]
    card.insert()
    assert session_for(card).pin_status(Pin.AUTH).tries_left == 3  # spent: stays in


def test_remove_during_a_signature_gives_no_answer(card: VirtualCard) -> None:
    session = session_for(card)
    session.verify_pin(Pin.AUTH, AUTH_PIN)
    card.faults.add("remove,during=2A")
    with pytest.raises(CardRemovedError):
        session.sign(Key.AUTH, b"a login challenge")
    assert not card.inserted
    [event] = [e for e in card.trace.since(0) if e.kind == "apdu" and e.command.startswith("802A")]
    assert event.response == ""  # the card signed, and never answered
    card.insert()
    with pytest.raises(PinRequiredError):  # a new power-up: the PIN is to verify again
        session_for(card).sign(Key.AUTH, b"a login challenge")


def test_remove_during_a_pin_change_keeps_the_change(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("remove,during=24")
    with pytest.raises(CardRemovedError):
        session.change_pin(Pin.AUTH, AUTH_PIN, "5790")
    card.insert()
    session_for(card).verify_pin(Pin.AUTH, "5790")  # its durable effect stands


def test_remove_during_a_wrong_verify_keeps_the_decrement(card: VirtualCard) -> None:
    card.faults.add("remove,during=20,nth=1")
    with pytest.raises(CardRemovedError):
        session_for(card).verify_pin(Pin.AUTH, "0000")
    card.insert()
    assert session_for(card).pin_status(Pin.AUTH).tries_left == 2


def test_a_removed_card_refuses_power_and_reset_until_inserted(card: VirtualCard) -> None:
    card.remove()
    connection = InProcessConnection(card)
    with pytest.raises(ConnectionError):
        connection.power_cycle()
    with pytest.raises(ConnectionError):
        card.reset()
    card.insert()
    assert connection.power_cycle() == card.atr


# Latency ------------------------------------------------------------------------------------


def test_latency_delays_each_matching_answer(card: VirtualCard) -> None:
    session = session_for(card)
    session.pin_status(Pin.AUTH)
    card.faults.add("latency=200ms,ins=20")
    started = time.monotonic()
    assert session.pin_status(Pin.AUTH).tries_left == 3
    assert time.monotonic() - started >= 0.2
    session.read_certificate_der(Certificate.AUTH_CA)  # no VERIFY: no delay
    assert fault_lines(card) == ["fault 1 (latency=200ms,ins=20): answer delayed 200.0 ms"]


def test_jitter_stays_within_its_bounds_and_never_below_zero(card: VirtualCard) -> None:
    session = session_for(card)
    card.faults.add("latency=2ms,jitter=3ms")
    for _ in range(30):
        session.pin_status(Pin.AUTH)
    delays = [float(re.findall(r"delayed ([0-9.]+) ms", line)[0]) for line in fault_lines(card)]
    assert len(delays) == 31  # the SELECT too: no matcher, every APDU
    assert all(0.0 <= delay <= 5.0 for delay in delays)


def test_the_delay_of_a_latency_fault_is_seeded_per_faults_object() -> None:
    def delays(seed: int) -> list[str]:
        lines: list[str] = []
        faults = Faults(report=lines.append, seed=seed)
        faults.add("latency=10ms,jitter=10ms")
        for _ in range(5):
            faults.plan(Command("jpki", 0xB0, None))
            faults.finished(answered=True)
        return lines

    assert delays(7) == delays(7)


# The trace ----------------------------------------------------------------------------------


def test_every_fault_and_apdu_is_in_the_trace_with_pins_masked(make_card: CardFactory) -> None:
    card = make_card()
    session = session_for(card)
    card.faults.add("sw=6A82,ins=B0,nth=1")
    with pytest.raises(ApduError):
        session.read_certificate_der(Certificate.AUTH_CA)
    session.verify_pin(Pin.AUTH, "1234")
    session.change_pin(Pin.AUTH, "1234", "5790")
    session.change_pin(Pin.SIGN, "ABC123", "XYZ789")
    admin_in(card, AID.JPKI.value)
    assert send(card, "002C02980438363432") == "9000"  # RESET RETRY COUNTER, new value 8642
    session_for(card).verify_pin(Pin.AUTH, "8642")
    events = card.trace.since(0)
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert "fault 1 (sw=6A82,ins=B0,nth=1): answered 6A82 without running the command" in [
        event.text for event in events if event.kind == "fault"
    ]
    masked = [
        e.command for e in events if e.kind == "apdu" and e.command[2:4] in ("20", "24", "2C")
    ]
    assert "0020009804********" in masked
    assert "002C029804********" in masked
    for event in events:
        if event.command.startswith(("0084", "0082")):
            continue  # a random challenge and the proof made from it: any bytes, by chance
        shown = " ".join((event.command, event.response, event.text))
        for pin in ("1234", "5790", "ABC123", "XYZ789", "8642"):
            assert pin not in shown
            assert pin.encode().hex().upper() not in shown.upper()


def test_trace_since_returns_newer_events_and_waits_for_the_first(card: VirtualCard) -> None:
    trace = card.trace
    last = trace.last_seq
    assert trace.since(last) == []
    started = time.monotonic()
    assert trace.since(last, wait=0.05) == []
    assert time.monotonic() - started >= 0.05
    card.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))
    [event] = trace.since(last, wait=5)
    assert event.to_json() == {
        "seq": last + 1, "time": event.time, "kind": "apdu",
        "command": "00A4040C0AD392F000260100000001", "response": "9000", "text": "", "slot": None,
    }  # fmt: skip


# Through the vpcd link: pcscd sees what a reader would ------------------------------------


def test_a_card_removed_by_a_fault_drops_its_vpcd_link_and_comes_back(card: VirtualCard) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    thread = start(served)
    vpcd.accept()
    vpcd.send(b"\x01")
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    card.faults.add("remove,during=20")
    vpcd.send(bytes.fromhex("0020009800"))  # executed, never answered
    assert vpcd.closed_by_card()
    assert not served.inserted
    card.insert()  # the card's own insertion puts it back in the reader
    vpcd.accept()
    vpcd.send(b"\x01")
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    served.remove()  # and the link's removal pulls the card out
    assert vpcd.closed_by_card()
    assert not card.inserted
    assert_stops(served, thread)
    vpcd.listener.close()


def test_a_status_word_fault_is_answered_through_vpcd(card: VirtualCard) -> None:
    vpcd = FakeVpcd()
    served = VpcdLink(card, "127.0.0.1", vpcd.port)
    thread = start(served)
    vpcd.accept()
    card.faults.add("sw=6A82,ap=card")
    vpcd.send(b"\x01")
    assert vpcd.exchange(SELECT_JPKI) == b"\x6a\x82"
    assert_stops(served, thread)
    vpcd.listener.close()
