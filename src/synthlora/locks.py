"""One process at a time trains a training folder.

Snakemake locks a working directory against a second run, but `snakemake --unlock` lifts that lock
whether or not the first run is still alive, and two runs would then train the same LoRA into the
same files. The train job therefore holds an OS lock (flock) on ``train.lock`` in its training
folder: the kernel releases it when the process ends, however it ends (a crash or SIGKILL leaves
no stale lock behind), and the file records who holds it, so the second run can say whom it is
waiting for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator


class TrainingLocked(RuntimeError):
    pass


def _record() -> str:
    where = f"pid {os.getpid()} on {socket.gethostname()}"
    if os.environ.get("SLURM_JOB_ID"):
        where += f" (SLURM job {os.environ['SLURM_JOB_ID']})"
    return f"{where}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"


@contextlib.contextmanager
def training_lock(path: str | Path) -> Iterator[None]:
    """Hold the lock at ``path`` for the block; raise TrainingLocked at once, naming the holder, when
    another live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a process that wrote no record"
            raise TrainingLocked(
                f"{path.parent} is being trained right now by another run ({who}). Two runs must not train "
                "the same LoRA: wait for that run to finish (or stop it), then run snakemake again; it "
                "resumes from the newest saved epoch. (This happens after `snakemake --unlock` while the "
                "other run was still alive.)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_record() + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def holder(path: str | Path) -> str | None:
    """Who holds the lock at ``path`` (its record), or None when no live process does."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a process that wrote no record"
        return None
    finally:
        os.close(fd)
