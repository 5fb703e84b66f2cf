"""Where a card image lives: in memory, or in a locked file rewritten atomically on each change."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from pathlib import Path
from typing import IO

from card_emulator.errors import CardFileError, CardImageError
from card_emulator.state.image import CardImage

PRIVATE_FILE_MODE = 0o600  # card images hold private keys
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _replace_image(path: Path, data: bytes) -> None:
    """Replace the card file so that a crash leaves either the old or the new image, whole."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # Created 0600 from the start: the image holds private keys.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # makes the rename itself durable
    finally:
        os.close(directory)


def read_image(path: Path) -> CardImage:
    """Load a card file without locking it (whole files only: writers replace them atomically)."""
    try:
        return CardImage.loads(Path(path).read_bytes())
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

    def commit(self) -> None:
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

    @classmethod
    def create(cls, path: Path, image: CardImage) -> None:
        """Write a new card file; refuses to overwrite one that exists."""
        path = Path(path)
        if path.exists():
            raise CardFileError(f"{path} already exists; refusing to overwrite a card")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _replace_image(path, image.dumps())
        except OSError as exc:
            raise CardFileError(f"cannot write {path}: {exc.strerror}") from None

    @classmethod
    def open(cls, path: Path) -> FileStore:
        """Lock the card file (one process at a time) and load it.

        A card file that this process may not change (read-only mount, directory or file)
        still opens: reading works, and a command that must change the card says so.
        """
        path = Path(path)
        if not path.is_file():
            read_image(path)  # raises the readable error
        lock_path = path.with_name(path.name + ".lock")
        read_only = None if os.access(path, os.W_OK) else "the file is not writable"
        # Held open (and locked) for as long as the card is in use.
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
            lock: IO[bytes] = open(descriptor, "r+b")  # noqa: SIM115
        except OSError as exc:
            if exc.errno not in NOT_WRITABLE:
                raise CardFileError(f"cannot lock {lock_path}: {exc.strerror}") from None
            read_only = exc.strerror
            # An existing lock file still excludes writers; else nobody can be writing.
            lock = open(lock_path if lock_path.exists() else path, "rb")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = lock.read().decode(errors="replace").strip() or "unknown"
            lock.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CardFileError(
                    f"{path} is in use by another process (pid {holder}); "
                    "a card can be in one reader at a time"
                ) from None
            raise CardFileError(f"cannot lock {lock_path}: {exc.strerror}") from None
        if read_only is None:
            lock.truncate(0)
            lock.write(str(os.getpid()).encode())
            lock.flush()
        try:
            image = read_image(path)
        except CardFileError:
            lock.close()
            raise
        store = cls(path, image, lock)
        store.read_only = read_only
        return store

    def commit(self) -> None:
        """Make the current image durable before the card answers."""
        if self._lock is None:
            raise CardFileError(f"{self.path} is closed")
        if self.read_only is not None:
            raise CardFileError(
                f"{self.path} cannot be changed ({self.read_only}); this command needs to "
                "change the card (a retry counter, a PIN)"
            )
        try:
            _replace_image(self.path, self.image.dumps())
        except OSError as exc:
            raise CardFileError(
                f"cannot write {self.path} ({exc.strerror}); the card was not changed"
            ) from None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


CardStore = MemoryStore | FileStore
