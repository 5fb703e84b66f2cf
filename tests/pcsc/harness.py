"""A private pcscd with the vpcd driver, for tests and benchmarks: nothing host-wide is touched.

`enter_private_namespaces()` moves this process into new mount and network namespaces (root
only): pcscd's socket directory and the vpcd ports 35963/35964 are then ours alone, and vanish
with the process. `Pcscd` runs the daemon; `ServedCard` runs `jpki serve` for a card file.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from jpki.client.connection import reader_status

ROOT = Path(__file__).resolve().parents[2]
PCSCD_DIRECTORY = Path("/run/pcscd")
PCSCD_SOCKET = PCSCD_DIRECTORY / "pcscd.comm"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
REQUIRED_PROGRAMS = ("pcscd", "opensc-tool", "pkcs15-tool", "pkcs11-tool", "ip")
READER = "Virtual PCD 00 00"
SECOND_READER = "Virtual PCD 00 01"
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_inside = False


def missing_programs() -> list[str]:
    missing = [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    if not VPCD_DRIVER.exists():
        missing.append("vsmartcard-vpcd")
    return missing


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter_private_namespaces() -> None:
    """New mount + network namespaces for this process, a private /run/pcscd, loopback up."""
    global _inside
    if _inside:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    # A tmpfs over /run/pcscd, or over /run when the host has no /run/pcscd to cover.
    target = PCSCD_DIRECTORY if PCSCD_DIRECTORY.is_dir() else PCSCD_DIRECTORY.parent
    _check(libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, b"mode=0755"), "tmpfs")
    PCSCD_DIRECTORY.mkdir(exist_ok=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    _inside = True


class Pcscd:
    """pcscd in the foreground (never --auto-exit), stopped with SIGINT."""

    def __init__(self, log_path: Path, debug: bool = True) -> None:
        self.log_path = log_path
        self.debug = debug  # --debug --apdu: every APDU in the log (slower; benchmarks turn it off)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the daemon for its lifetime
        options = ["--debug", "--apdu"] if self.debug else []
        self.process = subprocess.Popen(["pcscd", "--foreground", *options], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not PCSCD_SOCKET.exists():  # created once the vpcd listeners are open
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pcscd did not start; see {self.log_path}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=10)
        self.process = None
        PCSCD_SOCKET.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Pcscd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def wait_for(reader: str, present: bool, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while reader_status(reader) != present:
        if time.monotonic() > deadline:
            raise TimeoutError(f"card {'never appeared in' if present else 'still in'} {reader}")
        time.sleep(0.05)


class ServedCard:
    """`jpki serve` in a subprocess for card files, one vpcd slot each (35963, 35964, …)."""

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
        for reader in self.readers:
            wait_for(reader, present=True)

    def remove(self) -> None:
        self.process.send_signal(signal.SIGUSR1)
        for reader in self.readers:
            wait_for(reader, present=False)

    def insert(self) -> None:
        self.process.send_signal(signal.SIGUSR2)
        for reader in self.readers:
            wait_for(reader, present=True)

    def stop(self) -> str:
        """Stop serving; returns what `jpki serve` printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=10)
        for reader in self.readers:  # so the next card in this slot is seen as a new one
            wait_for(reader, present=False)
        return output

    def __enter__(self) -> ServedCard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
