"""Name a classic training failure while the run is going, with its likely causes and the override
to try.

`Symptoms` (a callback; Lightning has none that interprets what a run logs) reads signals the run
already has: the training loss of every step, each layer's gradient norm before clipping, the
attention of a few validation windows and the MLP units' inputs on them, and the run's final
sample. When one crosses its threshold it writes one log line and one TensorBoard text entry
(`view/health/diagnosis`), once per symptom. The thresholds are measured, not guessed: on the failure
gallery (conf/experiment/debug/) and on normal runs, see docs/debugging.md. The signals themselves
are logged as `view/health/*` scalars, so a learner can watch them next to the loss.

The checks are plain functions of those signals (tested on their own), and the callback only
gathers the signals and reports. It is the one watcher of a finite training loss that rises (a
spike over the recent low, divergence above twice the first loss); `LitGPT` only stops a run whose
loss is not finite.
"""

from __future__ import annotations

import html
import logging
import math
import statistics
from collections import deque
from dataclasses import dataclass

import lightning as L
import torch

from minigpt.probes import dead_fraction, eval_mode, mlp_activations, text_windows
from minigpt.training.callbacks import tensorboard_writer

log = logging.getLogger("minigpt")

# symptom -> (what usually causes it, the override to try first)
ADVICE: dict[str, tuple[str, str]] = {
    "divergence": (
        "a learning rate too high for this model, or no gradient clipping",
        "optim.lr=<lower>, trainer.gradient_clip_val=1.0",
    ),
    "loss_spike": (
        "a learning rate too high for this model, or no warm-up before a high rate",
        "optim.lr=<a third of it>, scheduler.warmup_steps=100, trainer.gradient_clip_val=1.0",
    ),
    "plateau": (
        "a learning rate far too low (or a schedule that never warms up)",
        "optim.lr=1e-3 (the default), or check scheduler.warmup_steps against trainer.max_steps",
    ),
    "exploding_gradients": (
        "a learning rate too high, weights initialised too large, or no gradient clipping",
        "optim.lr=<lower>, model.init_std=0.02, trainer.gradient_clip_val=1.0",
    ),
    "vanishing_gradients": (
        "a deep stack without residual connections or without normalisation",
        "model.residual=true, model.norm=layernorm",
    ),
    "saturated_attention": (
        "a learning rate too high (or no warm-up before it), weights initialised too large, or attention "
        "scores not scaled by 1/sqrt(head size)",
        "optim.lr=<lower>, scheduler.warmup_steps=100, model.init_std=0.02, model.scale_attn=true",
    ),
    "dead_units": (
        "a learning rate too high (or no warm-up before it), weights initialised too large, or a deep stack "
        "without residuals pushed MLP inputs below zero for good",
        "optim.lr=<lower>, scheduler.warmup_steps=100, model.init_std=0.02, model.residual=true",
    ),
    "repetition": (
        "greedy or near-zero-temperature decoding: the most likely continuation leads back to itself",
        "sample.temperature=0.8 (generate.py: temperature=0.8 top_p=0.95)",
    ),
}


@dataclass(frozen=True)
class Finding:
    """One symptom seen at one step: what, where, the measured value against its threshold."""

    symptom: str
    step: int
    where: str
    value: float
    threshold: float

    def message(self) -> str:
        causes, fix = ADVICE[self.symptom]
        symptom = self.symptom.replace("_", " ")
        return (
            f"{symptom} at step {self.step} ({self.where}: {self.value:.4g}, threshold {self.threshold:.4g}); "
            f"likely cause: {causes}; try {fix}"
        )


# --------------------------------------------------------------------------- the checks


def loss_rise(loss: float, reference: float, factor: float) -> float | None:
    """The ratio of `loss` to `reference` when it exceeds `factor` (infinite for a loss that is not
    finite), else None: the one test behind both a loss spike and divergence."""
    if not math.isfinite(loss):
        return math.inf
    ratio = loss / max(reference, 1e-12)
    return ratio if ratio > factor else None


def loss_spike(losses: list[float], factor: float) -> float | None:
    """The ratio of the newest loss to the lowest of the ones before it when it exceeds `factor`
    (a jump no batch-to-batch noise makes), else None."""
    return loss_rise(losses[-1], min(losses[:-1]), factor) if len(losses) > 1 else None


def plateau(first: float, recent: list[float], min_drop: float) -> float | None:
    """The relative drop of the loss since the first step, when it is below `min_drop` (the loss has
    hardly moved), else None."""
    drop = (first - statistics.median(recent)) / max(first, 1e-12)
    return drop if drop < min_drop else None


def gradient_ratio(norms: list[float]) -> float:
    """The first block's gradient norm over the last block's: far below 1 when the gradient fades on
    its way down a deep stack."""
    return norms[0] / max(norms[-1], 1e-30)


def saturation(maps: list[torch.Tensor], min_pos: int = 8, sharp: float = 0.99) -> list[float]:
    """Per layer, the fraction of attention rows (queries at positions >= `min_pos`, which could
    spread over many keys) that put more than `sharp` of their weight on one key. Each map is
    (B, nh, T, T)."""
    return [float((w[..., min_pos:, :].amax(-1) > sharp).float().mean()) for w in maps]


def repeated_share(text: str, n: int = 8) -> float:
    """The share of the `n`-character windows of `text` that already appeared earlier in it: 0 for
    text that never repeats itself, near 1 for text stuck in a loop ("the the the ...")."""
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


# --------------------------------------------------------------------------- the callback


