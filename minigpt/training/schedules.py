"""Learning-rate schedules as multipliers of the optimizer's base lr, one value per step.

Each is selected by a YAML file in conf/scheduler/ (`_partial_: true`) and completed by the
LightningModule with the optimizer and the run's total number of steps. Progress through the
run is step / total_steps, or, when a `progress` function is given (a wall-clock budget, see
minigpt/training/budget.py), whatever fraction of the budget that function reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from minigpt.errors import ConfigError

Progress = Callable[[int], float]


def _progress(total_steps: int, start: int, progress: Callable[[], float] | None) -> Progress:
    """Fraction in [0, 1] of the way from step `start` to the end of the run."""
    if progress is not None:
        return lambda step: progress()
    return lambda step: min(1.0, max(0.0, (step - start) / max(1, total_steps - start)))


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


def cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    min_lr_ratio: float = 0.1,
    progress: Callable[[], float] | None = None,
) -> LambdaLR:
    """Linear warmup, then half a cosine from the base lr down to `min_lr_ratio` of it."""
    _check(total_steps, warmup_steps, min_lr_ratio)
    done = _progress(total_steps, warmup_steps, progress)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * done(step)))

    return LambdaLR(optimizer, factor)


def constant(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, progress: Callable[[], float] | None = None
) -> LambdaLR:
    """Linear warmup, then the base lr for the rest of the run."""
    _check(total_steps, warmup_steps, 0.0)
    return LambdaLR(optimizer, lambda step: _warmup(step, warmup_steps))


def wsd(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    decay_fraction: float = 0.2,
    min_lr_ratio: float = 0.0,
    progress: Callable[[], float] | None = None,
) -> LambdaLR:
    """Warmup-stable-decay: warmup, a long flat stretch, then a linear decay over the last
    `decay_fraction` of the run (Hu et al. 2024, MiniCPM). Good when the budget is fixed."""
    _check(total_steps, warmup_steps, min_lr_ratio)
    if not 0.0 < decay_fraction <= 1.0:
        raise ConfigError(f"scheduler.decay_fraction must be in (0, 1], got {decay_fraction}")
    done = _progress(total_steps, 0, progress)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        into_decay = (done(step) - (1 - decay_fraction)) / decay_fraction  # < 0 while stable
        return 1.0 if into_decay <= 0 else min_lr_ratio + (1 - min_lr_ratio) * (1 - min(1.0, into_decay))

    return LambdaLR(optimizer, factor)
