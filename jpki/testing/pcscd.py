"""A private pcscd with the vpcd driver, for tests: nothing host-wide is touched, and the calling
process stays where it is (no namespace of its own).

The daemon alone runs in a new mount namespace (`unshare --mount` as root, else in a new user
namespace too) with a tmpfs over /run and its /run/pcscd bind-mounted from a temporary directory,
so its socket and pid file are ours; its vpcd reader listens on a free pair of ports. Clients
reach it with `$PCSCLITE_CSOCK_NAME` set to that socket: libpcsclite reads the variable once per
process, at its first PC/SC call, so a process sets it before then and keeps it.

    with PrivatePcscd(tmp_path) as pcscd:
        os.environ.update(pcscd.environment())
        VpcdLink(card, port=pcscd.port) ...       # the card in reader pcscd.readers[0]
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO

from card_emulator.transports.vpcd import PORT_VARIABLE, READER_NAME, SLOTS

SOCKET_VARIABLE = "PCSCLITE_CSOCK_NAME"  # where libpcsclite finds pcscd
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
FRIENDLY_NAME = "Virtual PCD"  # as Debian's /etc/reader.conf.d/vpcd names the reader
STOP_GRACE = 10  # seconds a process gets to exit on its signal before it is killed
START_TIMEOUT = 10  # seconds for pcscd to open its socket
PORT_ATTEMPTS = 5  # free port pairs tried when another process takes one meanwhile
PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
EVENT_COUNT_SHIFT = 16  # pcscd counts a reader's card events in the state's upper 16 bits
# In the daemon's own mount namespace: a private /run, whose pcscd/ is our directory.
PRIVATE_RUN = (
    'mount -t tmpfs tmpfs /run && mkdir /run/pcscd && mount --bind "$1" /run/pcscd '
    '&& shift && exec pcscd "$@"'
)


class PcscdError(RuntimeError):
    """The private pcscd did not start, or this process talks to another pcscd."""


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


def unshare_command() -> list[str]:
    """A new mount namespace: root may make one; others make a user namespace for it first."""
    if os.geteuid() == 0:
        return ["unshare", "--mount"]
    return ["unshare", "--user", "--map-root-user", "--mount"]


@functools.cache
def missing() -> str | None:
    """Why a private pcscd cannot run here, or None when it can (checked once per process)."""
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (Debian: pcscd)"
    if not VPCD_DRIVER.exists():
        return f"the vpcd reader driver {VPCD_DRIVER} is missing (Debian: vsmartcard-vpcd)"
    if shutil.which("unshare") is None:
        return "unshare is not installed (Debian: util-linux)"
    try:
        tried = subprocess.run(
            [*unshare_command(), "sh", "-c", "mount -t tmpfs tmpfs /run"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run unshare: {error}"
    if tried.returncode != 0:
        refusal = " ".join(tried.stderr.split()) or f"exit status {tried.returncode}"
        need = "CAP_SYS_ADMIN" if os.geteuid() == 0 else "unprivileged user namespaces"
        return f"cannot give pcscd a private mount namespace ({refusal}); it needs {need}"
    return None


def reader_name(slot: int = 0) -> str:
    """The PC/SC name of a slot of the private pcscd's one vpcd reader."""
    return READER_NAME.format(slot=slot)  # FRIENDLY_NAME, reader 00, the slot


def free_port_pair() -> int:
    """A port P with P and P + 1 free on every address (vpcd listens on 0.0.0.0)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind(("", 0))
            port = int(first.getsockname()[1])
            if port + SLOTS - 1 > 0xFFFF:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind(("", port + 1))
                except OSError:
                    continue
                return port
    raise PcscdError("found no free pair of TCP ports for the vpcd reader")


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (in this network namespace)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                listening = fields[3] == "0A"
                if listening and int(fields[9]) in inodes:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def pcscd_peers() -> set[int]:
    """The process ids of the pcscd's this process holds a PC/SC connection to (Linux)."""
    peers = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            duplicate = socket.socket(fileno=os.dup(int(fd)))
        except (OSError, ValueError):
            continue  # not a socket, or closed meanwhile
        with duplicate:
            if duplicate.family != socket.AF_UNIX:
                continue
            try:
                name = duplicate.getpeername()
                raw = duplicate.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size
                )
            except OSError:
                continue
            if isinstance(name, str) and name.endswith("pcscd.comm"):
                peers.add(PEER_CREDENTIALS.unpack(raw)[0])
    return peers


