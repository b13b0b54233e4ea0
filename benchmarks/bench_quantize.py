"""float32 vs dynamic int8 on CPU: generation speed, size of the weights, validation loss.

    python benchmarks/bench_quantize.py --ckpt outputs/.../best.ckpt

Speed: both models generate --tokens characters greedily with the KV cache from the same
prompt, --repeats times, interleaved (fp32, int8, fp32, ...) so that both see the same machine
load; the median tokens/s of each is printed. Size: bytes of the state_dict as torch.save
writes it. Loss: minigpt.analysis.metrics's sweep of the validation split of the checkpoint's corpus
(the number evaluate.py prints), once per model and timed, which shows batched throughput.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.analysis.metrics import evaluation_ids, loss_metrics, token_losses
from minigpt.checkpoint.load import load_model
from minigpt.inference.quantize import quantize_int8, state_dict_bytes
from minigpt.sampling import SamplingConfig, generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a training checkpoint")
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    loaded = load_model(args.ckpt, "cpu")
    models = {"float32": loaded.model, "int8": quantize_int8(loaded.model)}
    cfg = loaded.model.config

    prompt = torch.zeros(1, 1, dtype=torch.long)
    greedy = SamplingConfig(temperature=0)
    for model in models.values():  # warm-up
        generate(model, prompt, 50, greedy, use_cache=True)
    rates: dict[str, list[float]] = {name: [] for name in models}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            outputs[name] = generate(model, prompt, args.tokens, greedy, use_cache=True)
            rates[name].append(args.tokens / (time.perf_counter() - start))

    ids, description = evaluation_ids(loaded, {})
    losses, sweep = {}, {}
    for name, model in models.items():  # batched forward passes: 64 windows x block_size per call
        start = time.perf_counter()
        losses[name] = loss_metrics(token_losses(model, ids))["loss"]
        sweep[name] = ids.numel() / (time.perf_counter() - start)
    sizes = {name: state_dict_bytes(model) for name, model in models.items()}
    speed = {name: statistics.median(r) for name, r in rates.items()}
    same = (outputs["float32"][0] == outputs["int8"][0]).long()
    agree = int(same.cumprod(0).sum()) - 1  # generated characters before the first difference

    print(
        f"model: {loaded.model.num_params():,} parameters, {cfg.n_layer} layers x {cfg.n_embd}, "
        f"block_size {cfg.block_size}, {threads} thread{'s' if threads > 1 else ''}, quantized engine "
        f"{torch.backends.quantized.engine}"
    )
    print(f"speed: {args.tokens} characters, greedy, KV cache, median of {args.repeats} runs (interleaved)")
    print(f"loss: {description}, {ids.numel():,} characters, batches of 64 windows (one run)")
    print(f"{'':<9}{'generate tokens/s':>18}{'loss sweep tokens/s':>21}{'state_dict':>14}{'val loss':>10}")
    for name in models:
        print(
            f"{name:<9}{speed[name]:>18,.0f}{sweep[name]:>21,.0f}{sizes[name] / 2**20:>10.2f} MiB{losses[name]:>10.4f}"
        )
    print(
        f"int8 / float32: generate {speed['int8'] / speed['float32']:.2f}x, loss sweep "
        f"{sweep['int8'] / sweep['float32']:.2f}x, size {sizes['int8'] / sizes['float32']:.2f}x, "
        f"loss {losses['int8'] - losses['float32']:+.4f}; greedy texts agree for the first {agree} of "
        f"{args.tokens} characters"
    )


if __name__ == "__main__":
    from minigpt.cli import user_errors

    with user_errors():  # a missing checkpoint or a bad override: one line, exit 2
        main()
