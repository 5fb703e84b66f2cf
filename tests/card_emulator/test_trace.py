"""The card's trace: numbered events, bounded, shared by threads, PIN data never held."""

from __future__ import annotations

import threading
import time

from card_emulator.trace import Trace, TraceEvent
from card_emulator.transports.memory import VirtualCard

VERIFY_1234 = bytes.fromhex("002000980431323334")
CHANGE_TO_5790 = bytes.fromhex("0024018004") + b"5790"


def test_events_are_numbered_in_order_and_read_after_a_number() -> None:
    trace = Trace()
    first = trace.add("removed", text="card removed", slot=2)
    trace.add_apdu(bytes.fromhex("00A4040C02DF01"), b"\x90\x00", slot=2)
    assert first == TraceEvent(1, first.time, "removed", text="card removed", slot=2)
    assert trace.last_seq == 2
    [apdu] = trace.since(1)
    assert apdu.to_json() == {
        "seq": 2, "time": apdu.time, "kind": "apdu", "command": "00A4040C02DF01",
        "response": "9000", "text": "", "slot": 2,
    }  # fmt: skip
    assert trace.since(2) == []


def test_pin_data_is_masked_before_it_is_stored() -> None:
    trace = Trace()
    trace.add_apdu(VERIFY_1234, b"\x90\x00")
    trace.add_apdu(CHANGE_TO_5790, b"\x90\x00")
    trace.add_apdu(bytes.fromhex("002C02980438363432"), b"\x90\x00")  # RESET, new value 8642
    assert [event.command for event in trace.since(0)] == [
        "0020009804********",
        "0024018004********",
        "002C029804********",
    ]
    held = repr(trace.__dict__)  # what the object keeps, not only what it shows
    for value in (b"1234", b"5790", b"8642"):
        assert value.hex() not in held.lower() and repr(value)[2:-1] not in held


def test_the_oldest_events_go_first_once_it_is_full() -> None:
    trace = Trace(max_events=3)
    for number in range(5):
        trace.add("power", text=str(number))
    assert [event.seq for event in trace.since(0)] == [3, 4, 5]
    assert [event.seq for event in trace.since(4)] == [5]


def test_a_reader_waits_for_the_next_event_and_wakes_when_it_comes() -> None:
    trace = Trace()
    threading.Timer(0.1, lambda: trace.add("inserted")).start()
    started = time.monotonic()
    [event] = trace.since(0, wait=30)
    assert event.kind == "inserted"
    assert time.monotonic() - started < 30  # woken by the event, not by the timeout


def test_threads_adding_at_once_get_every_number_once() -> None:
    trace = Trace()

    def add_many() -> None:
        for _ in range(200):
            trace.add_apdu(VERIFY_1234, b"\x63\xc2")

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [event.seq for event in trace.since(0)] == list(range(1, 801))


def test_cards_of_one_server_share_a_trace_with_their_slots(card: VirtualCard) -> None:
    shared = Trace()
    first = VirtualCard(card.engine.store, trace=shared, slot=0)
    second = VirtualCard(card.engine.store, trace=shared, slot=1)
    first.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))
    second.remove()
    second.insert()
    events = shared.since(0)
    assert [(event.slot, event.kind) for event in events] == [
        (0, "apdu"),
        (1, "removed"),
        (1, "inserted"),
    ]
