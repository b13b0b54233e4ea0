"""Generation speed: the KV cache against full recompute, and the thread count for the work.

    python benchmarks/bench_generate.py --ckpt outputs/.../best.ckpt      # a trained model
    python benchmarks/bench_generate.py                                    # random small model, block 256
    python benchmarks/bench_generate.py --threads-table                    # 1, 2, all threads; idle, loaded

Each configuration generates --tokens characters greedily from the same prompt, --repeats
times, interleaved (cache, no cache, cache, ...) so that both see the same machine load; the
median tokens/s of each is printed, with the speed-up.

`--threads-table` measures tokens/s of one sequence and of a batch (`--batch` sequences at once),
and of scoring `--batch` windows of block_size at once (what evaluate does for the loss), on a
small (4 x 128) and a medium (6 x 384) model with 1, 2 and all threads, first as the machine is,
then with a busy-loop process beside it. Within a row the settings run interleaved, repeat
after repeat (1, 2, all, 1, 2, all, ...), so a change in the machine's load hurts them alike; the
table gives the median of the repeats, and what `threads=auto` (minigpt/threads.py) picks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import torch

from minigpt.checkpoint.load import load_model
from minigpt.levers import build_gpt
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import SamplingConfig, generate
from minigpt.threads import auto_threads

SIZES = {"small": (4, 4, 128), "medium": (6, 6, 384)}  # layers, heads, width


def build(args, size: str = "small") -> GPT:
    if args.ckpt:
        return load_model(args.ckpt).model
    torch.manual_seed(0)
    n_layer, n_head, n_embd = SIZES[size]
    cfg = GPTConfig(
        vocab_size=65,
        block_size=args.block_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        pos_encoding=args.pos_encoding,
    )
    return build_gpt(cfg).eval()


def rate(model: GPT, prompt: torch.Tensor, tokens: int, use_cache: bool = True) -> tuple[float, torch.Tensor]:
    """Tokens per second of each sequence of `prompt`, greedy, and the output."""
    start = time.perf_counter()
    out = generate(model, prompt, tokens, SamplingConfig(temperature=0), use_cache=use_cache)
    return tokens / (time.perf_counter() - start), out


def cache_table(args) -> None:
    model = build(args)
    cfg = model.config
    prompt = torch.zeros(1, 1, dtype=torch.long)
    rate(model, prompt, 50, True)  # warm-up
    rate(model, prompt, 50, False)
    rates: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, torch.Tensor] = {}
    for _ in range(args.repeats):
        for use_cache in (True, False):
            speed, outputs[use_cache] = rate(model, prompt, args.tokens, use_cache)
            rates[use_cache].append(speed)

    print(
        f"model: {model.num_params():,} parameters, {cfg.n_layer} layers x {cfg.n_embd}, "
        f"block_size {cfg.block_size}, {cfg.pos_encoding} positions, {torch.get_num_threads()} threads"
    )
    print(f"task: {args.tokens} characters, greedy, median of {args.repeats} runs (interleaved)")
    cached, full = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"{'KV cache':<16}{cached:>10,.0f} tokens/s")
    print(f"{'full recompute':<16}{full:>10,.0f} tokens/s")
    print(f"speed-up: {cached / full:.1f}x   identical output: {torch.equal(outputs[True], outputs[False])}")


@contextlib.contextmanager
def busy_loop(on: bool) -> Iterator[None]:
    """A process spinning on one core beside the benchmark, as other work on a laptop would."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def thread_row(model: GPT, sequences: int, settings: list[int], args) -> dict[int, float]:
    """Median tokens/s (over all sequences) of each thread count, measured interleaved."""
    prompt = torch.zeros(sequences, 1, dtype=torch.long)
    rates: dict[int, list[float]] = {n: [] for n in settings}
    for n in settings:  # warm-up: each count's thread pool and kernels
        torch.set_num_threads(n)
        rate(model, prompt, 20)
    for _ in range(args.repeats):
        for n in settings:
            torch.set_num_threads(n)
            rates[n].append(rate(model, prompt, args.tokens)[0] * sequences)
    return {n: statistics.median(r) for n, r in rates.items()}


def score_row(model: GPT, windows: int, settings: list[int], args) -> dict[int, float]:
    """Median tokens/s of scoring `windows` windows of block_size at once (evaluate's loss)."""
    ids = torch.randint(0, model.config.vocab_size, (windows, model.config.block_size))
    rates: dict[int, list[float]] = {n: [] for n in settings}
    with torch.no_grad():
        for n in settings:
            torch.set_num_threads(n)
            model(ids)
        for _ in range(args.repeats):
            for n in settings:
                torch.set_num_threads(n)
                start = time.perf_counter()
                model(ids)
                rates[n].append(ids.numel() / (time.perf_counter() - start))
    return {n: statistics.median(r) for n, r in rates.items()}


def threads_table(args) -> None:
    from machine import cpu_name

    cores = os.cpu_count() or 1
    settings = sorted({1, min(2, cores), cores})
    names = {n: "all" if n == cores and n > 2 else str(n) for n in settings}
    print(f"machine: {cpu_name()}, {cores} cores, torch {torch.__version__}")
    print(
        f"task: {args.tokens} characters greedy with the KV cache, tokens/s over all sequences, median of "
        f"{args.repeats} repeats, thread counts interleaved"
    )
    header = f"{'load':<8}{'model':<18}{'sequences':>14}" + "".join(f"{names[n] + ' thr':>11}" for n in settings)
    print(header + f"{'auto':>7}{'auto/best':>11}")
    models = {"checkpoint": build(args)} if args.ckpt else {size: build(args, size) for size in SIZES}
    for loaded in (False, True):
        with busy_loop(loaded):
            for size, model in models.items():
                rows = [(str(s), s, thread_row(model, s, settings, args)) for s in (1, args.batch)]
                tokens = args.batch * model.config.block_size
                rows.append(
                    (
                        f"score {args.batch}x{model.config.block_size}",
                        tokens,
                        score_row(model, args.batch, settings, args),
                    )
                )
                for what, tokens, row in rows:
                    auto = auto_threads(model.num_params(), tokens, cores)
                    label = f"{size} {model.num_params() / 1e6:.2f}M"
                    cells = "".join(f"{row[n]:>11,.0f}" for n in settings)
                    print(
                        f"{'busy' if loaded else 'as is':<8}{label:<18}{what:>14}{cells}"
                        f"{names.get(auto, str(auto)):>7}{row.get(auto, 0) / max(row.values()):>10.0%}"
                    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="a training checkpoint; default: a random `small` model")
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--pos-encoding", default="learned")
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--threads-table", action="store_true", help="compare thread counts, idle and loaded")
    p.add_argument("--batch", type=int, default=16, help="--threads-table: sequences of the batch rows")
    args = p.parse_args()
    if args.threads_table:
        threads_table(args)
        return
    torch.set_num_threads(args.threads)
    cache_table(args)


if __name__ == "__main__":
    from minigpt.cli import user_errors

    with user_errors():  # a missing checkpoint or a bad override: one line, exit 2
        main()
