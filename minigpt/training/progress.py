"""What a run shows while it trains: a progress bar that knows about the time budget, a log line
per validation (readable in a pipe or a log file, where a progress bar is not), and a validation
at the last step, so that every run ends with a measured validation loss."""

from __future__ import annotations

import logging
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from minigpt.training.budget import budget_seconds, budget_timer

log = logging.getLogger("minigpt")


class TrainProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar for an endless stream of windows: labelled `train`, not `Epoch 0/-2`.
    With a time budget it counts the budget's seconds (elapsed < remaining) and shows the step,
    instead of a step count towards a max_steps that is never reached. In a pipe or a log file
    (stdout is not a terminal) it draws nothing: the per-validation log lines say the same in
    lines a file can hold, where a bar's redraws would pile up."""

    BUDGET_FORMAT = "{desc}{percentage:3.0f}%|{bar}| {n}/{total} s [{elapsed}<{remaining}{postfix}]"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not sys.stdout.isatty():
            self.disable()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the TensorBoard run's name: a sweep's overrides, too long for a bar
        return metrics

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description("train")
        timer = budget_timer(trainer)
        if timer is not None:
            self.train_progress_bar.reset(total=round(budget_seconds(timer)))
            self.train_progress_bar.bar_format = self.BUDGET_FORMAT

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        timer = budget_timer(trainer)
        if timer is None:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar = self.train_progress_bar
        if self._should_update(trainer.global_step, bar.total or 1):
            bar.n = min(int(timer.time_elapsed()), bar.total)
            bar.set_postfix({"step": trainer.global_step, **self.get_metrics(trainer, pl_module)}, refresh=False)
            bar.refresh()


class ValidationLog(L.Callback):
    """After each validation, one log line: step, train and validation loss, training throughput
    and the time since training began. Throughput is tokens per second of the training steps after
    the first: validation is excluded, and so is the first step, which pays the start-up (threads,
    memory, lazy initialisation) and would make a short run look many times slower than it is."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.tokens = 0
        self.train_seconds = 0.0
        self._batch_start: float | None = None
        self._first_done = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()
        self._first_done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._first_done:
            self._first_done = True
            return
        self.tokens += batch[0].numel() * trainer.world_size
        if self._batch_start is not None:
            self.train_seconds += time.perf_counter() - self._batch_start

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.started is None:
            return
        metrics = trainer.callback_metrics
        parts = [f"step {trainer.global_step}"]
        parts += [
            f"{name} {float(metrics[key]):.4f}"
            for name, key in (("train loss", "train/loss"), ("val loss", "val/loss"))
            if key in metrics
        ]
        if self.train_seconds > 0:
            parts.append(f"{self.tokens / self.train_seconds:,.0f} tokens/s")
        parts.append(f"{time.perf_counter() - self.started:.0f} s")
        log.info(" | ".join(parts))


class ValidateAtEnd(L.Callback):
    """Ask for a validation after the last step (Lightning validates when a run is told to stop),
    so a run whose max_steps is not a multiple of val_check_interval still measures its final
    weights, and best.ckpt considers them."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
