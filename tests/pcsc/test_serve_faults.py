"""Every kind of fault, armed from the command line (`jpki serve --fault SPEC`) and from the
control API (`jpki control fault add SPEC`), as pyscard and OpenSC's pkcs11-tool see it through
a real pcscd: a forced status word, latency with and without jitter, the card pulled out after
n APDUs and in the middle of a signature, power lost just after a retry counter is written.
Each fault is in `jpki control trace`, and no trace read shows a PIN.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from card_emulator.vocabulary.identifiers import JpkiFile
from jpki.testing.pcscd import PrivatePcscd, wait_for
from tests.conftest import AUTH_PIN
from tests.pcsc.harness import READER, SECOND_READER, ServedCard
from tests.pcsc.test_control import (
    READ_BINARY,
    RETRY_QUERY,
    SELECT_JPKI,
    WRONG_AUTH_PIN,
    select_ef,
    trace_events,
    verify,
)
from tests.pcsc.test_opensc import AUTH_TOKEN, find_pkcs11_module, list_slots, pkcs11_sign
from tests.pcsc.test_whole_card import connected

pytestmark = pytest.mark.reader_stack

SURFACES = ("serve --fault", "jpki control fault add")
Arm = Callable[..., ServedCard]


@pytest.fixture(params=SURFACES)
def arm(request: pytest.FixtureRequest, pcscd: PrivatePcscd, jpki_home: Path) -> Iterator[Arm]:
    """`arm(*specs)`: the card served with these faults, armed through one surface. Arming
    again adds them to the running server through the API, or restarts `jpki serve` with them."""
    running: list[ServedCard] = []

    def start(*specs: str) -> ServedCard:
        if request.param == "serve --fault":
            if running:
                running.pop().stop()
            args = ["--control", *(arg for spec in specs for arg in ("--fault", spec))]
            running.append(ServedCard(jpki_home / "card.json", home=jpki_home, args=args))
        else:
            if not running:
                running.append(
                    ServedCard(jpki_home / "card.json", home=jpki_home, args=["--control"])
                )
            for spec in specs:
                added = running[0].control("fault", "add", spec, "--json")
                assert json.loads(added.stdout)["spec"] == spec
        return running[0]

    yield start
    for served in running:
        served.stop()


@pytest.fixture
def module() -> Path:
    found = find_pkcs11_module()
    if found is None:
        pytest.skip("no opensc-pkcs11.so")
    return found


@pytest.fixture
def tools_home(tmp_path: Path) -> Path:
    """A private HOME for OpenSC, so no user configuration or file cache leaks in."""
    path = tmp_path / "tools-home"
    path.mkdir()
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.write_bytes(b"signed through a faulty reader\n")
    return path


def fired(home: Path) -> list[str]:
    """The lines of the trace's fault events (the trace checked for PINs)."""
    return [event["text"] for event in trace_events(home) if event["kind"] == "fault"]


def test_a_forced_status_word(
    arm: Arm, jpki_home: Path, module: Path, tools_home: Path, data: Path, tmp_path: Path
) -> None:
    served = arm("sw=6A82,ins=B0,nth=2", "sw=6581,ins=2A")
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
        first, second, third = (card.send(READ_BINARY) for _ in range(3))
    assert first[1] == 0x9000 and len(first[0]) == 256
    assert second == (b"", 0x6A82)  # the second READ BINARY only
    assert third == first

    signed = pkcs11_sign(module, tools_home, AUTH_TOKEN, "1234", "01", data, tmp_path / "sig")
    assert signed.returncode == 1
    assert "C_SignFinal failed: rv = CKR_DEVICE_ERROR (0x30)" in signed.stderr

    lines = fired(jpki_home)
    assert lines[0] == "fault 1 (sw=6A82,ins=B0,nth=2): answered 6A82 without running the command"
    assert "fault 2 (sw=6581,ins=2A): answered 6581 without running the command" in lines
    served.stop()
    assert f"slot 0: {lines[0]}" in served.output  # jpki serve says so itself, on stderr


def test_latency_fixed_and_with_jitter(
    arm: Arm, jpki_home: Path, module: Path, tools_home: Path, data: Path, tmp_path: Path
) -> None:
    arm("latency=200ms,jitter=50ms,ins=B0,nth=1", "latency=300ms,ins=2A")
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
        started = time.monotonic()
        data_read, sw = card.send(READ_BINARY)
        assert time.monotonic() - started >= 0.15  # 200 ms, give or take 50
        assert sw == 0x9000 and len(data_read) == 256

    started = time.monotonic()
    signed = pkcs11_sign(module, tools_home, AUTH_TOKEN, "1234", "01", data, tmp_path / "sig")
    assert time.monotonic() - started >= 0.3
    assert signed.returncode == 0, signed.stderr  # slow, but signed
    assert len((tmp_path / "sig").read_bytes()) == 256

    lines = fired(jpki_home)
    assert lines[0].startswith("fault 1 (latency=200ms,jitter=50ms,ins=B0,nth=1): answer delayed")
    assert any(
        line.startswith("fault 2 (latency=300ms,ins=2A): answer delayed 300") for line in lines
    )


