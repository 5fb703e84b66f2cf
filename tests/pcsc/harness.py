"""A private pcscd with the vpcd driver, for tests and benchmarks: nothing host-wide is touched.

`enter_private_namespaces()` moves this process into new mount and network namespaces (root
with CAP_SYS_ADMIN only): pcscd's socket directory and the vpcd ports 35963/35964 are then ours
alone, and vanish with the process. `Pcscd` runs the daemon; `ServedCard` runs `jpki serve` for
a card file. `reader_stack_missing()` says what this machine lacks for any of it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
PCSCD_DIRECTORY = Path("/run/pcscd")
PCSCD_SOCKET = PCSCD_DIRECTORY / "pcscd.comm"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
REQUIRED_PROGRAMS = (
    "pcscd", "opensc-tool", "pkcs15-tool", "pkcs11-tool", "opensc-explorer", "stdbuf", "ip",
)  # fmt: skip
PYSCARD_MISSING = "pyscard is not installed: pip install 'jpki-emulator[pcsc]'"
READER = "Virtual PCD 00 00"
SECOND_READER = "Virtual PCD 00 01"
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
STOP_GRACE = 10  # seconds a process gets to exit on its signal before it is killed

_inside = False


class NamespacesUnavailable(RuntimeError):
    """This process may not make private namespaces (root without CAP_SYS_ADMIN, say)."""


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


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter_private_namespaces() -> None:
    """New mount + network namespaces for this process, a private /run/pcscd, loopback up.

    Raises NamespacesUnavailable where they are not permitted; this process then still uses
    the host's network (its loopback), so everything else keeps working.
    """
    global _inside
    if _inside:
        return
    try:
        _private_mounts()
        _private_network()
    except OSError as error:
        raise NamespacesUnavailable(
            f"cannot make private mount and network namespaces for pcscd ({error}); "
            "they need root with CAP_SYS_ADMIN and CAP_NET_ADMIN (containers drop both by default)"
        ) from error
    _inside = True


def _private_mounts() -> None:
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    # A tmpfs over /run/pcscd, or over /run when the host has no /run/pcscd to cover.
    target = PCSCD_DIRECTORY if PCSCD_DIRECTORY.is_dir() else PCSCD_DIRECTORY.parent
    tmpfs = libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, b"mode=0755")
    _check(tmpfs, f"tmpfs on {target}")
    PCSCD_DIRECTORY.mkdir(exist_ok=True)


def _private_network() -> None:
    """A new network namespace with loopback up, or back to the old one if lo stays down."""
    libc = _libc()
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
        if up.returncode != 0:
            # The rest of the suite needs 127.0.0.1: never leave this process without it.
            _check(libc.setns(original, CLONE_NEWNET), "returning to the host network")
            raise OSError(f"ip link set lo up: {up.stderr.strip()}")
    finally:
        os.close(original)


def end_process(
    process: subprocess.Popen[bytes] | subprocess.Popen[str],
    how: signal.Signals,
    grace: float = STOP_GRACE,
) -> bool:
    """Signal `process` and reap it, killed after `grace` seconds; False if it had to be killed."""
    if process.poll() is None:
        process.send_signal(how)
    try:
        process.wait(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


class Pcscd:
    """pcscd in the foreground (never --auto-exit), stopped with SIGTERM.

    Not SIGINT: pcscd 1.9.9 notes it in a signal thread while its main loop, woken from a
    select() without timeout, waits just 1 ms for that before it selects again; on a busy
    machine it misses the note and sleeps until some client connects. SIGTERM has the signal
    thread exit the daemon itself.
    """

    def __init__(self, log_path: Path, debug: bool = True) -> None:
        self.log_path = log_path
        self.debug = debug  # --debug --apdu: every APDU in the log (slower; benchmarks turn it off)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the daemon until stop()
        options = ["--debug", "--apdu"] if self.debug else []
        self.process = subprocess.Popen(
            ["pcscd", "--foreground", *options], stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + 10
        while not PCSCD_SOCKET.exists():  # created once the vpcd listeners are open
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pcscd did not start; see {self.log_path}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and not end_process(process, signal.SIGTERM):
            warnings.warn(
                f"pcscd ignored SIGTERM for {STOP_GRACE} s and was killed; see {self.log_path}",
                stacklevel=2,
            )
        if self._log is not None:
            self._log.close()
            self._log = None
        PCSCD_SOCKET.unlink(missing_ok=True)  # pcscd removes it itself unless it was killed

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
    """Block until pcscd reports a card in `reader` (present) or none: pcscd wakes us on change."""
    from smartcard import scard

    deadline = time.monotonic() + timeout
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        raise RuntimeError(f"no PC/SC context: {scard.SCardGetErrorMessage(result)}")
    try:
        known = scard.SCARD_STATE_UNAWARE  # answered at once with the current state
        while True:
            left = max(int((deadline - time.monotonic()) * 1000), 0)
            result, states = scard.SCardGetStatusChange(context, left, [(reader, known)])
            if result == scard.SCARD_E_TIMEOUT:
                raise TimeoutError(
                    f"card {'never appeared in' if present else 'still in'} {reader}"
                )
            if result != scard.SCARD_S_SUCCESS:
                raise RuntimeError(f"{reader}: {scard.SCardGetErrorMessage(result)}")
            state = states[0][1]
            if bool(state & scard.SCARD_STATE_PRESENT) == present:
                return
            known = state & ~scard.SCARD_STATE_CHANGED
    finally:
        scard.SCardReleaseContext(context)


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
