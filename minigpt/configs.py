"""Typed configs: the schemas Hydra checks a composed config against, so that a wrong type or a
misspelt key is one line before anything starts (`model.n_layer=abc`, `model.n_layers=4`).

The schemas are made from the dataclasses the code already uses, so a field is declared once:
`GPTConfig` (minigpt/model.py) and `LSTMConfig` (minigpt/lstm.py) give the `model` group's,
`SamplingConfig` (minigpt/sampling.py) the sampling half of `generate`'s. Each YAML file names
its schema first in its defaults list (`defaults: [gpt_schema, _self_]`). Types are checked when
the config is composed; ranges (`n_embd` divisible by `n_head`, `0 < top_p <= 1`) stay in the
dataclasses' `__post_init__`, one place per config.

`register()` puts the schemas in Hydra's ConfigStore; every tool calls it before composing, and
`compose("train", [...])` does both for Python code (benchmarks, notebooks).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig
from minigpt.sampling import SamplingConfig


def fields_of(config_cls: type, skip: tuple[str, ...] = ()) -> list[tuple]:
    """(name, type, field) of every field of the dataclass `config_cls` but `skip`, with the same
    types and defaults, for `dataclasses.make_dataclass`."""
    hints = typing.get_type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        if f.default is dataclasses.MISSING:
            default = field(default_factory=f.default_factory)
        else:
            default = field(default=f.default)
        out.append((f.name, hints[f.name], default))
    return out


# the model group: `arch` picks the family (minigpt/architectures.py); vocab_size comes from the
# data's tokenizer, so a model config does not set it (init_from replaces the whole node)
GPTSchema = dataclasses.make_dataclass(
    "GPTSchema", [("arch", str, field(default="gpt")), *fields_of(GPTConfig, skip=("vocab_size",))]
)
LSTMSchema = dataclasses.make_dataclass(
    "LSTMSchema", [("arch", str, field(default="lstm")), *fields_of(LSTMConfig, skip=("vocab_size",))]
)


@dataclass
class GenerateOptions:
    """conf/generate.yaml: what to continue, how much, and how (beam search when num_beams > 1)."""

    ckpt: str = MISSING
    prompt: str = "\n"
    prompt_file: str | None = None
    unknown: str = "error"
    max_new_tokens: int = 500
    num_samples: int = 1
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    device: str = "auto"
    quantize: str | None = None
    use_cache: bool = True
    # tokens the model reads at most; null = block_size (longer: not with learned positions)
    context: int | None = None
    stream: bool = True
    interactive: bool = False
    # CPU threads: auto (by the work of a step, minigpt/threads.py) or a count
    threads: typing.Any = "auto"


GenerateSchema = dataclasses.make_dataclass("GenerateSchema", [*fields_of(GenerateOptions), *fields_of(SamplingConfig)])


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="gpt_schema", node=GPTSchema)
    cs.store(group="model", name="lstm_schema", node=LSTMSchema)
    cs.store(name="generate_schema", node=GenerateSchema)


# conf/ sits beside the package in the repository, so every tool finds it from any directory
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """A tool's config as its command line would compose it (`compose("train", ["model=tiny"])`),
    checked against the schemas: for Python code that calls the library without a command."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
