"""Files that survive a crash whole: the issuer's state and keys, the CLI's outputs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def write_atomically(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, whole."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # Created with its final mode, so a key is never briefly readable by others.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
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
