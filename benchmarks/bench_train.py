"""Training throughput: tokens/s, model FLOPs utilisation, and Lightning's overhead.

    python benchmarks/bench_train.py                          # the default `small` model
    python benchmarks/bench_train.py --overrides experiment=cpu_90s

1. Measures this machine's dense matmul peak (1024 x 1024, float32 at the configuration's
   matmul_precision, all threads), and bf16's for comparison (a CPU with AMX multiplies bf16
   several times faster; matmul_precision=medium lets float32 products use it).
2. Trains the configured model with a minimal plain-PyTorch loop (same model, batches,
   optimizer, schedule and gradient clipping) and with the Lightning Trainer, alternating
   the two --repeats times, and prints the median tokens/s of each, the ratio, and model FLOPs
   utilisation: 6 FLOPs per parameter per token plus attention's 6 * n_layer * n_embd * T
   (the estimate of the PaLM paper, appendix B, as nanoGPT uses it), over the measured peak.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
from hydra.utils import instantiate
from machine import describe  # benchmarks/machine.py
from plain_step import plain_step  # benchmarks/plain_step.py

from minigpt.cli import quiet_libraries
from minigpt.configs import compose
from minigpt.training.allocator import keep_freed_memory
from minigpt.training.precision import set_matmul_precision
from minigpt.training.run import build_module


def matmul_peak(n: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """Median GFLOP/s of an n x n matmul."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def flops_per_token(module) -> float:
    cfg = module.config
    return 6 * module.model.num_params(non_embedding=False) + 6 * cfg.n_layer * cfg.n_embd * cfg.block_size


class StepTimer(L.Callback):
    """Wall-clock time of each training step, batch fetch to optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def plain_loop(cfg, datamodule, steps: int) -> list[float]:
    """The same training step without Lightning; returns per-step seconds."""
    torch.manual_seed(cfg.seed)
    module = build_module(cfg, datamodule.tokenizer.chars)
    model = module.model.train()
    optimizer = instantiate(module.hparams.optim)(module.param_groups())
    scheduler = instantiate(module.hparams.scheduler)(optimizer, total_steps=steps + 10)
    batches = iter(datamodule.train_dataloader())
    times, last = [], None
    for _ in range(steps):
        plain_step(model, optimizer, next(batches), cfg.trainer.gradient_clip_val)
        scheduler.step()
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


def lightning_loop(cfg, datamodule, steps: int) -> list[float]:
    torch.manual_seed(cfg.seed)
    module = build_module(cfg, datamodule.tokenizer.chars)
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides, as for train.py")
    p.add_argument("--steps", type=int, default=60, help="steps per measurement (the first is dropped)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    quiet_libraries()
    cfg = compose("train", args.overrides)
    precision = set_matmul_precision(cfg.get("matmul_precision", "high"))  # as train.py does on a CPU
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()  # as train.py does
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    tokens = cfg.data.batch_size * cfg.model.block_size
    peak = matmul_peak()

    plain_rates, lightning_rates = [], []
    for _ in range(args.repeats):
        plain_rates.append(tokens / statistics.median(plain_loop(cfg, datamodule, args.steps)))
        lightning_rates.append(tokens / statistics.median(lightning_loop(cfg, datamodule, args.steps)))
    module = build_module(cfg, datamodule.tokenizer.chars)
    fpt = flops_per_token(module)
    plain, light = statistics.median(plain_rates), statistics.median(lightning_rates)

    m = cfg.model
    print(
        f"model: {module.model.num_params(non_embedding=False):,} parameters, {m.n_layer}x{m.n_embd}, "
        f"{m.n_head} heads, block {m.block_size}, batch {cfg.data.batch_size}, optimizer {cfg.optim._target_}"
    )
    print(describe())
    print(
        f"matmul peak (1024^2): fp32 {peak:,.1f} GFLOP/s at matmul_precision={precision}, "
        f"bf16 {matmul_peak(dtype=torch.bfloat16):,.1f} GFLOP/s"
    )
    print(f"median of {args.repeats} runs x {args.steps} steps, alternating plain / Lightning:")
    for name, rate in (("plain PyTorch loop", plain), ("Lightning Trainer", light)):
        mfu = rate * fpt / 1e9 / peak
        print(f"  {name:<20}{rate:>10,.0f} tokens/s  {rate / tokens:6.2f} steps/s  MFU {mfu:5.1%}")
    print(f"Lightning / plain: {light / plain:.3f}")


if __name__ == "__main__":
    from minigpt.cli import user_errors

    with user_errors():  # a missing checkpoint or a bad override: one line, exit 2
        main()
