"""Starting a new run from a trained model (`init_from=`): its weights, model config and vocabulary.

This is not resuming: the optimizer, the schedule and the step count start afresh, on whatever
data the new run is given. The model options that decide what the weights compute (sizes,
position encoding, norm, ...) are the checkpoint's; only the options in `FINE_TUNABLE`, which
change how the weights are trained or run but not what they mean, may be overridden.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from minigpt.architectures import arch_of
from minigpt.checkpoint.format import LoadedModel
from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import iter_corpus
from minigpt.errors import ConfigError, DataError
from minigpt.tokenizer import Tokenizer

# dropout only acts in training; manual and sdpa attention compute the same function
FINE_TUNABLE = ("dropout", "attn_impl")


def load_pretrained(path: str | Path) -> LoadedModel:
    """The model, tokenizer and metadata a fine-tuning run starts from: a minigpt checkpoint, or
    a Hugging Face GPT-2 folder (`load_model` tells them apart)."""
    return load_model(path, tasks=("lm", "classify"))  # a classifier's trunk is a language model too


def explicit_model_options(overrides: Iterable[str] | None = None) -> set[str]:
    """Model options the user set on the command line: `model.<key>=...` names one key; a group
    choice that replaces model values (`model=...`, `ablation=...`) names all of them (`*`).
    By default the overrides of the running Hydra job; none outside Hydra (tests, scripts)."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    keys = set()
    for override in overrides:
        name = override.split("=", 1)[0].lstrip("+~")
        if name.startswith("model."):
            keys.add(name.removeprefix("model.").split(".")[0])
        elif name in ("model", "ablation"):
            keys.add("*")
    return keys


def fine_tune_model_config(pretrained: LoadedModel, model_cfg: dict, explicit: set[str]) -> dict:
    """The model config of a run starting from `pretrained`: the checkpoint's, with the
    `FINE_TUNABLE` options the user set explicitly taken from `model_cfg`. An explicit option
    that differs from the checkpoint's and would change what the weights compute is refused."""
    config = {"arch": arch_of(pretrained.model), **pretrained.model.config.to_dict()}
    del config["vocab_size"]  # the tokenizer's, added when the model is built
    conflicts = []
    for key in sorted(k for k in model_cfg if k in explicit or "*" in explicit):
        if key in FINE_TUNABLE:
            config[key] = model_cfg[key]
        elif key in config and model_cfg[key] != config[key]:
            conflicts.append(f"model.{key}={model_cfg[key]!r} (checkpoint: {config[key]!r})")
    if conflicts:
        raise ConfigError(
            f"init_from={pretrained.path} fixes the model's shape and kind, but the config asks for "
            f"{', '.join(conflicts[:4])}; drop those overrides (only {', '.join(FINE_TUNABLE)} can change)"
        )
    return config


def use_pretrained(cfg: DictConfig) -> LoadedModel | None:
    """Load `cfg.init_from` and make `cfg.model` its model config (see `fine_tune_model_config`),
    so that everything built from `cfg` (data block size, run config, checkpoint metadata) sees
    the real model. None when the run starts from scratch."""
    if not cfg.get("init_from"):
        return None
    pretrained = load_pretrained(cfg.init_from)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    config = fine_tune_model_config(pretrained, model_cfg, explicit_model_options())
    with open_dict(cfg):
        cfg.model = config
    return pretrained


def check_vocabulary(path: Path, tokenizer: Tokenizer, init_from: str | Path) -> None:
    """Refuse a corpus with characters the pre-trained model has no tokens for, naming them all
    (the model's vocabulary, and so its embedding table, is fixed)."""
    unknown: dict[str, None] = {}
    for text in iter_corpus(path):
        unknown.update(dict.fromkeys(tokenizer.unknown_chars(text)))
    if unknown:
        shown = " ".join(repr(c) for c in list(unknown)[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise DataError(
            f"corpus file {path} has {len(unknown)} character(s) outside the vocabulary of "
            f"init_from={init_from}: {shown}{more}; remove or replace them in the corpus "
            f"(fine-tuning keeps the checkpoint's vocabulary)"
        )
