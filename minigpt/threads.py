"""How many CPU threads generation and evaluation use: `threads=auto` picks by the work of one
step, an integer overrides.

The work of one forward pass is about parameters x tokens multiply-adds, where tokens is the
number of positions it computes: one per sequence for a generated token with the KV cache, batch
x block_size when windows are scored. A generated token is little work: split between threads,
each share costs less than waking the threads and joining them, and on a busy machine a step
waits for its slowest thread to get a core. So a pass below AUTO_ONE_THREAD_BELOW runs on one
thread and a larger one on all of PyTorch's. The threshold comes from
benchmarks/bench_generate.py --threads-table (docs/performance.md, "Generation speed"): every
generation row measured, up to 16 sequences of a 10.7M-parameter model, ran fastest on one thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from minigpt.errors import ConfigError

AUTO_ONE_THREAD_BELOW = 256_000_000  # parameters x tokens of one forward pass


def auto_threads(parameters: int, tokens: int, available: int | None = None) -> int:
    """The thread count `threads=auto` picks for forward passes over `tokens` positions of a model
    of `parameters` parameters, out of `available` (PyTorch's count by default)."""
    available = available or torch.get_num_threads()
    return 1 if parameters * tokens < AUTO_ONE_THREAD_BELOW else available


def resolve_threads(setting: int | str | None, parameters: int, tokens: int) -> int:
    """`threads=` of generate and evaluate: auto (or null), or a count >= 1; one line otherwise."""
    if setting is None or setting == "auto":
        return auto_threads(parameters, tokens)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"threads must be auto or a whole number >= 1, got {setting!r}")
    return min(setting, os.cpu_count() or setting)


@contextlib.contextmanager
def using_threads(setting: int | str | None, parameters: int, tokens: int) -> Iterator[int]:
    """Run the block with the thread count `setting` resolves to, then restore PyTorch's."""
    before = torch.get_num_threads()
    n = resolve_threads(setting, parameters, tokens)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
