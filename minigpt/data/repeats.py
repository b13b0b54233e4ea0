"""A text whose pieces repeat: the data on which an induction head pays off.

The corpus (Tiny Shakespeare by default, or any text, as for `CharDataModule`) is cut into
consecutive segments of `min_len` to `max_len` tokens, each length drawn at random, and every
segment is written twice: "To be, orTo be, or not to not to ...". The first copy is predicted
as well as the language allows; the second copy almost perfectly by a model that finds the
earlier occurrence of the current token and copies what followed it: an induction head
(Olsson et al., 2022). Because the length varies, no fixed offset does the job, so a head
cannot get there by position alone. Real text, not random symbols, because on text a
previous-token head (the first half of the induction circuit) is useful by itself and forms
early, so the induction head built on it follows within minutes.
"""

from __future__ import annotations

import torch

from minigpt.configs import RepeatsOptions
from minigpt.data.corpus import CharDataModule
from minigpt.errors import ConfigError
from minigpt.schema import check_values


def repeat_segments(ids: torch.Tensor, min_len: int, max_len: int, seed: int) -> torch.Tensor:
    """`ids` (N,) cut into consecutive segments of random lengths in [min_len, max_len], each
    written twice; the last, incomplete segment is dropped. The same seed cuts the same way."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (len(ids) // min_len + 1,), generator=g)
    ends = lengths.cumsum(0)
    lengths = lengths[ends <= len(ids)]
    starts = ends[: len(lengths)] - lengths
    segment = torch.repeat_interleave(torch.arange(len(lengths)), 2 * lengths)  # the segment of each output token
    first = torch.repeat_interleave(2 * lengths.cumsum(0) - 2 * lengths, 2 * lengths)  # where its copies start
    within = (torch.arange(len(segment)) - first) % lengths[segment]  # the offset in the segment, twice over
    return ids[starts[segment] + within]


class RepeatsDataModule(CharDataModule):
    """`CharDataModule` whose training and validation splits are each passed through
    `repeat_segments` (after the split, so no validation text is trained on)."""

    def __init__(
        self,
        block_size: int,
        *args,
        min_len: int = 4,
        max_len: int | None = None,
        repeat_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(block_size, *args, **kwargs)
        max_len = block_size // 2 if max_len is None else max_len
        check_values(RepeatsOptions, {"min_len": min_len, "max_len": max_len}, "data")
        if max_len < min_len:
            raise ConfigError(f"data.max_len={max_len} is shorter than data.min_len={min_len}; raise data.max_len")
        self.min_len, self.max_len = min_len, max_len
        self.repeat_seed = repeat_seed

    def setup(self, stage: str | None = None) -> None:
        if self.train_data is not None:
            return
        super().setup(stage)
        cut = lambda ids, seed: repeat_segments(ids, self.min_len, self.max_len, seed)  # noqa: E731
        self.train_data = cut(self.train_data, self.repeat_seed)
        self.val_data = cut(self.val_data, self.repeat_seed + 1)
