"""`jpki serve --control` through a real pcscd: `jpki control` inserts, removes and power-cycles
the served card, swaps in another card file and reads the counters, and pyscard sees each of it
as a client of a real reader does; the card comes back by itself when pcscd restarts.

`JpkiServe` (the server in a subprocess, with its control API) and `trace_events` (the trace,
checked for PINs on every read) serve the other control tests too.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from card_emulator.state.store import read_image
from card_emulator.vocabulary.identifiers import AID, JpkiFile
from jpki.testing.pcscd import PrivatePcscd
from tests.cli.test_card_commands import jpki
from tests.conftest import AUTH_PIN, CARDS, SIGN_PIN
from tests.pcsc.harness import (
    READER,
    ROOT,
    SECOND_READER,
    STOP_GRACE,
    end_process,
    wait_for,
)
from tests.pcsc.test_whole_card import connected

pytestmark = pytest.mark.reader_stack

START_TIMEOUT = 30  # seconds `jpki serve` gets to print its control URL
READERS = (READER, SECOND_READER)
SELECT_JPKI = bytes.fromhex("00A4040C0A") + AID.JPKI.value
WRONG_AUTH_PIN = b"9731"


def select_ef(fid: int) -> bytes:
    return bytes.fromhex("00A4020C02") + fid.to_bytes(2, "big")


def verify(secret: bytes) -> bytes:
    return bytes([0x00, 0x20, 0x00, 0x80, len(secret)]) + secret


READ_BINARY = bytes.fromhex("00B0000000")  # short Le 00: the first 256 bytes
RETRY_QUERY = bytes.fromhex("00200080")


class JpkiServe:
    """`jpki serve` for card files in a subprocess, with its control server (and whatever else
    `args` asks for), for the length of one test; `$JPKI_HOME` is `home`.

    Waits for the printed `Control:` line (and `Panel:` with --panel), then, with `present`,
    until pcscd shows every card in its reader. Stopped like Ctrl-C; killed, with its output in
    the failure, if it does not start or stop.
    """

    def __init__(
        self,
        home: Path,
        *cards: Path,
        args: Sequence[str] = ("--control",),
        ports: Sequence[int] = (),
        present: bool = True,
    ) -> None:
        command = [sys.executable, "-m", "cli", "serve"]
        command += [arg for card in cards for arg in ("--card", str(card))]
        command += [arg for port in ports for arg in ("--port", str(port))]
        command += list(args)
        self.home = home
        self.readers = READERS[: len(cards)] if present else ()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "JPKI_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.returncode: int | None = None
        try:
            self.control_url = self.expect("Control: ").removeprefix("Control: ")
            self.panel_url = (
                self.expect("Panel: ").removeprefix("Panel: ") if ("--panel" in args) else ""
            )
            for reader in self.readers:
                wait_for(reader, present=True)
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float = START_TIMEOUT) -> str:
        """The next printed line that starts with `prefix` (the lines before it are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(
                    f"jpki serve printed no {prefix!r} line in {timeout} s:\n" + self.text
                ) from None
            if line is None:
                self._lines.put(None)
                self.process.wait()
                raise AssertionError(
                    f"jpki serve ended ({self.process.returncode}) before printing {prefix!r}:\n"
                    + self.text
                )
            self.output.append(line)
            if line.startswith(prefix):
                return line

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    @property
    def port(self) -> int:
        return int(self.control_url.split(":")[2].split("/")[0])

    @property
    def token(self) -> str:
        return (self.home / "control.token").read_text().strip()

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        """One request to the control server: status, the JSON it answered, the response."""
        sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        return request(self.port, method, path, body, sent)

    def control(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`jpki control ARGS` for this server's home, which must succeed."""
        result = jpki(self.home, "control", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def stop(self, how: signal.Signals = signal.SIGINT) -> int:
        """Stop serving (Ctrl-C by default); returns the exit code, keeps what it printed."""
        if self.returncode is not None:
            return self.returncode
        stopped = end_process(self.process, how)
        self._reader.join(STOP_GRACE)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self.output.append(line)
        assert self.process.returncode is not None
        self.returncode = self.process.returncode
        assert stopped, f"jpki serve ignored {how.name} and was killed:\n{self.text}"
        for reader in self.readers:  # so the next card in this slot is seen as a new one
            wait_for(reader, present=False)
        return self.returncode

    def __enter__(self) -> JpkiServe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    """A request to 127.0.0.1:`port` with exactly these headers (Host too, if given)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        skip_host = "Host" in sent
        connection.putrequest(method, path, skip_host=skip_host)
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(data or b"")))
        connection.endheaders(data)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    content_type = response.getheader("Content-Type", "")
    answer = json.loads(payload) if content_type.startswith("application/json") else payload
    return response.status, answer, response


def assert_no_pin(events: Iterable[dict[str, Any]], pins: Iterable[bytes]) -> None:
    """No PIN in any event: not in a command's hex, not in any text, in hex or ASCII; and every
    VERIFY with data shows its data masked."""
    for event in events:
        command, text = event["command"].upper(), event["text"]
        for pin in pins:
            assert pin.hex().upper() not in command, event
            assert pin.hex().upper() not in text.upper() and pin.decode() not in text, event
        if command[2:4] == "20" and len(command) > 8:  # VERIFY with data
            length = int(command[8:10], 16)
            assert command[10:] == "*" * 2 * length, event


def trace_events(home: Path, pins: Iterable[bytes] = (AUTH_PIN, SIGN_PIN)) -> list[dict[str, Any]]:
    """`jpki control trace --json`: every event the server holds, checked for PINs."""
    result = jpki(home, "control", "trace", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert_no_pin(events, [*pins, WRONG_AUTH_PIN])
    for pin in [*pins, WRONG_AUTH_PIN]:  # nor anywhere else in what the command printed
        assert pin.hex().upper() not in result.stdout.upper()
    return events


def slot_state(served: JpkiServe, slot: int = 0) -> dict[str, Any]:
    listed = json.loads(served.control("list", "--json").stdout)
    state: dict[str, Any] = listed[slot]
    return state


@pytest.fixture
def jpki_home(tmp_path: Path) -> Path:
    """$JPKI_HOME of the served card: the fixture card taro as its default card."""
    home = tmp_path / "jpki-home"
    home.mkdir()
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    return home


@pytest.fixture
def controlled(pcscd: PrivatePcscd, jpki_home: Path) -> Iterator[JpkiServe]:
    with JpkiServe(jpki_home, jpki_home / "card.json") as served:
        yield served


# Insert, remove, power-cycle -----------------------------------------------------------------


def test_remove_and_insert_are_seen_by_pcscd_and_pyscard(controlled: JpkiServe) -> None:
    from smartcard.Exceptions import CardConnectionException

    with connected(READER) as card:
        assert card.send(SELECT_JPKI) == (b"", 0x9000)
        removed = controlled.control("remove")
        assert removed.stdout == f"slot 0: card removed ({READER})\n"
        wait_for(READER, present=False)
        with pytest.raises(CardConnectionException):
            card.send(SELECT_JPKI)
    assert slot_state(controlled)["inserted"] is False

    inserted = controlled.control("insert", "--json")
    assert json.loads(inserted.stdout)["inserted"] is True
    wait_for(READER, present=True)
    with connected(READER) as card:
        assert card.send(SELECT_JPKI) == (b"", 0x9000)
    kinds = [event["kind"] for event in trace_events(controlled.home)]
    assert kinds.index("removed") < kinds.index("inserted")


def test_a_power_cycle_forgets_the_verified_password(controlled: JpkiServe) -> None:
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        assert card.send(select_ef(JpkiFile.SIGNATURE_PIN)) == (b"", 0x9000)
        assert card.send(verify(SIGN_PIN)) == (b"", 0x9000)
        assert card.send(select_ef(JpkiFile.SIGNATURE_CERTIFICATE))[1] == 0x9000
        assert card.send(READ_BINARY)[1] == 0x9000

        controlled.control("power-cycle")

        # Still in the reader, but freshly powered: back at the MF, the password forgotten.
        assert card.send(READ_BINARY)[1] != 0x9000
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.SIGNATURE_CERTIFICATE))
        assert card.send(READ_BINARY) == (b"", 0x6982)
    assert "power" in [event["kind"] for event in trace_events(controlled.home)]


def test_counters_follow_a_wrong_pin_from_pyscard(controlled: JpkiServe) -> None:
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_PIN))
        assert card.send(verify(WRONG_AUTH_PIN)) == (b"", 0x63C2)
    counters = json.loads(controlled.control("counters", "--json").stdout)
    auth = next(row for row in counters if row["pin"] == "auth")
    assert (auth["tries_left"], auth["max_tries"], auth["blocked"]) == (2, 3, False)
    assert auth["protects"] == "logging in (the authentication key)"
    assert "the municipal window" in auth["unblocked_by"]
    assert len(counters) >= 10  # every key reference of the card, each with its lock
    text = controlled.control("counters").stdout
    assert "authentication PIN" in text and "2 of 3 tries left" in text
    trace_events(controlled.home)


def test_another_card_file_goes_into_the_emptied_slot(
    controlled: JpkiServe, jpki_home: Path
) -> None:
    other = jpki_home / "hanako.json"
    shutil.copyfile(CARDS / "hanako-long-address.json", other)
    refused = jpki(jpki_home, "control", "insert", "--card", str(other))
    assert refused.returncode == 9
    assert refused.stderr == (
        f"jpki: error: slot 0 holds {jpki_home / 'card.json'}: remove it before inserting {other}\n"
    )

    controlled.control("remove")
    wait_for(READER, present=False)
    controlled.control("insert", "--card", str(other))
    wait_for(READER, present=True)
    assert slot_state(controlled)["card"] == str(other)
    expected = read_image(other).contents("jpki").files[JpkiFile.AUTHENTICATION_CERTIFICATE]
    with connected(READER) as card:
        card.send(SELECT_JPKI)
        card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
        data, sw = card.send(bytes.fromhex("00B0000000") + b"\x00\x00")  # extended Le: all
        assert (data, sw) == (expected, 0x9000)
    # The first card is let go of: another process may use it now.
    info = jpki(jpki_home, "card", "info", "--json")
    assert info.returncode == 0, info.stderr


# The reader disappearing --------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["serve --fault", "jpki control fault add"])
def test_the_card_comes_back_when_pcscd_restarts_with_its_faults(
    pcscd: PrivatePcscd, jpki_home: Path, surface: str
) -> None:
    fault = "sw=6A82,ins=B0"
    args = ["--control", "--fault", fault] if surface == "serve --fault" else ["--control"]
    with JpkiServe(jpki_home, jpki_home / "card.json", args=args) as served:
        if surface != "serve --fault":
            served.control("fault", "add", fault)
        pcscd.restart()  # the reader disappears, and a new pcscd finds vpcd's slots again
        wait_for(READER, present=True)
        with connected(READER) as card:
            assert card.send(SELECT_JPKI) == (b"", 0x9000)
            card.send(select_ef(JpkiFile.AUTHENTICATION_CERTIFICATE))
            assert card.send(READ_BINARY) == (b"", 0x6A82)  # the fault outlived the reader
        assert slot_state(served)["inserted"] is True
        fired = [e for e in trace_events(jpki_home) if e["kind"] == "fault"]
        assert [e["text"] for e in fired] == [
            "fault 1 (sw=6A82,ins=B0): answered 6A82 without running the command"
        ]
