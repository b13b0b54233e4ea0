"""Files, safely: written atomically (never half a file) and as strict JSON; read only when a
path names a regular file; text read from one shown only as printable characters."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from minigpt.errors import ConfigError, MinigptError, RunDirError


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


# the folder this package sits in, a run directory no run may use
REPO_ROOT = Path(__file__).resolve().parents[1]
# what a minigpt run leaves in its directory: a folder holding one of them is an earlier run's
RUN_MARKERS = frozenset({".hydra", "checkpoints", "tensorboard", "train.log", "summary.json", ".train.lock"})


def check_run_place(
    path: Path, what: str = "run directory", option: str = "run_dir", only_reserved: bool = False
) -> None:
    """A run writes checkpoints, logs and a lock into its directory and owns it from then on: one
    line refusing the root of the file system, the home folder and the repository, and (unless
    `only_reserved`) a folder that holds other files than an earlier minigpt run's."""
    where = Path(path).expanduser().resolve()
    reserved = {Path("/"): "the root of the file system", Path.home().resolve(): "your home folder"}
    reserved[REPO_ROOT] = "minigpt's repository"
    if where in reserved:
        raise RunDirError(
            f"{what} {path} is {reserved[where]}, which a run must not write into; "
            f"pass {option}=<a new folder>, such as outputs/train/runs/mine"
        )
    if only_reserved or not where.is_dir():
        return
    held = sorted(p.name for p in where.iterdir())
    if held and not RUN_MARKERS.intersection(held):
        shown = printable(", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else ""), 200)
        raise RunDirError(
            f"{what} {path} holds files that are not a minigpt run's ({shown}); pass {option}=<a new or "
            f"empty folder>, or an earlier run's folder with resume=auto"
        )


def check_writable(path: Path, option: str) -> None:
    """One line unless a file or folder can be created at `path`: its nearest existing ancestor
    must be a folder we can write in (tried with a temporary file, which also catches read-only
    disks and, for root, folders such as /sys). Cheap, so tools call it before any real work."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{option}={path} cannot be written: {folder} is a file, not a folder; pass another {option}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(
            f"{option}={path} cannot be written: {folder} is not writable ({e.strerror or e}); "
            f"pass {option}= in a writable folder"
        ) from None


def check_out_dir(out_dir: str | Path) -> Path:
    """A folder the results can go into without replacing anything: new, or existing and empty,
    and writable. Checked before any work, so a refused run costs nothing and changes nothing."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir={out_dir} is a file, not a folder; pass out_dir=<a new folder>")
    if out_dir.is_dir():
        held = sorted(p.name for p in out_dir.iterdir())
        if held:
            shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
            raise ConfigError(
                f"out_dir={out_dir} already holds {shown}; pass out_dir=<a new folder> (the default is a new "
                f"timestamped one) or move those files away"
            )
    check_writable(out_dir, "out_dir")
    return out_dir


def read_text_file(
    value: str, option: str, instead: str, max_bytes: int | None = None, from_end: bool = False, why: str = ""
) -> str:
    """The UTF-8 text of the file an option names (`prompt_file`, `text_file`), or one line saying
    what is wrong with it and what to pass `instead`. A file larger than `max_bytes` is read only
    in part, its first (or with `from_end` its last) `max_bytes` bytes, saying so and `why` in one
    line on stderr: a file of any size costs no more memory than that."""
    path = Path(value).expanduser()
    problem = file_problem(path)  # a FIFO or /dev/zero is named, never opened
    if problem is not None:
        raise MinigptError(f"{option} {path} {problem}; pass a UTF-8 text file or {instead}")
    size = path.stat().st_size
    cut = max_bytes is not None and size > max_bytes
    with path.open("rb") as f:
        if cut and from_end:
            f.seek(size - max_bytes)
        data = f.read(max_bytes if cut else -1)
    if cut:
        part = "last" if from_end else "first"
        print(
            f"note: {option} {printable(path)} holds {size:,} bytes; {why}, so only its {part} {max_bytes:,} are read",
            file=sys.stderr,
        )
        data = _whole_characters(data, from_end)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MinigptError(
            f"{option} {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            f"pass a UTF-8 text file or {instead}"
        ) from None


def _whole_characters(data: bytes, from_end: bool) -> bytes:
    """`data` cut from a UTF-8 file without the partial character at the cut (at most 3 bytes)."""
    if from_end:
        skip = next((i for i, b in enumerate(data[:4]) if b & 0xC0 != 0x80), min(len(data), 4))
        return data[skip:]
    for back in range(min(4, len(data))):
        lead = data[len(data) - 1 - back]
        if lead & 0xC0 != 0x80:  # the last character's first byte: keep it only if it is whole
            need = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
            return data if need <= back + 1 else data[: len(data) - 1 - back]
    return data