class PrivatePcscd:
    """pcscd in the foreground (never --auto-exit) in a mount namespace of its own.

    Stopped with SIGTERM, not SIGINT: pcscd 1.9.9 notes SIGINT in a signal thread while its
    main loop, woken from a select() without timeout, waits just 1 ms for that before it selects
    again; on a busy machine it misses the note and sleeps until some client connects. SIGTERM
    has the signal thread exit the daemon itself.
    """

    def __init__(self, directory: Path, *, debug: bool = False) -> None:
        self.directory = Path(directory)
        self.debug = debug  # --debug --apdu: every APDU in the log (slower)
        self.run_directory = self.directory / "run"
        self.configuration = self.directory / "reader.conf.d"
        self.log_path = self.directory / "pcscd.log"
        self.port: int | None = None  # chosen at the first start, kept across restarts
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    missing = staticmethod(missing)  # why a private pcscd cannot run here, or None

    @property
    def socket_path(self) -> Path:
        return self.run_directory / "pcscd.comm"

    @property
    def readers(self) -> list[str]:
        """The reader's slots, by PC/SC name: a card served on `port + N` is in readers[N]."""
        return [reader_name(slot) for slot in range(SLOTS)]

    def environment(self) -> dict[str, str]:
        """What a process needs to reach this pcscd: a client (pkcs11-tool, opensc-tool, jpki)
        its socket, `jpki serve` its vpcd port once started."""
        ports = {} if self.port is None else {PORT_VARIABLE: str(self.port)}
        return {SOCKET_VARIABLE: str(self.socket_path), **ports}

    def start(self) -> None:
        """Start the daemon; returns once its socket is open and vpcd listens."""
        reason = missing()
        if reason is not None:
            raise PcscdError(reason)
        self.run_directory.mkdir(parents=True, exist_ok=True)
        self.configuration.mkdir(parents=True, exist_ok=True)
        if self.port is not None:  # a restart: the served cards reconnect to the same port
            self._start_on(self.port)
            return
        for _ in range(PORT_ATTEMPTS):
            port = free_port_pair()
            if self._start_on(port, retry=True):
                self.port = port
                return
        raise PcscdError(f"vpcd found no free ports in {PORT_ATTEMPTS} tries; see {self.log_path}")

    def _start_on(self, port: int, retry: bool = False) -> bool:
        (self.configuration / "vpcd").write_text(
            f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
            f"DEVICENAME   /dev/null:0x{port:04X}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    0x{port:04X}\n"
        )
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the daemon until stop()
        options = ["--debug", "--apdu"] if self.debug else []
        self.process = subprocess.Popen(
            [*unshare_command(), "sh", "-c", PRIVATE_RUN, "sh", str(self.run_directory),
             "--foreground", "-c", str(self.configuration), *options],
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket_path.exists():  # created once the vpcd listeners are open
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PcscdError(f"pcscd did not start; see {self.log_path}")
            time.sleep(0.02)
        # unshare and sh exec: the daemon keeps the pid Popen started.
        wanted = set(range(port, port + SLOTS))
        if wanted <= _listening_ports(self.process.pid):
            return True
        self.stop()
        if retry:  # another process took a port between our check and vpcd's bind
            return False
        raise PcscdError(f"vpcd cannot listen on ports {port} and {port + 1}; see {self.log_path}")

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
        self.socket_path.unlink(missing_ok=True)  # pcscd removes it itself unless it was killed
        (self.run_directory / "pcscd.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        """The reader disappears (clients' contexts fail) and comes back on the same port."""
        self.stop()
        self.start()

    def check_reached(self) -> None:
        """Raise PcscdError unless this process's PC/SC library talks to this pcscd.

        Establishes a PC/SC context (needs pyscard): libpcsclite reads $PCSCLITE_CSOCK_NAME at
        a process's first PC/SC call, so a process that talked to another pcscd before still does.
        """
        from smartcard import scard

        result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if result != scard.SCARD_S_SUCCESS:
            raise PcscdError(self._elsewhere(scard.SCardGetErrorMessage(result)))
        try:
            peers = pcscd_peers()
        finally:
            scard.SCardReleaseContext(context)
        if self.process is not None and peers and self.process.pid not in peers:
            listed = ", ".join(str(pid) for pid in sorted(peers))
            raise PcscdError(self._elsewhere(f"it talks to the pcscd with process id {listed}"))

    def _elsewhere(self, what: str) -> str:
        return (
            f"this process does not reach the private pcscd at {self.socket_path} ({what}): "
            f"libpcsclite reads ${SOCKET_VARIABLE} once, at a process's first PC/SC call; "
            "run these tests in a process that has made no PC/SC call before"
        )

    def __enter__(self) -> PrivatePcscd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def wait_for(
    reader: str, present: bool, timeout: float = 10, *, newer_than: int | None = None
) -> int:
    """Block until pcscd reports a card in `reader` (present) or none; returns the reader's
    event count then. pcscd wakes us on change.

    `newer_than`: also wait until the event count passes it, i.e. until pcscd's own poll of the
    reader has seen the change. A client whose command failed on a removed card has pcscd mark
    the reader empty at once, before the poll notices; a card put back before that poll would
    never be seen leaving, nor coming back.
    """
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
            events = int(state) >> EVENT_COUNT_SHIFT
            noticed = newer_than is None or events > newer_than
            if bool(state & scard.SCARD_STATE_PRESENT) == present and noticed:
                return events
            known = state & ~scard.SCARD_STATE_CHANGED
    finally:
        scard.SCardReleaseContext(context)
