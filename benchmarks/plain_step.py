"""One training step in plain PyTorch, as LitGPT takes it: the baseline the benchmarks time."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def plain_step(model, optimizer, batch, clip: float | None, marks: list[float] | None = None) -> None:
    """Forward, cross-entropy, backward, gradient clipping (when `clip`), optimizer step. With
    `marks`, a time.perf_counter() is appended after each of the four phases."""

    def mark() -> None:
        if marks is not None:
            marks.append(time.perf_counter())

    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
    mark()
    loss.backward()
    mark()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    mark()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mark()
