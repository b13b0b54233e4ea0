"""Generation speed with and without the KV cache, side by side in one process.

    python benchmarks/bench_generate.py --ckpt outputs/.../best.ckpt      # a trained model
    python benchmarks/bench_generate.py                                    # random small model, block 256

Each configuration generates --tokens characters greedily from the same prompt, --repeats
times, interleaved (cache, no cache, cache, ...) so that both see the same machine load; the
median tokens/s of each is printed, with the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.checkpoint.load import load_model
from minigpt.levers import build_gpt
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import SamplingConfig, generate


def build(args) -> GPT:
    if args.ckpt:
        return load_model(args.ckpt).model
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=65, block_size=args.block_size, n_layer=4, n_head=4, n_embd=128, pos_encoding=args.pos_encoding
    )
    return build_gpt(cfg).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="a training checkpoint; default: a random `small` model")
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--pos-encoding", default="learned")
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args)
    cfg = model.config
    prompt = torch.zeros(1, 1, dtype=torch.long)
    greedy = SamplingConfig(temperature=0)
    generate(model, prompt, 50, greedy, use_cache=True)  # warm-up
    generate(model, prompt, 50, greedy, use_cache=False)

    rates: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, torch.Tensor] = {}
    for _ in range(args.repeats):
        for use_cache in (True, False):
            start = time.perf_counter()
            outputs[use_cache] = generate(model, prompt, args.tokens, greedy, use_cache=use_cache)
            rates[use_cache].append(args.tokens / (time.perf_counter() - start))

    print(
        f"model: {model.num_params():,} parameters, {cfg.n_layer} layers x {cfg.n_embd}, "
        f"block_size {cfg.block_size}, {cfg.pos_encoding} positions, {torch.get_num_threads()} threads"
    )
    print(f"task: {args.tokens} characters, greedy, median of {args.repeats} runs (interleaved)")
    cached, full = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"{'KV cache':<16}{cached:>10,.0f} tokens/s")
    print(f"{'full recompute':<16}{full:>10,.0f} tokens/s")
    print(f"speed-up: {cached / full:.1f}x   identical output: {torch.equal(outputs[True], outputs[False])}")


if __name__ == "__main__":
    from minigpt.cli import user_errors

    with user_errors():  # a missing checkpoint or a bad override: one line, exit 2
        main()
