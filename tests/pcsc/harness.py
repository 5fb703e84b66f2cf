"""The suite's PC/SC harness: what this machine lacks for the reader stack, and `ServedCard`,
which runs `jpki serve` for card files into the session's private pcscd (jpki.testing.pcscd,
the pytest plugin's `jpki_pcscd`: its socket and vpcd port reach every subprocess through the
environment).
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from jpki.testing.pcscd import STOP_GRACE, VPCD_DRIVER, end_process, reader_name, wait_for

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_PROGRAMS = (
    "pcscd", "unshare", "opensc-tool", "pkcs15-tool", "pkcs11-tool", "opensc-explorer", "stdbuf",
)  # fmt: skip
PYSCARD_MISSING = "pyscard is not installed: pip install 'jpki-emulator[pcsc]'"
READER = reader_name(0)
SECOND_READER = reader_name(1)


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
    """`jpki serve` in a subprocess for card files, one vpcd slot each (35963, 35964, …).

    Never outlives its test: a `jpki serve` that does not start or does not stop on SIGINT
    (Ctrl-C) is killed, and the test fails with what it printed.
    """

    def __init__(self, *cards: Path, extra: tuple[str, ...] = ()) -> None:
        self.cards = cards
        arguments = [arg for card in cards for arg in ("--card", str(card))]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", *arguments, *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.readers = [READER, SECOND_READER][: len(cards)]
        self._output: str | None = None
        try:
            for reader in self.readers:
                wait_for(reader, present=True)
        except (TimeoutError, RuntimeError) as error:
            self.process.kill()
            output, _ = self.process.communicate()
            raise RuntimeError(f"{error}; jpki serve printed:\n{output}") from None

    def remove(self) -> None:
        self.process.send_signal(signal.SIGUSR1)
        for reader in self.readers:
            wait_for(reader, present=False)

    def insert(self) -> None:
        self.process.send_signal(signal.SIGUSR2)
        for reader in self.readers:
            wait_for(reader, present=True)

    def stop(self) -> str:
        """Stop serving as Ctrl-C does; returns what `jpki serve` printed."""
        if self._output is not None:
            return self._output
        stopped = end_process(self.process, signal.SIGINT)
        self._output, _ = self.process.communicate()
        if not stopped:
            raise AssertionError(
                f"jpki serve ignored SIGINT for {STOP_GRACE} s and was killed:\n{self._output}"
            )
        for reader in self.readers:  # so the next card in this slot is seen as a new one
            wait_for(reader, present=False)
        return self._output

    def __enter__(self) -> ServedCard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
