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
    config_cls, model_cls = ARCHITECTURES[arch]
    if model_cls is GPT:  # the textbook GPT, or LeverGPT when the config turns a lever on
        return build_gpt(GPTConfig.from_dict(config))
    return model_cls(config_cls.from_dict(config))


def arch_of(model: nn.Module) -> str:
    return next(name for name, (_, cls) in ARCHITECTURES.items() if isinstance(model, cls))
