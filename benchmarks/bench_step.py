"""Where one training step's time goes: batch, forward, loss, backward, clipping, optimizer.

    python benchmarks/bench_step.py --overrides experiment=cpu_90s
    python benchmarks/bench_step.py --overrides experiment=cpu_90s --compare model.value_embeds=true

Builds the configured model, optimizer and data exactly as train.py does, runs --warmup steps,
then times each phase of --steps plain-PyTorch steps and prints the median milliseconds of each
and the steps per second they add up to. With --compare, a second configuration (the same
overrides plus the ones given) is timed in the same process, the two alternating every step, so
a change's cost is measured side by side on the same machine state. `compile=true` as an
override compiles the model as train.py does (torch.compile); the first step, which pays for the
compilation, is printed apart.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch
from hydra.utils import instantiate
from machine import describe  # benchmarks/machine.py
from plain_step import plain_step  # benchmarks/plain_step.py

from minigpt.cli import quiet_libraries
from minigpt.configs import compose
from minigpt.training.allocator import keep_freed_memory
from minigpt.training.precision import resolve_matmul_precision
from minigpt.training.run import build_module

PHASES = ("batch", "forward", "backward", "clip", "optimizer")


class Setup:
    """One configuration's model, optimizer and batch stream, and the time of each phase."""

    def __init__(self, overrides: list[str]) -> None:
        cfg = compose("train", overrides)
        self.data = instantiate(cfg.data)
        self.data.setup("fit")
        self.module = build_module(cfg, self.data.tokenizer.serialize())
        self.module.train()
        if cfg.get("compile"):
            self.module.model.compile()
        self.optimizer = instantiate(cfg.optim)(self.module.param_groups())
        self.clip = cfg.trainer.gradient_clip_val
        self.keep_freed_memory = cfg.get("keep_freed_memory", True)
        # set before each step, as setups alternate; "auto" resolved as train.py does on a CPU
        self.precision = resolve_matmul_precision(cfg.get("matmul_precision", "high"), on_cpu=True)
        self.batches = iter(self.data.train_dataloader())
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.page_faults: list[int] = []
        self.tokens = 0
        self.first_step: float | None = None

    def step(self, record: bool) -> None:
        torch.set_float32_matmul_precision(self.precision)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        marks = [time.perf_counter()]
        x, y = next(self.batches)
        marks.append(time.perf_counter())
        plain_step(self.module.model, self.optimizer, (x, y), self.clip, marks)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        if self.first_step is None:
            self.first_step = marks[-1] - marks[0]
        if record:
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                self.times[phase].append(end - start)
            self.tokens = x.numel()
            self.page_faults.append(faults)

    def report(self, title: str) -> float:
        medians = {p: statistics.median(self.times[p]) for p in PHASES}
        total = sum(medians.values())
        n = self.module.model.num_params(non_embedding=False)
        print(f"{title}: {n:,} parameters, first step {self.first_step:.2f} s")
        for p in PHASES:
            print(f"  {p:<10} {1e3 * medians[p]:7.2f} ms  {100 * medians[p] / total:5.1f} %")
        print(f"  {'total':<10} {1e3 * total:7.2f} ms  -> {1 / total:.2f} steps/s, {self.tokens / total:,.0f} tokens/s")
        print(f"  page faults per step: {statistics.median(self.page_faults):,.0f}")
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides, e.g. experiment=cpu_90s")
    parser.add_argument("--compare", nargs="*", default=None, help="extra overrides of a second configuration")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    quiet_libraries()
    torch.manual_seed(0)
    setups = {"baseline": Setup(args.overrides)}
    if args.compare is not None:
        setups["with " + " ".join(args.compare)] = Setup(args.overrides + args.compare)
    if len({setup.keep_freed_memory for setup in setups.values()}) > 1:
        sys.exit("keep_freed_memory acts on the whole process: compare it with benchmarks/bench_processes.py")
    if next(iter(setups.values())).keep_freed_memory:
        keep_freed_memory()  # as train.py does
    print(describe())
    print(f"median of {args.steps} steps after {args.warmup} warm-up steps, configurations alternating each step")
    for i in range(args.warmup + args.steps):
        for setup in setups.values():
            setup.step(record=i >= args.warmup)
    totals = [setup.report(title) for title, setup in setups.items()]
    if len(totals) == 2:
        print(f"step time ratio (second / first): {totals[1] / totals[0]:.3f}")


if __name__ == "__main__":
    main()
