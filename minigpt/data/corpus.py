"""Corpus resolution (path, cache or download) and the LightningDataModule over one text."""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from minigpt.configs import CorpusOptions
from minigpt.errors import DataError
from minigpt.io import atomic_write, file_problem
from minigpt.schema import check_values
from minigpt.tokenizer import BPETokenizer, CharTokenizer, Tokenizer

log = logging.getLogger("minigpt")

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


DOWNLOAD_TIMEOUT = 30.0  # seconds without an answer before a download gives up


def download(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Fetch `url` into `dest` with `torch.hub.download_url_to_file`, which writes a temporary file
    beside it, checks it against `sha256` and only then renames it: a failed or corrupt download
    leaves nothing behind. Offline, one line says where to put the file instead."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, dest)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # torch.hub's urlopen takes no timeout of its own
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=sha256, progress=False)
    except RuntimeError as e:
        if "invalid hash value" not in str(e):  # torch.hub's hash check says so; anything else is a bug
            raise
        got = str(e).rsplit('got "', 1)[-1].rstrip('")')
        raise DataError(f"download from {url} has SHA-256 {got}, expected {sha256}; the file was discarded") from None
    except OSError as e:  # urllib.error.URLError and HTTPError are OSErrors
        raise DataError(
            f"could not download the corpus from {url} ({getattr(e, 'reason', None) or e}); put the file at {dest} "
            f"or pass data.path=/path/to/input.txt"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return dest


def resolve_corpus(
    path: str | None,
    name: str | None = None,
    cache_dir: str = "data",
    url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Where the corpus is: `path` if given; else `cache_dir/name/input.txt`; else download it there.
    A `path` whose SHA-256 is the named corpus's is copied into the cache the first time, so later
    commands find it there without `data.path` and without trying to download."""
    if path:
        given = Path(path).expanduser()
        if name and sha256:
            remember(given, Path(cache_dir) / name / "input.txt", sha256)
        return given
    if not name:
        raise DataError("no corpus given: data.path is required (pass data.path=/path/to/corpus.txt)")
    cached = Path(cache_dir) / name / "input.txt"
    if cached.is_file():
        return cached
    if not url:
        raise DataError(f"corpus {name!r} is not at {cached} and has no download URL; pass data.path=...")
    return download(url, cached, sha256)


def remember(given: Path, cached: Path, sha256: str) -> None:
    """Copy `given` to `cached` (atomically) when the cache is empty and `given` has the expected
    SHA-256. Anything else (another corpus, an unreadable file, a read-only cache) leaves the cache
    as it is: the run reads `given` all the same."""
    if cached.is_file() or not given.is_file():
        return
    try:
        data = given.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            return
        atomic_write(cached, lambda f: f.write(data))
    except OSError as e:
        log.warning("could not keep a copy of %s in %s (%s); pass data.path again next time", given, cached, e)
        return
    log.info("copied %s to %s (SHA-256 checked): later commands find it there without data.path", given, cached)


def check_corpus_file(path: Path) -> None:
    """One line unless `path` is a regular file: a directory, a FIFO, a device or a symbolic link
    loop is named for what it is, before anything opens it (which could wait forever)."""
    problem = file_problem(path)
    if problem == "is a directory":
        raise DataError(f"corpus path {path} is a directory; pass the text file inside it as data.path")
    if problem is not None:
        raise DataError(f"corpus file {path} {problem}; pass a text file as data.path=/path/to/corpus.txt")


CHUNK_BYTES = 1 << 22  # the corpus is read, checked and encoded 4 MiB at a time


def iter_corpus(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The corpus as UTF-8 text in chunks of about `chunk_bytes`, Windows line endings made Unix
    ones, one clear error per failure. Memory stays bounded however large the file is."""
    check_corpus_file(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, carry, seen_text = 0, "", False  # carry: a trailing "\r" whose "\n" is in the next chunk
    with open(path, "rb") as f:
        while True:
            raw = f.read(chunk_bytes)
            final = not raw
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"corpus file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                    f"{offset - pending + e.start}); convert it (e.g. iconv -t UTF-8) or pick a text file"
                ) from None
            offset += len(raw)
            text, carry = carry + text, ""
            if not final and text.endswith("\r"):
                text, carry = text[:-1], "\r"
            if "\x00" in text:
                raise DataError(f"corpus file {path} contains NUL bytes and looks binary; pass a plain text file")
            text = text.replace("\r\n", "\n")
            if text:
                seen_text = seen_text or not text.isspace()
                yield text
            if final:
                break
    if not seen_text:
        raise DataError(f"corpus file {path} is empty; give a text file with at least a few thousand characters")


def read_corpus(path: Path) -> str:
    """The whole corpus as one string (small files); `iter_corpus` does the reading and checks."""
    return "".join(iter_corpus(path))


def scan_vocabulary(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[str]:
    """The sorted set of characters of the corpus, read in chunks."""
    chars: set[str] = set()
    for text in iter_corpus(path, chunk_bytes):
        chars.update(text)
    return sorted(chars)


def token_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer type that holds every id: 1 byte a token for up to 256 ids."""
    if vocab_size <= 256:
        return torch.uint8
    return torch.uint16 if vocab_size <= 1 << 16 else torch.int32


def encode_corpus(
    path: Path, tokenizer: Tokenizer, chunk_bytes: int = CHUNK_BYTES, token_dir: str | None = None
) -> torch.Tensor:
    """The corpus as a 1-D tensor of token ids backed by a memory-mapped file: encoded chunk by
    chunk into a temporary file (1 byte a token when the vocabulary fits, else 2 or 4), so a
    corpus larger than memory trains with bounded RAM. The file is unlinked once mapped."""
    chunks = iter_corpus(path, chunk_bytes)
    if isinstance(tokenizer, CharTokenizer):
        pieces = _char_ids(chunks, tokenizer, path)
    else:
        pieces = _tokenizer_ids(chunks, tokenizer, path, chunk_bytes)
    dtype = token_dtype(tokenizer.vocab_size)
    folder = token_dir or os.environ.get("TMPDIR") or "a temporary folder"
    try:
        fd, tmp = tempfile.mkstemp(prefix="minigpt-tokens-", suffix=".bin", dir=token_dir)
    except OSError as e:  # TMPDIR (and every fallback) unwritable, or token_dir
        raise _token_file_error(f"in {folder}", e) from None
    try:
        n = 0
        with os.fdopen(fd, "wb") as out:
            for ids in pieces:
                out.write(ids.to(dtype).numpy().tobytes())
                n += len(ids)
        return torch.from_file(tmp, shared=False, size=n, dtype=dtype)
    except OSError as e:
        if e.filename not in (None, tmp):  # not the token file's (the corpus's own, say)
            raise
        raise _token_file_error(tmp, e) from None  # a full disk, or a file-size limit
    finally:
        with contextlib.suppress(OSError):  # the mapping outlives the name on POSIX
            os.unlink(tmp)


def _token_file_error(where: str, e: OSError) -> DataError:
    """The token file could not be written: name where, and how to pick another folder."""
    return DataError(
        f"cannot write the corpus's token file {where} ({e.strerror or e}); it takes 1 to 4 bytes a token: "
        f"free space there, or set TMPDIR to a writable folder on a disk with room"
    )


def _unknown_in_corpus(path: Path, tokenizer: Tokenizer, text: str) -> DataError:
    unknown = " ".join(repr(c) for c in tokenizer.unknown_chars(text)[:10])
    return DataError(
        f"corpus file {path} has characters outside the model's vocabulary ({unknown}); "
        f"resume with the corpus the checkpoint was trained on, or start a new run"
    )


def _char_ids(chunks: Iterator[str], tokenizer: CharTokenizer, path: Path) -> Iterator[torch.Tensor]:
    """Character ids of each chunk, vectorised: a sorted search of its code points."""
    codepoints = torch.tensor([ord(c) for c in tokenizer.chars], dtype=torch.int32)  # sorted, as chars are
    for text in chunks:
        cps = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32)
        ids = torch.searchsorted(codepoints, cps).clamp_(max=len(codepoints) - 1)
        if not torch.equal(codepoints[ids], cps):
            raise _unknown_in_corpus(path, tokenizer, text)
        yield ids


# Places where GPT-2's pre-tokenizer always starts a new word, so encoding the text on either
# side apart gives the ids of encoding it whole: after a newline followed by a non-space, and
# (for text without newlines) before a single space followed by a non-space.
LINE_START = re.compile(r"(?<=\n)(?=\S)")
WORD_START = re.compile(r"(?<=\S)(?= \S)")


def _tokenizer_ids(
    chunks: Iterator[str], tokenizer: BPETokenizer, path: Path, chunk_bytes: int
) -> Iterator[torch.Tensor]:
    """Ids of each chunk from a subword tokenizer. A chunk ends in the middle of a word, so its
    last line waits for the next chunk; lines are encoded in parallel batches."""
    carry = ""
    for text in chunks:
        if tokenizer.unknown_chars(text):
            raise _unknown_in_corpus(path, tokenizer, text)
        lines = LINE_START.split(carry + text)
        carry = lines.pop()
        if len(carry) > chunk_bytes:  # a very long line: cut it before its last word instead
            cut = max((m.start() for m in WORD_START.finditer(carry)), default=len(carry))
            lines.append(carry[:cut])
            carry = carry[cut:]
        if lines:
            yield _encode_lines(tokenizer, lines)
    if carry:
        yield _encode_lines(tokenizer, [carry])


def _encode_lines(tokenizer: BPETokenizer, lines: list[str]) -> torch.Tensor:
    ids = tokenizer.encode_batch(lines)
    return torch.tensor([i for line in ids for i in line], dtype=torch.int32)


class RandomWindows(IterableDataset):
    """An endless stream of batches of random windows of `block_size + 1` tokens.

    Batch number i is a pure function of (seed, i): resuming at step i replays exactly the batches
    an uninterrupted run would have seen. With several processes, one global batch of
    `batch_size * world_size` windows is drawn per step and each rank takes its own slice.
    With `ramp_steps` > 0 the batch grows linearly from `ramp_start` windows at step 0 to
    `batch_size` at step `ramp_steps` (`batch_size_at`): more, cheaper updates while the gradient
    is large and consistent, the full batch once its noise matters.
    """

    def __init__(
        self,
        data: torch.Tensor,
        block_size: int,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        ramp_steps: int = 0,
        ramp_start: int = 16,
    ) -> None:
        super().__init__()
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.seed, self.start_step, self.rank, self.world_size = seed, start_step, rank, world_size
        self.ramp_steps, self.ramp_start = ramp_steps, ramp_start

    def batch_size_at(self, step: int) -> int:
        """Windows per rank in batch number `step`."""
        if step >= self.ramp_steps:
            return self.batch_size
        return round(self.ramp_start + (self.batch_size - self.ramp_start) * step / self.ramp_steps)

    def __iter__(self):
        n_starts = len(self.data) - self.block_size  # the last window ends at the last token
        offsets = torch.arange(self.block_size + 1)
        g = torch.Generator()
        step = self.start_step
        while True:
            g.manual_seed(self.seed * 1_000_003 + step)
            b = self.batch_size_at(step)
            starts = torch.randint(n_starts, (b * self.world_size,), generator=g)[self.rank * b : (self.rank + 1) * b]
            window = self.data[starts[:, None] + offsets].long()  # (B, T+1)
            yield window[:, :-1], window[:, 1:]
            step += 1


class FixedWindows(Dataset):
    """Consecutive, non-overlapping windows: every token of the split is predicted exactly once.

    Windows are sliced on access, so a memory-mapped split is never copied whole.
    """

    def __init__(self, data: torch.Tensor, block_size: int, max_windows: int | None = None) -> None:
        n = (len(data) - 1) // block_size
        starts = torch.arange(n) * block_size
        if max_windows is not None and max_windows < n:  # evenly spaced subset, still deterministic
            starts = starts[torch.linspace(0, n - 1, max_windows).long()]
        self.data, self.block_size, self.starts = data, block_size, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        start = int(self.starts[i])
        w = self.data[start : start + self.block_size + 1].long()
        return w[:-1], w[1:]


class UnpaddedShards(DistributedSampler):
    """Rank r of w takes items r, r + w, r + 2w, ... in order. Unlike DistributedSampler it never
    pads the shards to equal length with repeated items, which the token-weighted validation mean
    would count twice; being a DistributedSampler, Lightning leaves it in place."""

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class CharDataModule(L.LightningDataModule):
    """One text corpus, tokenized, split into the first 90 % (train) and last 10 % (val) of its tokens.

    `tokenizer` is `char` (the corpus's characters, the default) or `bpe` (byte-level BPE with
    `bpe_vocab_size` tokens, trained on the corpus), or a ready tokenizer such as a checkpoint's.
    """

    def __init__(
        self,
        block_size: int,
        batch_size: int = 32,
        path: str | None = None,
        name: str | None = "tinyshakespeare",
        cache_dir: str = "data",
        url: str | None = SHAKESPEARE_URL,
        sha256: str | None = SHAKESPEARE_SHA256,
        val_fraction: float = 0.1,
        eval_batch_size: int = 64,
        val_windows: int | None = None,
        seed: int = 1337,
        vocab: list[str] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        tokenizer: str | Tokenizer = "char",
        bpe_vocab_size: int = 1024,
        batch_ramp_steps: int = 0,
        batch_ramp_start: int = 16,
    ) -> None:
        super().__init__()
        options = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "val_fraction": val_fraction}
        options |= {"batch_ramp_steps": batch_ramp_steps, "val_windows": val_windows}
        check_values(CorpusOptions, options, "data")  # as declared in minigpt/configs.py
        if batch_ramp_steps and not 0 < batch_ramp_start <= batch_size:
            raise DataError(
                f"data.batch_ramp_start={batch_ramp_start!r} must be between 1 and data.batch_size={batch_size}"
            )
        self.batch_ramp_steps, self.batch_ramp_start = batch_ramp_steps, batch_ramp_start
        self.block_size, self.batch_size, self.eval_batch_size = block_size, batch_size, eval_batch_size
        self.path, self.name, self.cache_dir, self.url, self.sha256 = path, name, cache_dir, url, sha256
        self.val_fraction, self.val_windows, self.seed = val_fraction, val_windows, seed
        self.chunk_bytes = chunk_bytes
        if isinstance(tokenizer, str):
            check_values(CorpusOptions, {"tokenizer": tokenizer}, "data")
        self.tokenizer_kind = tokenizer if isinstance(tokenizer, str) else tokenizer.kind
        self.bpe_vocab_size = bpe_vocab_size
        self.tokenizer: Tokenizer | None = None
        if not isinstance(tokenizer, str):
            self.tokenizer = tokenizer
        elif vocab:
            self.tokenizer = CharTokenizer(vocab)
        self.train_data: torch.Tensor | None = None
        self.val_data: torch.Tensor | None = None

    def corpus_path(self) -> Path:
        return resolve_corpus(self.path, self.name, self.cache_dir, self.url, self.sha256)

    def prepare_data(self) -> None:
        self.corpus_path()  # downloads once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.train_data is not None:
            return
        path = self.corpus_path()
        if self.tokenizer is None and self.tokenizer_kind == "bpe":
            self.tokenizer = BPETokenizer.train(iter_corpus(path, self.chunk_bytes), self.bpe_vocab_size)
        if self.tokenizer is None:
            chars = scan_vocabulary(path, self.chunk_bytes)
            if len(chars) < 2:
                raise DataError(
                    f"corpus file {path} has a single distinct character ({chars[0]!r}): there is nothing to "
                    f"learn; give a real text"
                )
            self.tokenizer = CharTokenizer(chars)
        ids = encode_corpus(path, self.tokenizer, self.chunk_bytes)
        if self.tokenizer_kind != "char":
            log.info(
                "%s tokenizer: %d tokens, the corpus is %d tokens",
                self.tokenizer_kind,
                self.tokenizer.vocab_size,
                len(ids),
            )
        n_train = int(len(ids) * (1 - self.val_fraction))
        self.train_data, self.val_data = ids[:n_train], ids[n_train:]
        need = self.block_size + 1
        unit = "characters" if self.tokenizer_kind == "char" else "tokens"
        for split, data in (("train", self.train_data), ("validation", self.val_data)):
            if len(data) < need + 1:
                raise DataError(
                    f"the {split} split of {path} has {len(data)} {unit}, but block_size+1 = {need} "
                    f"(and one more) are needed; use a longer corpus or a smaller model.block_size"
                )

    def _rank_info(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0
        rank, world = self._rank_info()
        stream = RandomWindows(
            self.train_data,
            self.block_size,
            self.batch_size,
            self.seed,
            start,
            rank,
            world,
            ramp_steps=self.batch_ramp_steps,
            ramp_start=self.batch_ramp_start,
        )
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_info()
        windows = FixedWindows(self.val_data, self.block_size, self.val_windows)
        return DataLoader(windows, batch_size=self.eval_batch_size, sampler=UnpaddedShards(windows, rank, world))
