"""The suite's PC/SC harness: what this machine lacks for the reader stack, and `ServedCard`,
which runs `jpki serve` for card files into the session's private pcscd (jpki.testing.pcscd,
the pytest plugin's `jpki_pcscd`: its socket and vpcd port reach every subprocess through the
environment), with its control API if asked, and `request` for that API.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from jpki.testing.pcscd import STOP_GRACE, VPCD_DRIVER, end_process, reader_name, wait_for
from tests.cli.test_card_commands import jpki

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_PROGRAMS = (
    "pcscd", "unshare", "opensc-tool", "pkcs15-tool", "pkcs11-tool", "opensc-explorer", "stdbuf",
)  # fmt: skip
PYSCARD_MISSING = "pyscard is not installed: pip install 'jpki-emulator[pcsc]'"
READER = reader_name(0)
SECOND_READER = reader_name(1)
START_TIMEOUT = 30  # seconds `jpki serve` gets to print its control URL


def missing_programs() -> list[str]:
    missing = [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    if not VPCD_DRIVER.exists():
        missing.append("vsmartcard-vpcd")
    return missing


def reader_stack_missing() -> str | None:
    """Why pcscd + vpcd + OpenSC + pyscard cannot run here, or None when they can."""
    problems = []
    if importlib.util.find_spec("smartcard") is None:
        problems.append(PYSCARD_MISSING)
    missing = missing_programs()
    if missing:
        problems.append(f"missing {', '.join(missing)}: run scripts/test, which installs them")
    return "; ".join(problems) or None


class ServedCard:
    """`jpki serve` for card files in a subprocess, in the session's private pcscd (its port
    comes through $JPKI_VPCD_PORT), with whatever `args` asks for (`--control`, `--panel`,
    `--fault`), for the length of one test; `$JPKI_HOME` is `home` if given.

    Waits for the printed `Control:` line (and `Panel:` with --panel) when asked for them, then,
    with `present`, until pcscd shows every card in its reader. Stopped like Ctrl-C; killed, with
    its output in the failure, if it does not start or stop.
    """

    def __init__(
        self,
        *cards: Path,
        home: Path | None = None,
        args: Sequence[str] = (),
        ports: Sequence[int] = (),
        present: bool = True,
    ) -> None:
        command = [sys.executable, "-m", "cli", "serve"]
        command += [arg for card in cards for arg in ("--card", str(card))]
        command += [arg for port in ports for arg in ("--port", str(port))]
        command += list(args)
        self.home = home or Path(os.environ.get("JPKI_HOME", "~/.jpki")).expanduser()
        self.readers = (READER, SECOND_READER)[: len(cards)] if present else ()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **({"JPKI_HOME": str(home)} if home else {})},
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
            controlled = {"--control", "--panel", "--control-port"} & set(args)
            self.control_url = (
                self.expect("Control: ").removeprefix("Control: ") if controlled else ""
            )
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

    def remove(self) -> None:
        """Pull the cards out, as `kill -USR1` does; returns once pcscd has seen them go."""
        self.process.send_signal(signal.SIGUSR1)
        for reader in self.readers:
            wait_for(reader, present=False)

    def insert(self) -> None:
        """Put them back (`kill -USR2`); returns once pcscd sees them."""
        self.process.send_signal(signal.SIGUSR2)
        for reader in self.readers:
            wait_for(reader, present=True)

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

    def __enter__(self) -> ServedCard:
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
