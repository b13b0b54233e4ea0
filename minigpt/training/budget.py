"""The wall-clock budget of a run: `trainer.max_time` (e.g. `{seconds: 90}`) makes Lightning's
`Timer` stop training, after which the run validates once. The time-based learning-rate schedules
(minigpt/training/schedules.py) and the progress bar read from here how much of it is spent.

Lightning's Timer counts validation inside its budget; the budget recipes validate only once,
after the budget is spent, so for them it measures training time alone.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Timer


def budget_timer(trainer: L.Trainer) -> Timer | None:
    """The Timer that `Trainer(max_time=...)` added, or None for a run measured in steps."""
    return next((c for c in trainer.callbacks if isinstance(c, Timer) and c.time_remaining() is not None), None)


def budget_seconds(timer: Timer) -> float:
    """The budget's length in seconds."""
    return timer.time_elapsed() + timer.time_remaining()


def budget_progress(timer: Timer) -> Callable[[], float]:
    """A function giving the spent fraction of the budget, in [0, 1]: what a schedule runs on."""
    return lambda: min(1.0, timer.time_elapsed() / budget_seconds(timer))
