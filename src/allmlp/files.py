"""Writing files so that a crash never leaves half of one: a unique temporary name beside it, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_path(target: Path, suffix: str = ".tmp") -> Path:
    """A new, unique file beside `target`: write it there, then rename it onto `target` (two processes writing
    the same file never write into each other's half-written copy)."""
    fd, name = tempfile.mkstemp(dir=Path(target).parent, prefix=f".{Path(target).name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def replace_durably(tmp: Path, path: Path) -> None:
    """Flush `tmp` to disk, then rename it over `path`: readers see the old file or the new one, never half."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a unique temporary file and a rename, so a crash never leaves half a file."""
    tmp = temporary_path(path)
    try:
        tmp.write_bytes(data)
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
