"""Where a card image lives: in memory, or in a locked file replaced atomically on each change,
with its retry counters beside it, rewritten in place.

The file store names its persistence points (`PersistencePoint`): a power cut injected at one
(`arm_power_cut`, which the card's faults use) leaves on disk what a real cut there would.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from card_emulator.errors import CardFileError, CardImageError, PowerLost
from card_emulator.state import counters
from card_emulator.state.image import CardImage

PRIVATE_FILE_MODE = 0o600  # card images hold private keys
PRIVATE_DIRECTORY_MODE = 0o700
TEMPORARY_PREFIX = "."
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
LOCK_POLL_INTERVAL = 0.02  # seconds between attempts while waiting for another process's lock


class PersistencePoint(enum.Enum):
    """The moments of a write at which losing power leaves something different on disk."""

    BEFORE_COUNTER_WRITE = "before-counter-write"  # a retry counter is about to be written
    AFTER_COUNTER_WRITE = "after-counter-write"  # it is written (and synced), nothing else yet
    DURING_PIN_CHANGE = "during-pin-change"  # a whole-image write carrying a new PIN value, torn
    DURING_CERTIFICATE_WRITE = "during-certificate-write"  # one carrying certificates, torn
    DURING_IMAGE_WRITE = "during-image-write"  # any other whole-image write (settings...), torn


class ImageChange(enum.Enum):
    """What a whole-image write carries: it decides the persistence point a cut in it is."""

    PIN = "pin"
    CERTIFICATES = "certificates"
    OTHER = "other"


TORN_WRITE = {
    ImageChange.PIN: PersistencePoint.DURING_PIN_CHANGE,
    ImageChange.CERTIFICATES: PersistencePoint.DURING_CERTIFICATE_WRITE,
    ImageChange.OTHER: PersistencePoint.DURING_IMAGE_WRITE,
}

PowerCutHook = Callable[[PersistencePoint], bool]  # True: the power goes at this point

# By the card file's real path, so that every store of a card in this process (the served
# card's, the window's, a renewal's) meets the cut armed for it.
_power_cuts: dict[Path, PowerCutHook] = {}
_power_cuts_lock = threading.Lock()


def arm_power_cut(path: Path, hook: PowerCutHook | None) -> PowerCutHook | None:
    """Ask `hook` at each persistence point of the card file `path` whether the power goes
    there; None disarms. Returns the hook it replaces, to be armed again afterwards."""
    real = real_card_path(path)
    with _power_cuts_lock:
        if hook is None:
            return _power_cuts.pop(real, None)
        replaced = _power_cuts.get(real)
        _power_cuts[real] = hook
        return replaced


def _write_temporary(path: Path, data: bytes) -> Path:
    """A synced, private copy of `data` beside `path`, to be renamed or linked into place."""
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # whatever the umask: the image holds private keys
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # makes a rename or a link itself durable
    finally:
        os.close(fd)


def _replace_image(path: Path, data: bytes) -> None:
    """Replace a card's file (the image, or its counters) so that a crash leaves either the old
    or the new one, whole."""
    temporary = _write_temporary(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _remove_leftovers(path: Path) -> None:
    """Copies a crash left behind mid-write (never the card: the rename had not happened)."""
    for leftover in path.parent.glob(f"{TEMPORARY_PREFIX}{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def real_card_path(path: Path) -> Path:
    """The card file itself, symbolic links followed: a link gets no lock and no copy of its own."""
    return Path(os.path.realpath(path))


def read_image(path: Path) -> CardImage:
    """Load a card file, with the retry counters beside it, without locking it (writers replace
    the image atomically and rewrite the counters in one small write)."""
    counters_file = counters.counters_path(real_card_path(path))
    try:
        image = CardImage.loads(Path(path).read_bytes())
        with contextlib.suppress(FileNotFoundError):  # a card not used since it was made
            try:
                counters.apply(image, counters_file.read_bytes())
            except CardImageError as exc:
                raise CardFileError(f"{counters_file}: {exc}") from None
        return image
    except CardImageError as exc:
        raise CardFileError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise CardFileError(
            f"no card file at {path} (create one with `jpki card create`)"
        ) from None
    except OSError as exc:
        raise CardFileError(f"cannot read {path}: {exc.strerror}") from None


class MemoryStore:
    """An image kept in memory only: changes are lost with the object."""

    def __init__(self, image: CardImage) -> None:
        self.image = image

    def commit(self, change: ImageChange = ImageChange.OTHER) -> None:
        """Nothing to make durable."""

    def commit_counters(self, *, sync: bool = True) -> None:
        """Nothing to make durable."""

    def close(self) -> None:
        """Nothing to release."""


class FileStore:
    """An image in a file that this process holds locked while the card is in use."""

    def __init__(self, path: Path, image: CardImage, lock: IO[bytes]) -> None:
        self.path = path
        self.image = image
        self._lock: IO[bytes] | None = lock
        self.read_only: str | None = None  # why this process may not change the file
        self._counters: int | None = None  # the counters file, open for in-place writes
        self._counters_size = 0  # its length: a record of another length replaces it whole
        self._power_lost = False  # a cut was injected: nothing more is written until reload()

    @classmethod
    def create(cls, path: Path, image: CardImage) -> None:
        """Write a new card file; refuses, atomically, to replace one that exists."""
        real = real_card_path(path)
        try:
            _make_directories(real.parent)
            temporary = _write_temporary(real, image.dumps())
            try:
                os.link(temporary, real)  # fails if the card exists, even if created meanwhile
            finally:
                temporary.unlink(missing_ok=True)
            _sync_directory(real.parent)
        except FileExistsError:
            raise CardFileError(f"{path} already exists; refusing to overwrite a card") from None
        except OSError as exc:
            raise CardFileError(f"cannot write {path}: {exc.strerror}") from None

    @classmethod
    def open(cls, path: Path, wait: float = 0.0) -> FileStore:
        """Lock the card file (one process at a time) and load it.

        A card in use by another process is refused at once, or with `wait` > 0 waited for up
        to that many seconds (administrative commands queue this way: each loads the card only
        once it holds the lock, so it sees the changes of the one before). A card file that this
        process may not change (read-only mount, directory or file) still opens: reading works,
        and a command that must change the card says so.
        """
        named, path = Path(path), real_card_path(path)
        if not path.is_file():
            read_image(named)  # raises the readable error
        links = path.stat().st_nlink
        if links > 1:
            raise CardFileError(
                f"{named} has {links} hard links; a card file must have one name "
                "(each name would get a lock of its own)"
            )
        lock_path = path.with_name(path.name + ".lock")
        read_only = None if os.access(path, os.W_OK) else "the file is not writable"
        # Held open (and locked) for as long as the card is in use.
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
            os.fchmod(descriptor, PRIVATE_FILE_MODE)
            lock: IO[bytes] = open(descriptor, "r+b")  # noqa: SIM115
        except OSError as exc:
            if exc.errno not in NOT_WRITABLE:
                raise CardFileError(f"cannot lock {lock_path}: {exc.strerror}") from None
            read_only = exc.strerror
            # An existing lock file still excludes writers; else nobody can be writing.
            lock = open(lock_path if lock_path.exists() else path, "rb")  # noqa: SIM115
        try:
            _lock_waiting(lock, wait)
        except OSError as exc:
            holder = lock.read().decode(errors="replace").strip() or "unknown"
            lock.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                waited = f" (waited {wait:g} s)" if wait > 0 else ""
                raise CardFileError(
                    f"{named} is in use by another process (pid {holder}){waited}; "
                    "a card can be in one reader at a time"
                ) from None
            raise CardFileError(f"cannot lock {lock_path}: {exc.strerror}") from None
        if read_only is None:
            lock.truncate(0)
            lock.write(str(os.getpid()).encode())
            lock.flush()
            _remove_leftovers(path)
        try:
            image = read_image(path)
        except CardFileError:
            lock.close()
            raise
        store = cls(path, image, lock)
        store.read_only = read_only
        if read_only is None:
            store._open_counters_or_close()
        return store

    def reload(self) -> None:
        """Read the card again as the next open would (after a power cut: the copy a torn write
        left removed, the image and counters as on disk), keeping this store's lock: closing and
        reopening would let another process take the card in between."""
        if self._lock is None:
            raise CardFileError(f"{self.path} is closed")
        if self._counters is not None:
            os.close(self._counters)
            self._counters = None
        if self.read_only is None:
            _remove_leftovers(self.path)
        try:
            self.image = read_image(self.path)
        except CardFileError:
            self.close()
            raise
        self._power_lost = False
        if self.read_only is None:
            self._open_counters_or_close()

    def _open_counters_or_close(self) -> None:
        try:
            self._open_counters()
        except OSError as exc:
            self.close()
            raise CardFileError(
                f"cannot write {self.path}{counters.SUFFIX}: {exc.strerror}"
            ) from None

    def _open_counters(self) -> None:
        """Open the counters file for writing in place, creating it whole if it is missing."""
        path = counters.counters_path(self.path)
        try:
            self._counters = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            self._replace_counters(counters.encode(self.image))
            return
        self._counters_size = os.fstat(self._counters).st_size

    def _replace_counters(self, record: bytes) -> None:
        """Write the counters file whole (temporary copy, synced, renamed): when it is missing,
        or when its record changes length (an older record, or an administrator key added)."""
        path = counters.counters_path(self.path)
        _replace_image(path, record)
        if self._counters is not None:
            os.close(self._counters)
        self._counters = os.open(path, os.O_RDWR)
        self._counters_size = len(record)

    def _writable(self) -> None:
        if self._lock is None:
            raise CardFileError(f"{self.path} is closed")
        if self._power_lost:
            raise PowerLost(f"{self.path}: the card lost power; it writes nothing until reloaded")
        if self.read_only is not None:
            raise CardFileError(
                f"{self.path} cannot be changed ({self.read_only}); this command needs to "
                "change the card (a retry counter, a PIN)"
            )

    def commit_counters(self, *, sync: bool = True) -> None:
        """Make the retry counters durable: one small write in place, and one sync unless the
        change only gives tries back (losing it to a crash then costs a try, never refunds one)."""
        self._writable()
        assert self._counters is not None
        record = counters.encode(self.image)
        self._cut_at(PersistencePoint.BEFORE_COUNTER_WRITE)
        try:
            if len(record) != self._counters_size:
                self._replace_counters(record)
            else:
                os.pwrite(self._counters, record, 0)
                if sync:
                    os.fdatasync(self._counters)
        except OSError as exc:
            raise CardFileError(
                f"cannot write {self.path}{counters.SUFFIX} ({exc.strerror}); "
                "the card was not changed"
            ) from None
        self._cut_at(PersistencePoint.AFTER_COUNTER_WRITE)

    def commit(self, change: ImageChange = ImageChange.OTHER) -> None:
        """Make the current image durable before the card answers (the counters with it).
        `change` says what the image carries that it did not before."""
        self._writable()
        data = self.image.dumps()
        torn = self._cut_at(TORN_WRITE[change], raises=False)
        try:
            if torn:  # what a cut halfway through the write leaves: a partial copy, not renamed
                _write_temporary(self.path, data[: len(data) // 2])
            else:
                _replace_image(self.path, data)
        except OSError as exc:
            raise CardFileError(
                f"cannot write {self.path} ({exc.strerror}); the card was not changed"
            ) from None
        if torn:
            raise PowerLost(f"{self.path}: power lost during the write ({change.value})")
        self.commit_counters()

    def _cut_at(self, point: PersistencePoint, *, raises: bool = True) -> bool:
        """Whether the power goes at `point` (a cut armed for this card says so); raises
        PowerLost then, unless the caller has something to leave behind first."""
        hook = _power_cuts.get(self.path) if _power_cuts else None
        if hook is None or not hook(point):
            return False
        self._power_lost = True
        if raises:
            raise PowerLost(f"{self.path}: power lost at {point.value}")
        return True

    def close(self) -> None:
        if self._counters is not None:
            os.close(self._counters)
            self._counters = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


CardStore = MemoryStore | FileStore


def _lock_waiting(lock: IO[bytes], wait: float) -> None:
    """Take the card's lock now, or within `wait` seconds; OSError (EWOULDBLOCK) if not."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            left = deadline - time.monotonic()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or left <= 0:
                raise
            time.sleep(min(LOCK_POLL_INTERVAL, left))


def _make_directories(directory: Path) -> None:
    """Create missing directories private (0700), whatever the umask; existing ones are kept."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(mode=PRIVATE_DIRECTORY_MODE, exist_ok=True)
        os.chmod(created, PRIVATE_DIRECTORY_MODE)