class Symptoms(L.Callback):
    """Watch the run's signals and name the first sign of each classic failure (module docstring)."""

    def __init__(
        self,
        every_n_steps: int = 10,
        spike_factor: float = 1.5,
        diverge_factor: float = 2.0,
        plateau_steps: int = 200,
        plateau_drop: float = 0.1,
        explode_norm: float = 100.0,
        vanish_ratio: float = 0.01,
        saturated_rows: float = 0.2,
        dead_units: float = 0.25,
        repeat_fraction: float = 0.5,
        n_windows: int = 4,
    ) -> None:
        self.every_n_steps, self.n_windows = every_n_steps, n_windows
        self.spike_factor, self.plateau_steps, self.plateau_drop = spike_factor, plateau_steps, plateau_drop
        self.diverge_factor = diverge_factor
        self.explode_norm, self.vanish_ratio = explode_norm, vanish_ratio
        self.saturated_rows, self.dead_units, self.repeat_fraction = saturated_rows, dead_units, repeat_fraction
        self.first_loss: float | None = None
        self.losses: deque[float] = deque(maxlen=every_n_steps * 5)
        self.findings: list[Finding] = []
        self.batch_step = 0

    def report(self, trainer: L.Trainer, finding: Finding) -> None:
        """Say a symptom once: a log line and a TensorBoard text entry."""
        if any(f.symptom == finding.symptom for f in self.findings):
            return
        self.findings.append(finding)
        log.warning(finding.message())
        writer = tensorboard_writer(trainer)
        if writer is not None:
            # escaped: TensorBoard renders text entries as Markdown, where "<lower>" would vanish as a tag
            writer.add_text("view/health/diagnosis", html.escape(finding.message()), finding.step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # the step this batch's loss is logged at (the optimizer step has advanced it by batch end)
        self.batch_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value, step = float(loss.detach()), self.batch_step
        if self.first_loss is None:
            self.first_loss = value
        self.losses.append(value)
        # above twice the first loss (the perplexity squared) the run is diverging: say so early
        if (ratio := loss_rise(value, self.first_loss, self.diverge_factor)) is not None:
            self.report(
                trainer, Finding("divergence", step, "train/loss over its first value", ratio, self.diverge_factor)
            )
        # a spike is judged against the last few steps, after the first drop from the initial loss
        if step > self.every_n_steps and (ratio := loss_spike(list(self.losses), self.spike_factor)) is not None:
            self.report(
                trainer, Finding("loss_spike", step, "train/loss over its recent minimum", ratio, self.spike_factor)
            )
        if step == self.plateau_steps:
            drop = plateau(self.first_loss, list(self.losses)[-self.every_n_steps :], self.plateau_drop)
            if drop is not None:
                self.report(trainer, Finding("plateau", step, "train/loss drop since step 0", drop, self.plateau_drop))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        norms = layer_grad_norms(pl_module.model)
        if not norms:
            return
        step, total = trainer.global_step, math.sqrt(sum(n * n for n in norms))
        ratio = gradient_ratio(norms)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_scalar("view/health/grad_ratio_first_last", ratio, step)
        if total > self.explode_norm:
            self.report(
                trainer, Finding("exploding_gradients", step, "blocks' gradient norm", total, self.explode_norm)
            )
        if len(norms) > 1 and ratio < self.vanish_ratio:
            self.report(
                trainer,
                Finding("vanishing_gradients", step, "layer 0 / last layer gradient norm", ratio, self.vanish_ratio),
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        data = getattr(trainer.datamodule, "val_data", None)
        if trainer.sanity_checking or data is None or not hasattr(model, "forward_with_attention"):
            return
        T = model.config.block_size
        if data.numel() < T + 1:
            return
        windows = text_windows(data[: self.n_windows * T + 1].long(), T, self.n_windows)[:, :-1]
        self.check_layers(trainer, model, windows)

    def check_layers(self, trainer: L.Trainer, model: torch.nn.Module, windows: torch.Tensor) -> None:
        """Attention saturation and dead MLP units of each layer on a few validation windows."""
        step, writer = trainer.global_step, tensorboard_writer(trainer)
        with eval_mode(model):
            _, maps = model.forward_with_attention(windows.to(next(model.parameters()).device))
        sat = saturation([m.float() for m in maps], min_pos=min(8, windows.size(1) - 1))
        dead = [dead_fraction(pre) for pre, _ in mlp_activations(model, windows)]
        for layer, (s, d) in enumerate(zip(sat, dead)):
            if writer is not None:
                writer.add_scalar(f"view/health/attention_saturation/L{layer}", s, step)
                writer.add_scalar(f"view/health/dead_units/L{layer}", d, step)
            if s > self.saturated_rows:
                self.report(
                    trainer,
                    Finding(
                        "saturated_attention", step, f"layer {layer}, rows > 0.99 on one key", s, self.saturated_rows
                    ),
                )
            if d > self.dead_units:
                self.report(
                    trainer, Finding("dead_units", step, f"layer {layer}, MLP units never active", d, self.dead_units)
                )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        text = next((c.final_text for c in trainer.callbacks if getattr(c, "final_text", None)), None)
        if text and (share := repeated_share(text)) > self.repeat_fraction:
            self.report(
                trainer,
                Finding(
                    "repetition",
                    trainer.global_step,
                    "repeated 8-character windows of the final sample",
                    share,
                    self.repeat_fraction,
                ),
            )


def layer_grad_norms(model: torch.nn.Module) -> list[float]:
    """Each block's gradient norm (before clipping), first block first."""
    blocks = getattr(getattr(model, "transformer", None), "h", None)
    if blocks is None:
        return []
    norms = []
    for block in blocks:
        grads = [p.grad for p in block.parameters() if p.grad is not None]
        norms.append(math.sqrt(sum(float(g.float().pow(2).sum()) for g in grads)) if grads else 0.0)
    return norms
