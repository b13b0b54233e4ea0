"""Files, safely: written atomically (never half a file) and as strict JSON; read only when a
path names a regular file; text read from one shown only as printable characters."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """`write(f)` into a temporary file in the same folder, fsync, then rename over `path`: a crash
    or a full disk at any moment leaves either the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity (in nested dicts and lists too) made None: JSON has
    neither, and `json.dumps` would write tokens other tools refuse."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


# --------------------------------------------------------------------------- showing what a file holds


def printable(text: object, limit: int | None = 200, keep: str = "") -> str:
    """`text` (str() of it) cut to `limit` characters (None: all), with every character a terminal
    or a viewer would act on (control characters such as ESC, C1 controls, line and paragraph
    separators, lone surrogates) written as its Python escape, so that text from a file can be
    printed, logged or written into a report without acting on what shows it. `keep` lists the
    characters that stay as they are where they belong to the text (newline, tab)."""
    text = str(text)
    text = text if limit is None else text[:limit]
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def markdown_code(text: object, block: bool = False) -> str:
    """`text` from a file as Markdown code that nothing in it can end early: printable (a block
    keeps its newlines and tabs), between runs of backticks longer than any it holds: an inline
    span, or with `block` a fenced block (its fence on lines of their own)."""
    text = printable(text, None, keep="\n\t" if block else "")
    run = max((len(r) for r in re.findall(r"`+", text)), default=0)
    if block:
        fence = "`" * max(3, run + 1)
        return f"{fence}\n{text}\n{fence}"
    ticks = "`" * (run + 1)
    return f"{ticks} {text} {ticks}" if run else f"`{text}`"


# --------------------------------------------------------------------------- what a path names

# what os.stat says a path is, for everything but a regular file
SPECIAL_FILES = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a pipe (a FIFO, or a process substitution such as <(cat file)), which can be read only once"),
    (stat.S_ISCHR, "is a character device, not a file"),
    (stat.S_ISBLK, "is a block device, not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
)


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a text or data file (`is a directory`, `is a pipe ...`, `does
    not exist`, `is a symbolic link loop`), or None when it is a regular file. Asked with os.stat,
    which never blocks: opening a FIFO waits for a writer forever and /dev/zero never ends."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return _stat_problem(path, e)
    if stat.S_ISREG(mode):
        return None
    return next((problem for test, problem in SPECIAL_FILES if test(mode)), "is not a regular file")


def _stat_problem(path: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "is a symbolic link loop (a link that leads back to itself)"
    if e.errno == errno.ENOENT and path.is_symlink():
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    if e.errno == errno.ENOENT:
        return "does not exist"
    if e.errno == errno.ENOTDIR:
        return "does not exist (a part of the path before its name is a file, not a folder)"
    return f"cannot be read ({e.strerror or e})"


def remove_stale_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_write` leaves in `folder` when its process is killed
    mid-write (`.<name>.<random>.tmp`); return them. Call it only while no other process can be
    writing there (training holds the run directory's lock)."""
    stale = sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else []
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale
