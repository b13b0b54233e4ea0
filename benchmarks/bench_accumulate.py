"""Gradient accumulation: the same training steps as one large batch, with less memory.

    MINIGPT_SHAKESPEARE=path/to/input.txt python benchmarks/bench_accumulate.py
    python benchmarks/bench_accumulate.py --data input.txt --batch 64 --accumulate 1 4 --steps 20

For each number of accumulated batches K, fresh processes (`--repeats` of them) train the same
model from the same seed on the same windows for `--steps` optimizer steps: each step sees
`--batch` windows, as one batch (K = 1) or as K batches of batch / K whose gradients add up before
the optimizer steps, as `data.batch_size=N/K trainer.accumulate_grad_batches=K` does in a run (each
micro-batch's loss is divided by K, so the summed gradient is the large batch's mean). It prints,
side by side:
  loss        the training loss of the first and the last step (the mean over the step's windows)
  max |diff|  the largest difference from K = 1's loss over all the steps (float32 sums in another
              order, nothing more)
  activ       bytes autograd saves for the backward pass of one forward (exactly, with
              saved-tensor hooks): what grows with the batch in memory at once
  peak        the process's peak resident memory minus its resident memory before the model was
              built, the median over the repeats
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

MIB = 2**20


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def windows(text: str, block: int, n: int, seed: int):
    """`n` (input, target) windows of `block` characters at seeded random offsets of `text`."""
    import torch

    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text[:200_000]], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(ids) - block - 1, (n,), generator=gen)
    rows = torch.stack([ids[s : s + block + 1] for s in starts.tolist()])
    return rows[:, :-1], rows[:, 1:], len(chars)


def measure(data: Path, model_name: str, batch: int, accumulate: int, steps: int) -> dict:
    """Train `steps` steps in this process; return the losses, saved-activation bytes and peak RSS."""
    import torch
    import torch.nn.functional as F

    from minigpt.configs import compose
    from minigpt.training.run import build_module

    cfg = compose("train", [f"model={model_name}"])
    x, y, vocab = windows(data.read_text(encoding="utf-8"), cfg.model.block_size, batch * steps, seed=0)
    torch.manual_seed(0)
    before = rss_now()
    model = build_module(cfg, [chr(32 + i) for i in range(vocab)]).model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    losses, micro = [], batch // accumulate
    for step in range(steps):
        total = 0.0
        for k in range(accumulate):
            rows = slice(step * batch + k * micro, step * batch + (k + 1) * micro)
            saved.clear()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                logits = model(x[rows])
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y[rows].reshape(-1)) / accumulate
            loss.backward()
            total += float(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as trainer.gradient_clip_val=1.0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"losses": losses, "activations": sum(saved.values()), "peak": peak - before}


def run_one(args: argparse.Namespace, accumulate: int) -> dict:
    command = [sys.executable, __file__, "--data", str(args.data), "--model", args.model, "--batch", str(args.batch)]
    command += ["--steps", str(args.steps), "--one", str(accumulate)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=os.environ.get("MINIGPT_SHAKESPEARE"))
    p.add_argument("--model", default="small")
    p.add_argument("--batch", type=int, default=64, help="windows per optimizer step")
    p.add_argument("--accumulate", type=int, nargs="+", default=[1, 4])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one process, K = this
    args = p.parse_args()
    if args.data is None or not args.data.is_file():
        raise SystemExit("error: no corpus: pass --data path/to/input.txt or set MINIGPT_SHAKESPEARE")
    if any(args.batch % k for k in args.accumulate):
        raise SystemExit(f"error: --batch {args.batch} must be a multiple of every --accumulate value")
    if args.one:
        print(json.dumps(measure(args.data, args.model, args.batch, args.one, args.steps)))
        return
    from machine import describe  # benchmarks/machine.py

    print(f"model={args.model}, AdamW, fp32, {args.steps} steps of {args.batch} windows, {describe()}")
    columns = [("batch x K", 10), ("loss first", 10), ("loss last", 10), ("max |diff|", 10), ("activ MiB", 10)]
    print(" ".join(f"{name:>{width}}" for name, width in [*columns, ("peak MiB", 9)]))
    reference = None
    for k in args.accumulate:
        runs = [run_one(args, k) for _ in range(args.repeats)]
        losses = runs[0]["losses"]
        reference = reference or losses
        diff = max(abs(a - b) for a, b in zip(losses, reference))
        peak = statistics.median(r["peak"] for r in runs) / MIB
        print(
            f"{f'{args.batch // k} x {k}':>10} {losses[0]:>10.4f} {losses[-1]:>10.4f} {diff:>10.1e} "
            f"{runs[0]['activations'] / MIB:>10.1f} {peak:>9.1f}"
        )


if __name__ == "__main__":
    main()
