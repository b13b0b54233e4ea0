"""A character-level LSTM language model: the recurrent baseline the transformer is compared to.

Same interface as `GPT` (token ids in, logits out, `config`, `num_params`), so the same data,
LightningModule, logging and sweeps train it: `python train.py model=lstm`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from minigpt.schema import check_fields, from_mapping, option


@dataclass
class LSTMConfig:
    """The LSTM's shape; travels inside every checkpoint of model=lstm."""

    vocab_size: int = option(doc="tokens the model knows; set by the data's tokenizer", low=1)
    block_size: int = option(64, doc="training window; the state starts at zero at each window's start", low=1)
    n_layer: int = option(2, doc="stacked LSTM layers", low=1)
    n_embd: int = option(256, doc="embedding and hidden size", low=1)
    dropout: float = option(0.0, doc="dropout probability between layers", low=0, below=1)
    tie_weights: bool = option(True, doc="the output layer shares its matrix with the embedding")

    def __post_init__(self) -> None:
        check_fields(self, "model")  # types and ranges, as declared above

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LSTMConfig:
        return from_mapping(cls, d, "model=lstm")


class LSTMLM(nn.Module):
    """Embedding -> stacked LSTM -> linear head over the vocabulary."""

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.n_embd, cfg.n_embd, cfg.n_layer, batch_first=True, dropout=cfg.dropout if cfg.n_layer > 1 else 0.0
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        nn.init.normal_(self.wte.weight, std=0.02)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight

    def num_params(self, non_embedding: bool = True) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T), starting from a zero state."""
        h, _ = self.lstm(self.drop(self.wte(idx)))  # (B, T, C)
        return self.lm_head(self.drop(h))
