"""Labelled texts for sequence classification: the file format and the LightningDataModule.

The format is one example per line, `label<TAB>text` (UTF-8; blank lines are skipped; the text is
everything after the first tab). Texts are encoded with the pre-trained model's tokenizer, cut to
`block_size` tokens and right-padded to it; a mask marks the real tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from minigpt.configs import LabelledOptions
from minigpt.data.corpus import UnpaddedShards, read_corpus
from minigpt.errors import ConfigError, DataError
from minigpt.io import file_problem
from minigpt.schema import check_values
from minigpt.tokenizer import Tokenizer

log = logging.getLogger("minigpt")

FORMAT_HINT = "each line is label<TAB>text"


@dataclass
class Example:
    label: str
    text: str
    line: int  # 1-based line number in the file, for error messages


def read_labelled(path: str | Path) -> list[Example]:
    """The examples of a labelled file; a missing or empty file, a malformed line (named by its
    number) or fewer than two distinct labels is one `DataError` line."""
    path = Path(path).expanduser()
    problem = file_problem(path)
    if problem == "is a directory":
        raise DataError(f"labelled file {path} is a directory; pass the .tsv file inside it as data.path")
    if problem is not None:
        raise DataError(f"labelled file {path} {problem}; pass data.path=/path/to/labels.tsv ({FORMAT_HINT})")
    if not path.read_bytes().strip():
        raise DataError(f"labelled file {path} is empty; give lines of label<TAB>text")
    examples = []
    for number, line in enumerate(read_corpus(path).split("\n"), start=1):  # UTF-8 and binary checks
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise DataError(f"line {number} of {path} has no tab: {FORMAT_HINT}")
        if not label.strip():
            raise DataError(f"line {number} of {path} has an empty label: {FORMAT_HINT}")
        if not text:
            raise DataError(f"line {number} of {path} has no text after the tab: {FORMAT_HINT}")
        examples.append(Example(label.strip(), text, number))
    labels = sorted({e.label for e in examples})
    if len(labels) < 2:
        raise DataError(
            f"labelled file {path} has {len(labels)} distinct label ({labels[0]!r}); a classifier needs at least 2"
        )
    return examples


def check_texts(examples: list[Example], tokenizer: Tokenizer, path: str | Path) -> None:
    """Refuse texts with characters the trunk's vocabulary lacks, naming them and a line of each."""
    unknown: dict[str, int] = {}
    for e in examples:
        for ch in tokenizer.unknown_chars(e.text):
            unknown.setdefault(ch, e.line)
    if unknown:
        shown = ", ".join(f"{ch!r} (line {line})" for ch, line in list(unknown.items())[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DataError(
            f"labelled file {path} has {len(unknown)} character(s) outside the vocabulary of the "
            f"pre-trained model: {shown}{more}; remove or replace them (the vocabulary is init_from's)"
        )


def encode_texts(texts: list[str], tokenizer: Tokenizer, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, block_size), each text cut to block_size and right-padded with id 0, and the
    mask (N, block_size) of real tokens. The pad id never matters: in a causal model a position
    only sees those before it, and the head reads real positions only."""
    ids = torch.zeros(len(texts), block_size, dtype=torch.long)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = tokenizer.encode(text)[:block_size]
        ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        lengths[i] = len(tokens)
    mask = torch.arange(block_size)[None, :] < lengths[:, None]
    return ids, mask


class RandomBatches(IterableDataset):
    """An endless stream of batches of examples drawn at random; batch i is a pure function of
    (seed, i), as for the language model's windows, so a resumed run sees the same batches."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int, start_step: int = 0) -> None:
        super().__init__()
        self.tensors, self.batch_size, self.seed, self.start_step = tensors, batch_size, seed, start_step

    def __iter__(self):
        g = torch.Generator()
        step = self.start_step
        while True:
            g.manual_seed(self.seed * 1_000_003 + step)
            index = torch.randint(len(self.tensors[0]), (self.batch_size,), generator=g)
            yield tuple(t[index] for t in self.tensors)
            step += 1


class LabelledDataModule(L.LightningDataModule):
    """A labelled file split by a fixed seeded shuffle into training and validation examples.

    Batches are (ids (B, T), mask (B, T), label index (B,)); `labels` is the sorted label set.
    `tokenizer` is the pre-trained model's (task=classify passes it).
    """

    def __init__(
        self,
        path: str,
        block_size: int,
        tokenizer: Tokenizer | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        val_fraction: float = 0.2,
        split_seed: int = 1337,
        seed: int = 1337,
    ) -> None:
        super().__init__()
        if tokenizer is None:
            raise ConfigError("data=labelled is for a classifier: pass task=classify init_from=<checkpoint>")
        options = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "val_fraction": val_fraction}
        check_values(LabelledOptions, options, "data")  # as declared in minigpt/configs.py
        self.path, self.block_size, self.tokenizer = path, block_size, tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.split_seed, self.seed = val_fraction, split_seed, seed
        self.labels: list[str] = []
        self.train_set: tuple[torch.Tensor, ...] | None = None
        self.val_set: tuple[torch.Tensor, ...] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        examples = read_labelled(self.path)
        check_texts(examples, self.tokenizer, self.path)
        self.labels = sorted({e.label for e in examples})
        ids, mask = encode_texts([e.text for e in examples], self.tokenizer, self.block_size)
        targets = torch.tensor([self.labels.index(e.label) for e in examples])
        cut = int((mask.sum(1) == self.block_size).sum())
        n_val = max(1, round(len(examples) * self.val_fraction))
        if len(examples) - n_val < 1:
            raise DataError(f"labelled file {self.path} has {len(examples)} example(s): too few to split; add more")
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(self.split_seed))
        val, train = order[:n_val], order[n_val:]
        self.train_set = (ids[train], mask[train], targets[train])
        self.val_set = (ids[val], mask[val], targets[val])
        log.info(
            "%d labelled examples (%d train, %d validation), labels %s; %d text(s) reach block_size %d",
            len(examples),
            len(train),
            len(val),
            ", ".join(self.labels),
            cut,
            self.block_size,
        )

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0
        rank = self.trainer.global_rank if self.trainer is not None else 0
        # each process draws its own batches: the seed is offset by the rank
        stream = RandomBatches(self.train_set, self.batch_size, self.seed + 7919 * rank, start)
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        dataset = TensorDataset(*self.val_set)
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=UnpaddedShards(dataset, rank, world))
