"""Sequence classification on a GPT trunk: a pooling of its final hidden states and a linear layer
over the labels. Plain PyTorch: `train.py task=classify` trains it (minigpt/training/classifier.py),
`python -m minigpt classify` uses it (minigpt/inference/classify.py)."""

from __future__ import annotations

import torch
import torch.nn as nn

POOLINGS = ("last", "mean")


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector (B, C) per text from hidden states (B, T, C) and its mask of real tokens (B, T).

    `last`: the last real position, the only one that has read the whole text in a causal model.
    `mean`: the average over real positions. Texts are right-padded, so padding never reaches a
    real position and both ignore it exactly.
    """
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1)
    last = mask.sum(1) - 1  # (B,) index of each text's last real token
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


def label_head(n_embd: int, n_labels: int) -> nn.Linear:
    """The linear layer from a pooled vector to one score per label, initialised as GPT-2's layers."""
    head = nn.Linear(n_embd, n_labels)
    nn.init.normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    return head


class Classifier(nn.Module):
    """A GPT trunk (`model`, whose `lm_head` goes unused) read by `pool`, and `head` over the labels.
    Its weight names (`model.*`, `head.*`) are those a `train.py task=classify` checkpoint stores."""

    def __init__(self, model: nn.Module, n_labels: int, pooling: str = "last") -> None:
        super().__init__()
        self.model, self.pooling = model, pooling
        self.head = label_head(model.config.n_embd, n_labels)

    @property
    def config(self):
        return self.model.config

    def forward(self, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Label logits (B, n_labels) for right-padded token ids (B, T) and their mask (B, T)."""
        return self.head(pool(self.model.hidden_states(idx), mask, self.pooling))