def test_the_card_is_pulled_out_after_n_apdus(arm: Arm, jpki_home: Path) -> None:
    from smartcard.Exceptions import CardConnectionException

    served = arm("remove,after=2")
    with connected(READER) as card:
        assert card.send(SELECT_JPKI) == (b"", 0x9000)
        assert card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE)) == (b"", 0x9000)
        with pytest.raises(CardConnectionException):
            card.send(READ_BINARY)  # the third APDU finds no card
    wait_for(READER, present=False)

    served.control("insert")
    wait_for(READER, present=True)
    with connected(READER) as card:
        assert card.send(SELECT_JPKI) == (b"", 0x9000)  # spent: the card stays in
    assert fired(jpki_home) == ["fault 1 (remove,after=2): card removed; the command got no answer"]


def test_the_card_is_pulled_out_during_a_pkcs11_tool_signature(
    arm: Arm, jpki_home: Path, module: Path, tools_home: Path, data: Path, tmp_path: Path
) -> None:
    served = arm("remove,during=2A")
    signed = pkcs11_sign(module, tools_home, AUTH_TOKEN, "1234", "01", data, tmp_path / "sig")
    # vpcd gives OpenSC an empty answer for a card gone mid-command: a general error to PKCS#11.
    assert signed.returncode == 1
    assert "C_SignFinal failed: rv = CKR_GENERAL_ERROR (0x5)" in signed.stderr
    wait_for(READER, present=False)
    slots = list_slots(module, tools_home)
    assert [slot["reader"] for slot in slots if "empty" in slot] == [READER, SECOND_READER]

    served.control("insert")
    wait_for(READER, present=True)
    again = pkcs11_sign(module, tools_home, AUTH_TOKEN, "1234", "01", data, tmp_path / "sig")
    assert again.returncode == 0, again.stderr
    events = trace_events(jpki_home)
    assert [e["text"] for e in events if e["kind"] == "fault"] == [
        "fault 1 (remove,during=2A): the command ran; card removed before it answered"
    ]
    signature = next(e for e in events if e["command"].startswith("802A"))
    assert (signature["response"], signature["text"]) == ("", "no answer: card removed")


def test_power_lost_after_the_counter_write_keeps_the_decrement(
    arm: Arm, jpki_home: Path, module: Path, tools_home: Path, data: Path, tmp_path: Path
) -> None:
    from smartcard.Exceptions import CardConnectionException

    served = arm("power-loss=after-counter-write")
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_PIN))
        with pytest.raises(CardConnectionException):
            card.send(verify(WRONG_AUTH_PIN))  # the power goes: no answer
    wait_for(READER, present=False)
    served.control("insert")
    wait_for(READER, present=True)
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_PIN))
        assert card.send(RETRY_QUERY) == (b"", 0x63C2)  # the try was spent, on disk
    assert tries_left(served, "auth") == 2
    assert fired(jpki_home) == ["fault 1 (power-loss=after-counter-write): power lost at "
                                "after-counter-write"]  # fmt: skip

    # Once more, with pkcs11-tool logging in with a wrong PIN when the power goes.
    served = arm("power-loss=after-counter-write")
    signed = pkcs11_sign(module, tools_home, AUTH_TOKEN, "9731", "01", data, tmp_path / "sig")
    assert signed.returncode == 1
    assert "C_Login failed: rv = CKR_GENERAL_ERROR (0x5)" in signed.stderr  # no answer
    wait_for(READER, present=False)
    served.control("insert")
    wait_for(READER, present=True)
    assert tries_left(served, "auth") == 1
    flags = {slot.get("token label"): slot for slot in list_slots(module, tools_home)}
    assert "final user PIN try" in flags[AUTH_TOKEN]["token flags"]
    right = pkcs11_sign(module, tools_home, AUTH_TOKEN, AUTH_PIN.decode(), "01", data,
                        tmp_path / "sig")  # fmt: skip
    assert right.returncode == 0, right.stderr  # the image survived whole: the right PIN works
    assert "power" in [event["kind"] for event in trace_events(jpki_home)]


def tries_left(served: ServedCard, pin: str) -> int:
    counters = json.loads(served.control("counters", "--json").stdout)
    tries: int = next(row["tries_left"] for row in counters if row["pin"] == pin)
    return tries
