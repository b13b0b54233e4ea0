"""How many CPU threads generation and evaluation use: `threads=auto` picks by the work of one
step, an integer overrides.

The work of one forward pass is about parameters x tokens multiply-adds, where tokens is the
number of positions it computes: one per sequence for a generated token with the KV cache, batch
x block_size when windows are scored. A step waits for its slowest thread, so a thread that has
to wait for a core stalls the whole step: with one of two cores busy, two threads generated at a
third of one thread's speed (benchmarks/bench_generate.py --threads-table, docs/performance.md).
So a pass below AUTO_ONE_THREAD_BELOW (one sequence of the default model: too little work to
share) runs on one thread, and a larger one on the cores no other process is running on right
now (at least one).
"""

from __future__ import annotations

import contextlib
import os
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import torch

from minigpt.errors import ConfigError
from minigpt.schema import problem, shown

# what `threads=` of generate and evaluate takes: auto (or null: by the work of a step) or a count
THREADS = {"names": ("auto",), "of": int | None, "low": 1}

AUTO_ONE_THREAD_BELOW = 8_000_000  # parameters x tokens of one forward pass (docs/performance.md)


def auto_threads(parameters: int, tokens: int, available: int | None = None) -> int:
    """The thread count `threads=auto` picks for forward passes over `tokens` positions of a model
    of `parameters` parameters, out of `available` (PyTorch's count by default)."""
    available = available or torch.get_num_threads()
    if parameters * tokens < AUTO_ONE_THREAD_BELOW:
        return 1
    return max(1, min(available, (os.cpu_count() or available) - others_running()))


def others_running(samples: int = 5) -> int:
    """How many other processes' threads are running or waiting for a core now: the runnable count
    of /proc/loadavg less this process's own runnable threads (PyTorch's workers keep spinning for
    a moment after a parallel region, and are no other work), median of a few reads; 0 where
    /proc is missing."""
    counts = []
    for _ in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0
        counts.append(running - own_running())
        time.sleep(0.002)
    return max(0, sorted(counts)[len(counts) // 2])


def own_running() -> int:
    """This process's threads in state R (running or runnable), from /proc/self/task; at least 1,
    the thread asking."""
    n = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        with contextlib.suppress(OSError, IndexError):
            n += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
    return max(1, n)


def resolve_threads(setting: int | str | None, parameters: int, tokens: int) -> int:
    """`threads=` of generate and evaluate: auto (or null), or a count >= 1; one line otherwise."""
    if setting is None or setting == "auto":
        return auto_threads(parameters, tokens)
    if words := problem(setting, typing.Any, THREADS):
        raise ConfigError(f"threads must be {words}, got {shown(setting)}")
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
