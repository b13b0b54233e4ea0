"""Corpus resolution (path, cache or download) and the LightningDataModule over one text."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from minigpt.errors import DataError
from minigpt.tokenizer import CharTokenizer

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch `url` into `dest` atomically: a temporary file in the same folder, checked against
    `sha256`, then renamed. A failed or corrupt download leaves nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
        if sha256 is not None and (got := sha256_of(Path(tmp))) != sha256:
            raise DataError(f"download from {url} has SHA-256 {got}, expected {sha256}; the file was discarded")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"could not download the corpus from {url} ({reason}); put the file at {dest} "
            f"or pass data.path=/path/to/input.txt"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def resolve_corpus(
    path: str | None,
    name: str | None = None,
    cache_dir: str = "data",
    url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Where the corpus is: `path` if given; else `cache_dir/name/input.txt`; else download it there."""
    if path:
        return Path(path).expanduser()
    if not name:
        raise DataError("no corpus given: data.path is required (pass data.path=/path/to/corpus.txt)")
    cached = Path(cache_dir) / name / "input.txt"
    if cached.is_file():
        return cached
    if not url:
        raise DataError(f"corpus {name!r} is not at {cached} and has no download URL; pass data.path=...")
    return download(url, cached, sha256)


def read_corpus(path: Path) -> str:
    """The corpus as text, with Windows line endings made Unix ones; one clear error per failure."""
    if not path.exists():
        raise DataError(f"corpus file {path} does not exist; pass data.path=/path/to/corpus.txt")
    if path.is_dir():
        raise DataError(f"corpus path {path} is a directory; pass the text file inside it as data.path")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"corpus file {path} is empty; give a text file with at least a few thousand characters")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"corpus file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"convert it (e.g. iconv -t UTF-8) or pick a text file"
        ) from None
    if "\x00" in text:
        raise DataError(f"corpus file {path} contains NUL bytes and looks binary; pass a plain text file")
    return text.replace("\r\n", "\n")


class RandomWindows(IterableDataset):
    """An endless stream of batches of random windows of `block_size + 1` tokens.

    Batch number i is a pure function of (seed, i): resuming at step i replays exactly the batches
    an uninterrupted run would have seen. With several processes, one global batch of
    `batch_size * world_size` windows is drawn per step and each rank takes its own slice.
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
    ) -> None:
        super().__init__()
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.seed, self.start_step, self.rank, self.world_size = seed, start_step, rank, world_size

    def __iter__(self):
        n_starts = len(self.data) - self.block_size  # the last window ends at the last token
        offsets = torch.arange(self.block_size + 1)
        g = torch.Generator()
        step = self.start_step
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        while True:
            g.manual_seed(self.seed * 1_000_003 + step)
            starts = torch.randint(n_starts, (self.batch_size * self.world_size,), generator=g)[lo:hi]
            window = self.data[starts[:, None] + offsets]  # (B, T+1)
            yield window[:, :-1], window[:, 1:]
            step += 1


class FixedWindows(Dataset):
    """Consecutive, non-overlapping windows: every token of the split is predicted exactly once."""

    def __init__(self, data: torch.Tensor, block_size: int, max_windows: int | None = None) -> None:
        n = (len(data) - 1) // block_size
        starts = torch.arange(n) * block_size
        if max_windows is not None and max_windows < n:  # evenly spaced subset, still deterministic
            starts = starts[torch.linspace(0, n - 1, max_windows).long()]
        offsets = torch.arange(block_size + 1)
        self.windows = data[starts[:, None] + offsets]  # (N, T+1)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int):
        w = self.windows[i]
        return w[:-1], w[1:]


class CharDataModule(L.LightningDataModule):
    """One text corpus, character-tokenized, split into the first 90 % (train) and last 10 % (val)."""

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
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DataError(f"data.{key} must be a positive integer, got {value!r}")
        self.block_size, self.batch_size, self.eval_batch_size = block_size, batch_size, eval_batch_size
        self.path, self.name, self.cache_dir, self.url, self.sha256 = path, name, cache_dir, url, sha256
        self.val_fraction, self.val_windows, self.seed = val_fraction, val_windows, seed
        self.tokenizer = CharTokenizer(vocab) if vocab else None
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
        text = read_corpus(path)
        if self.tokenizer is None:
            self.tokenizer = CharTokenizer.from_text(text)
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        n_train = int(len(ids) * (1 - self.val_fraction))
        self.train_data, self.val_data = ids[:n_train], ids[n_train:]
        need = self.block_size + 1
        for split, data in (("train", self.train_data), ("validation", self.val_data)):
            if len(data) < need + 1:
                raise DataError(
                    f"the {split} split of {path} has {len(data)} characters, but block_size+1 = {need} "
                    f"(and one more) are needed; use a longer corpus or a smaller model.block_size"
                )

    def _rank_info(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0
        rank, world = self._rank_info()
        stream = RandomWindows(self.train_data, self.block_size, self.batch_size, self.seed, start, rank, world)
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        windows = FixedWindows(self.val_data, self.block_size, self.val_windows)
        return DataLoader(windows, batch_size=self.eval_batch_size, shuffle=False)
