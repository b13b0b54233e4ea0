"""Everything a training run checks before its run folder is written: every option against its
declaration (`minigpt/configs.py`, one mechanism for all groups), then what spans groups and this
machine: validation that never happens before the last step, a compute device the machine
lacks, a model or a batch that does not fit in memory (the matmul precision's choices are
checked with the options; `auto` is timed when the run starts). `train` calls `preflight`
once; a refused run costs nothing and changes nothing."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from minigpt.configs import check_composed
from minigpt.errors import ConfigError
from minigpt.training.memory import check_training_memory

log = logging.getLogger("minigpt")


def preflight(cfg: DictConfig) -> None:
    """Refuse, in one line, a training config that cannot run on this machine. Adjusts one value:
    a `trainer.val_check_interval` beyond `trainer.max_steps` becomes `max_steps` (one validation,
    at the end), and says so."""
    check_composed(cfg, "train")
    check_validation_interval(cfg)
    check_accelerator(cfg.trainer.get("accelerator", "auto"))
    check_training_memory(cfg)


def check_validation_interval(cfg: DictConfig) -> None:
    """`trainer.val_check_interval` is a number of steps (an integer) or a fraction of an epoch
    (at most 1); a number of steps beyond `trainer.max_steps` would never validate."""
    steps, interval = cfg.trainer.max_steps, cfg.trainer.get("val_check_interval")
    if isinstance(interval, float) and interval > 1:
        raise ConfigError(
            f"trainer.val_check_interval must be a number of steps >= 1 (or a fraction in (0, 1]), got {interval!r}"
        )
    if isinstance(interval, int) and interval > steps:
        # a shortened run (trainer.max_steps=100) still validates, once, when it ends
        log.info(
            "trainer.val_check_interval=%d > trainer.max_steps=%d: validating once, at step %d", interval, steps, steps
        )
        cfg.trainer.val_check_interval = steps


def check_accelerator(accelerator: object) -> None:
    """`trainer.accelerator` must be a compute device this machine has: one line instead of
    Lightning's traceback for `tpu`, `cuda` without a GPU or a misspelt name."""
    if isinstance(accelerator, DictConfig):
        return  # an Accelerator object (`_target_`), which Lightning checks
    have = ["auto", "cpu"] + (["gpu", "cuda"] if torch.cuda.is_available() else [])
    have += ["mps"] if torch.backends.mps.is_available() else []
    if accelerator not in have:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not a compute device on this machine; use {', '.join(have)}"
        )
