"""Solutions to the exercises of notebook 1 (01_attention.py); tests/test_notebooks.py checks each."""

import math

import torch


def mask_by_hand(T, S):
    """(T, S) booleans: True where query i (at position S - T + i) may look at key j."""
    i = torch.arange(T)[:, None] + (S - T)
    j = torch.arange(S)[None, :]
    return j <= i


def head_weights(x, attn):
    """The attention weights (B, 1, T, T) of a one-head CausalSelfAttention on x (B, T, C)."""
    C, T = x.size(-1), x.size(1)
    q, k, _ = attn.c_attn(x).split(C, dim=-1)
    scores = q @ k.transpose(-2, -1) * attn.scale
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)[:, None]


def attend_everywhere(x, attn):
    """A one-head CausalSelfAttention's output (B, T, C) with no mask: every key is seen."""
    C = x.size(-1)
    q, k, v = attn.c_attn(x).split(C, dim=-1)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(C)).softmax(-1)
    return attn.c_proj(weights @ v)
