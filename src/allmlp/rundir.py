"""Run folders: one training per folder, held by an OS lock; default names taken without races."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path


class RunFolderBusy(ValueError):
    """Another training holds the run folder."""


def lock_pid(path: Path) -> int | None:
    """The id of the process holding a flock on folder `path`, from Linux's /proc/locks; None when none is listed."""
    info = os.stat(path)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


def lock_holder(path: Path) -> str:
    """Who holds the flock on folder `path`, from Linux's /proc/locks ("process PID"), or a vaguer phrase."""
    pid = lock_pid(path)
    return "another process" if pid is None else f"process {pid}"


class RunFolder:
    """A run folder claimed by this process: an exclusive `flock` on the folder itself until `release()` or exit.

    The kernel drops the lock when the process dies (even by SIGKILL), so a crashed run never blocks its folder,
    and no lock file is left behind.
    """

    def __init__(self, path: Path, created: bool):
        self.path = path
        self.created = created  # made by this claim: removed again if the run is rejected before training
        self._fd: int | None = None
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(f"run folder {path} is in use by {lock_holder(path)} (another training); wait for "
                                "it to finish or choose another --run-dir") from None
        self._fd = fd

    def release(self) -> None:
        """Drop the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Release, and delete the folder if this claim created it (a run rejected before training left no trace)."""
        self.release()
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)


def claim(path: str | Path, reuse: bool) -> RunFolder:
    """Lock `path` (`reuse`: the folder may exist, as for --resume or an explicit --run-dir), else the first free
    name of `path`, `path-2`, `path-3`, ... created atomically, so two runs started together get two folders."""
    path = Path(path)
    if reuse:
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        return RunFolder(path, created)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            return RunFolder(candidate, created=True)
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


def has_progress(path: Path) -> bool:
    """Whether a run folder holds anything worth keeping: weights, or a logged metric."""
    metrics = path / "metrics.jsonl"
    return (path / "model.safetensors").exists() or (metrics.exists() and metrics.stat().st_size > 0)
