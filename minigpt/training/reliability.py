"""Callbacks that let a run be stopped or killed at any moment and resumed exactly."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import lightning as L
import torch

from minigpt.sweep import stop_requested

log = logging.getLogger("minigpt")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of optimizer step `step` on process `rank`, as RandomWindows mixes (seed, step)."""
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**63)


class StepSeed(L.Callback):
    """Reseeds torch's random generators before every training step from (seed, step, rank).

    Dropout noise is then, like the batches, a pure function of the step: a resumed run draws
    exactly what an uninterrupted one would have, whatever validation or data loading consumed
    from the generators in between. Nothing about the random state needs saving.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        torch.manual_seed(step_seed(self.seed, trainer.global_step, trainer.global_rank))


class LastCheckpoint(L.Callback):
    """Writes `dirpath/last.ckpt` every `every_n_steps` optimizer steps and when training ends,
    stopped early or not: a run killed at any moment loses at most `every_n_steps` steps."""

    def __init__(self, dirpath: str | Path, every_n_steps: int) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.saved_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self.saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # every rank calls it; rank 0 writes
            self.saved_step = trainer.global_step


class GracefulStop(L.Callback):
    """SIGINT (Ctrl+C) or SIGTERM (a scheduler's preemption) during training: finish the current
    step, let `LastCheckpoint` save, and end the run normally (in a sweep, the sweep then stops:
    minigpt/sweep.py). A second Ctrl+C aborts at once.

    With several processes the decision is reduced over all ranks each step, so a signal that
    reached one process stops them all at the same step.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        stop_requested(self.received)  # in a sweep, no later job starts
        log.warning("received %s: finishing the current step, then saving and stopping", self.received)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self.received = self.received or "a signal (on another process)"
            trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
