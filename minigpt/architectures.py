"""Which network a model config builds: `arch: gpt` (default, minigpt/model.py) or `arch: lstm`."""

from __future__ import annotations

import torch.nn as nn

from minigpt.errors import ConfigError
from minigpt.levers import build_gpt
from minigpt.lstm import LSTMLM, LSTMConfig
from minigpt.model import GPT, GPTConfig

ARCHITECTURES = {"gpt": (GPTConfig, GPT), "lstm": (LSTMConfig, LSTMLM)}


def build_model(config: dict) -> nn.Module:
    """The network for a model config dict (with vocab_size); `arch` picks the family."""
    config = dict(config)
    arch = config.pop("arch", "gpt")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is unknown; choose one of {', '.join(ARCHITECTURES)}")
    return model_for(ARCHITECTURES[arch][0].from_dict(config))


def model_for(config: GPTConfig | LSTMConfig) -> nn.Module:
    """The network a checked config describes: for a GPT, the textbook `GPT` or, when the config
    turns a lever on, `LeverGPT` (minigpt/levers.py)."""
    return build_gpt(config) if isinstance(config, GPTConfig) else LSTMLM(config)


def arch_of(model: nn.Module) -> str:
    return next(name for name, (_, cls) in ARCHITECTURES.items() if isinstance(model, cls))
