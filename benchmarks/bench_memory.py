"""Peak training memory for a grid of batch size x block size, predicted and measured.

    python benchmarks/bench_memory.py                        # small model, AdamW
    python benchmarks/bench_memory.py --model medium --batch 8 16 --block 128 256

For every (batch, block) a fresh process builds the model and AdamW, then runs one training
step. It reports, in MiB:
  params      4 bytes per parameter (fp32)
  grads       the same again
  optimizer   AdamW's two moments: 8 bytes per parameter
  activations bytes of the tensors autograd saves for the backward pass, counted exactly with
              saved-tensor hooks (unique storages) -- what grows with batch x block
  predicted   the sum of the four
  measured    the process's peak resident memory minus its resident memory just before the
              model was built (so the interpreter and libraries are not counted)
A run that would not fit shows up here first: activations grow as batch x block (and x block^2
for attention weights with attn_impl=manual), the rest does not.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

MIB = 2**20


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(model_name: str, batch: int, block: int, attn_impl: str) -> dict:
    """One training step in this process; returns bytes per category."""
    import torch
    import torch.nn.functional as F

    from minigpt.configs import compose
    from minigpt.training.run import build_module

    cfg = compose("train", [f"model={model_name}", f"model.block_size={block}", f"model.attn_impl={attn_impl}"])
    torch.manual_seed(0)
    before = rss_now()
    module = build_module(cfg, [chr(32 + i) for i in range(65)])
    model = module.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randint(65, (batch, block))
    y = torch.randint(65, (batch, block))

    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = 4 * n_params
    return {
        "params": params,
        "grads": params,
        "optimizer": 2 * params,
        "activations": sum(saved.values()),
        "measured": peak - before,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="small")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--block", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--attn-impl", default="sdpa")
    p.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # internal: a single measurement
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, args.one[0], args.one[1], args.attn_impl)))
        return
    print(f"model={args.model} attn_impl={args.attn_impl}, AdamW, fp32, one training step per process (MiB)")
    columns = [
        ("batch", 5),
        ("block", 5),
        ("params", 7),
        ("grads", 7),
        ("optim", 7),
        ("activ", 8),
        ("predicted", 9),
        ("measured", 9),
    ]
    header = " ".join(f"{name:>{width}}" for name, width in columns)
    print(header)
    print("-" * len(header))
    for batch in args.batch:
        for block in args.block:
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--model",
                        args.model,
                        "--attn-impl",
                        args.attn_impl,
                        "--one",
                        str(batch),
                        str(block),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            m = json.loads(out)
            predicted = m["params"] + m["grads"] + m["optimizer"] + m["activations"]
            print(
                f"{batch:>5} {block:>5} {m['params'] / MIB:>7.1f} {m['grads'] / MIB:>7.1f} "
                f"{m['optimizer'] / MIB:>7.1f} {m['activations'] / MIB:>8.1f} {predicted / MIB:>9.1f} "
                f"{m['measured'] / MIB:>9.1f}"
            )


if __name__ == "__main__":
    from minigpt.cli import user_errors

    with user_errors():  # a missing checkpoint or a bad override: one line, exit 2
        main()
