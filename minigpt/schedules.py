"""Learning-rate schedules as multipliers of the optimizer's base lr, one value per step.

Each is selected by a YAML file in conf/scheduler/ (`_partial_: true`) and completed by the
LightningModule with the optimizer and the run's total number of steps.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from minigpt.errors import ConfigError


def _check(total_steps: int, warmup_steps: int, min_lr_ratio: float) -> None:
    if total_steps <= 0:
        raise ConfigError(f"the schedule needs trainer.max_steps > 0, got {total_steps}")
    if warmup_steps < 0:
        raise ConfigError(f"scheduler.warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ConfigError(f"scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")


def _warmup(step: int, warmup_steps: int) -> float:
    # linear from 1/warmup to 1: Adam's second-moment estimate is noisy in the first steps
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.1) -> LambdaLR:
    """Linear warmup, then half a cosine from the base lr down to `min_lr_ratio` of it."""
    _check(total_steps, warmup_steps, min_lr_ratio)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Linear warmup, then the base lr for the rest of the run."""
    _check(total_steps, warmup_steps, 0.0)
    return LambdaLR(optimizer, lambda step: _warmup(step, warmup_steps))


def wsd(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    decay_fraction: float = 0.2,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Warmup-stable-decay: warmup, a long flat stretch, then a linear decay over the last
    `decay_fraction` of the run (Hu et al. 2024, MiniCPM). Good when the budget is fixed."""
    _check(total_steps, warmup_steps, min_lr_ratio)
    if not 0.0 < decay_fraction <= 1.0:
        raise ConfigError(f"scheduler.decay_fraction must be in (0, 1], got {decay_fraction}")
    decay_start = int(total_steps * (1 - decay_fraction))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return min_lr_ratio + (1 - min_lr_ratio) * (1 - progress)

    return LambdaLR(optimizer, factor)
