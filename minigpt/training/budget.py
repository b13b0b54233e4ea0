"""A wall-clock training budget: stop after N seconds of training and let the learning-rate
schedule run on elapsed time instead of steps, so that the decay ends when the budget does."""

from __future__ import annotations

import logging
import time

import lightning as L

log = logging.getLogger("minigpt")


class TimeBudget(L.Callback):
    """Counts wall-clock seconds of training (data, forward, backward, optimizer; validation
    excluded) and asks the trainer to stop, with a final validation, once `seconds` are spent.

    `progress()` in [0, 1] is what time-based schedules read (see minigpt/schedules.py).
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"budget.seconds must be > 0, got {seconds}")
        self.seconds = float(seconds)
        self.spent = 0.0
        self._since: float | None = None

    def elapsed(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.spent + running

    def progress(self) -> float:
        return min(1.0, self.elapsed() / self.seconds)

    def _pause(self) -> None:
        if self._since is not None:
            self.spent += time.perf_counter() - self._since
            self._since = None

    def _resume(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._resume()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.training:
            self._resume()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.elapsed() >= self.seconds and not trainer.should_stop:
            log.info("time budget of %.0f s spent after %d steps", self.seconds, trainer.global_step)
            pl_module.log("budget/steps", float(trainer.global_step))
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._pause()

    def state_dict(self) -> dict:
        return {"spent": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self.spent = float(state.get("spent", 0.0))
