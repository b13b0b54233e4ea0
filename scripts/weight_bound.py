"""How large can weights be before a float32 forward pass overflows? The measurement behind
`MAX_WEIGHT` (minigpt/checkpoint/weights.py), as docs/reliability.md reports it.

For each model (the conf/model sizes, an LSTM, GPT-2 124M's shape), every weight is set to the
same magnitude M, with random signs (the typical case) or all positive (aligned: the worst
case), and one forward pass over a window of token ids is run; the table says, for each M, whether
the logits stayed finite.

    python scripts/weight_bound.py
"""

from __future__ import annotations

import torch

from minigpt.architectures import build_model

MAGNITUDES = (1e2, 1e3, 1e4, 1e5, 1e6, 1e8, 1e10, 1e19, 1e38)
SMALL = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
MODELS = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 32},
    "small": SMALL,
    "medium": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256},
    "small, no norm": {**SMALL, "norm": "none"},
    "small, rmsnorm, rope": {**SMALL, "norm": "rmsnorm", "pos_encoding": "rope"},
    "lstm": {"arch": "lstm", "n_layer": 2, "n_embd": 128, "block_size": 64},
    "gpt2 124M": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "vocab_size": 50257},
}


@torch.no_grad()
def finite_at(model: torch.nn.Module, magnitude: float, aligned: bool, ids: torch.Tensor) -> bool:
    """Whether the logits of `ids` stay finite with every weight of `model` at `magnitude`."""
    generator = torch.Generator().manual_seed(0)
    for p in model.parameters():
        sign = torch.ones_like(p) if aligned else torch.randint(0, 2, p.shape, generator=generator) * 2.0 - 1
        p.copy_(sign * magnitude)
    return bool(torch.isfinite(model(ids)).all())


def main() -> None:
    torch.manual_seed(0)
    print("| model | " + " | ".join(f"{m:g}" for m in MAGNITUDES) + " |")
    print("|---|" + "---|" * len(MAGNITUDES))
    for name, options in MODELS.items():
        config = {"arch": "gpt", "vocab_size": 65, **options}
        model = build_model(config).eval()
        ids = torch.randint(0, config["vocab_size"], (1, min(64, config["block_size"])))
        for aligned in (False, True):
            cells = ["finite" if finite_at(model, m, aligned, ids) else "**inf/nan**" for m in MAGNITUDES]
            print(f"| {name} ({'all positive' if aligned else 'random signs'}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
