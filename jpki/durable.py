"""Files that survive a crash whole: the issuer's state and keys, the CLI's outputs."""

from __future__ import annotations

import glob
import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
TEMPORARY_PREFIX = "."
TEMPORARY_SUFFIX = ".tmp"


def _temporary_name(path: Path) -> Path:
    return path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def write_atomically(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, whole.

    The file gets exactly `mode`, whatever the umask.
    """
    path = Path(path)
    temporary = _temporary_name(path)
    # Created private and only then given its mode, so a key is never briefly readable by others.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask can neither widen nor narrow it
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename, link or unlink in `directory` itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(path: Path) -> None:
    """Delete the temporary copies of `path` that a crash left mid-write.

    Only safe while the caller excludes every other writer of `path` (holds its lock): a
    concurrent writer's copy would otherwise vanish before its rename.
    """
    path = Path(path)
    for leftover in path.parent.glob(
        f"{TEMPORARY_PREFIX}{glob.escape(path.name)}.*{TEMPORARY_SUFFIX}"
    ):
        leftover.unlink(missing_ok=True)


def make_private_directories(directory: Path) -> None:
    """Create `directory` and its missing parents 0700, whatever the umask; keep existing ones."""
    directory = Path(directory)
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(mode=PRIVATE_DIRECTORY_MODE, exist_ok=True)
        os.chmod(created, PRIVATE_DIRECTORY_MODE)  # mkdir's mode is narrowed by the umask
