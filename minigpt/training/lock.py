"""One training run per run directory: an exclusive lock, held from the run directory's check
until `train` returns.

The lock is `flock` on `<run_dir>/.train.lock`, which holds the PID and host of the process that
has it. The kernel drops a flock when its process ends, however it ends (an exception, Ctrl+C,
SIGKILL, a lost node on most shared file systems), so a lock left behind by a crash is never in
the way: the file may still be there, but nobody holds it. A second run in the same directory
gets one line naming the process that holds it. With several processes (DDP), rank 0 holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lightning.pytorch.utilities import rank_zero_only

from minigpt.errors import RunDirError
from minigpt.io import remove_stale_writes

log = logging.getLogger("minigpt")

LOCK_FILE = ".train.lock"
F = TypeVar("F", bound=Callable[..., Any])

# the run directories this process holds: resolved path -> the open lock file
_held: dict[Path, int] = {}


def lock_run_dir(run_dir: Path) -> None:
    """Hold `run_dir` for this process (again, if it already does), or refuse in one line naming
    the process holding it. Once held, no other process can be writing checkpoints there, so the
    temporary files of a checkpoint write that a kill cut short are removed."""
    if rank_zero_only.rank != 0:  # DDP's other processes join rank 0's run
        return
    key = Path(run_dir).resolve()
    if key in _held:
        return
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise RunDirError(
            f"run directory {run_dir} is in use by another training run ({holder}); wait for it to end or stop "
            f"it, or choose another run_dir / hydra.run.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _held[key] = fd
    for stale in remove_stale_writes(key / "checkpoints"):
        log.info("removed %s, left by a checkpoint write that was cut short", stale)


def release_run_dirs() -> None:
    """Let go of every run directory this process holds (the lock file stays, unlocked)."""
    while _held:
        _, fd = _held.popitem()
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the only descriptor drops the flock


def holds_run_dir(fn: F) -> F:
    """Decorate a run (`train`): the run directories it locks are released when it returns or
    raises, so the same process can train again, there or elsewhere, and others can follow."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            release_run_dirs()

    return wrapper  # type: ignore[return-value]
