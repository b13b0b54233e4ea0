"""Solutions to the exercises of notebook 4 (04_training.py); tests/test_notebooks.py checks each."""

import math

import torch


def loss_by_hand(logits, targets):
    """Mean cross-entropy (nats) of logits (B, T, V) against targets (B, T)."""
    logp = logits.log_softmax(-1)
    return -logp.gather(-1, targets[..., None]).mean()


def cosine_factor(step, total_steps, warmup_steps, min_lr_ratio):
    """The learning rate at `step` as a multiple of the base rate: linear warmup, then half a cosine."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def windows_by_hand(data, block_size):
    """Consecutive, non-overlapping windows of block_size inputs (n, T) and their targets (n, T)."""
    n = (len(data) - 1) // block_size
    starts = torch.arange(n) * block_size
    w = data[starts[:, None] + torch.arange(block_size + 1)].long()
    return w[:, :-1], w[:, 1:]
