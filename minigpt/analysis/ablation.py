"""Ablation: how much the validation loss rises when one part of the model is removed.

A part is one attention head, a whole layer's attention, or a whole layer's MLP. Removing it
replaces its output while the model runs, through forward hooks on the model itself (no copy of
it, and no hook left behind): zero ablation writes zeros, mean ablation writes the part's mean
output over the validation windows (what the part says on average, so only what it says about
*this* position is lost). With nothing removed no hook is registered, so the model computes
exactly what it computes without this module, as fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minigpt.errors import ConfigError
from minigpt.model import GPT
from minigpt.probes import eval_mode, model_device, position_losses, repeat_losses

KINDS = ("head", "attn", "mlp")
MODES = ("zero", "mean")


@dataclass(frozen=True)
class Part:
    """A removable part: `head` (an attention head of `layer`), `attn` or `mlp` (all of one
    layer's attention or its MLP)."""

    kind: str
    layer: int
    head: int = -1

    @property
    def name(self) -> str:
        return f"L{self.layer}H{self.head}" if self.kind == "head" else f"L{self.layer} {self.kind}"


def head_name(text: object) -> tuple[int, int]:
    """`L1H2` -> (1, 2): layer and head, counted from 0; one line for anything else."""
    match = re.fullmatch(r"[Ll](\d+)[Hh](\d+)", str(text).strip())
    if not match:
        raise ConfigError(f"{text!r} is not a head; write heads as L<layer>H<head>, e.g. L1H2 (counted from 0)")
    return int(match[1]), int(match[2])


def parse_head(text: object, n_layer: int, n_head: int) -> Part:
    """`L1H2` -> the head 2 of layer 1, refused in one line when the model has no such head."""
    layer, head = head_name(text)
    if layer >= n_layer or head >= n_head:
        raise ConfigError(
            f"head {text} does not exist: the model has layers 0-{n_layer - 1} and heads 0-{n_head - 1} per layer"
        )
    return Part("head", layer, head)


def every_part(n_layer: int, n_head: int) -> list[Part]:
    """Every head, then every layer's attention and MLP."""
    heads = [Part("head", i, h) for i in range(n_layer) for h in range(n_head)]
    return heads + [Part(kind, i) for i in range(n_layer) for kind in ("attn", "mlp")]


# --------------------------------------------------------------------------- the hooks


def output_means(model: GPT, windows: torch.Tensor, batch_size: int = 64) -> dict[tuple[str, int], torch.Tensor]:
    """The mean over every position of `windows` (B, T) of what mean ablation writes: per layer,
    the heads' outputs side by side (the input of attn.c_proj, ("heads", i)), the attention's
    output (("attn", i)) and the MLP's (("mlp", i)), each (C,)."""
    sums: dict[tuple[str, int], torch.Tensor] = {}

    def adder(key, pre: bool):
        def hook(module, args, output=None):
            x = args[0] if pre else output[0] if isinstance(output, tuple) else output
            sums[key] = sums.get(key, 0) + x.detach().double().sum((0, 1))

        return hook

    handles = []
    for i, block in enumerate(model.transformer.h):
        handles.append(block.attn.c_proj.register_forward_pre_hook(adder(("heads", i), True)))
        handles.append(block.attn.register_forward_hook(adder(("attn", i), False)))
        handles.append(block.mlp.register_forward_hook(adder(("mlp", i), False)))
    try:
        with eval_mode(model):
            for chunk in windows.split(batch_size):
                model(chunk.to(model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return {key: (s / windows.numel()).float() for key, s in sums.items()}


@contextmanager
def ablated(
    model: GPT, parts: Iterable[Part], means: dict[tuple[str, int], torch.Tensor] | None = None
) -> Iterator[GPT]:
    """The model with `parts` removed inside the block: their outputs replaced by zeros, or by
    `means` (from `output_means`) for mean ablation. A head's output is its slice of the input of
    attn.c_proj; a layer's attention or MLP output is what the block adds to the residual stream."""
    parts = list(parts)
    hs = model.config.head_size
    handles = []
    for i, block in enumerate(model.transformer.h):
        heads = [p.head for p in parts if p.kind == "head" and p.layer == i]
        if heads:
            fill = None if means is None else means[("heads", i)]
            handles.append(block.attn.c_proj.register_forward_pre_hook(_head_hook(heads, hs, fill)))
        for kind, module in (("attn", block.attn), ("mlp", block.mlp)):
            if Part(kind, i) in parts:
                fill = None if means is None else means[(kind, i)]
                handles.append(module.register_forward_hook(_output_hook(fill)))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def _head_hook(heads: list[int], head_size: int, fill: torch.Tensor | None):
    """A pre-hook of attn.c_proj writing `fill` (or zeros) over the channels of `heads`."""

    def hook(module, args):
        y = args[0].clone()  # (B, T, C): the heads' outputs side by side
        for h in heads:
            cols = slice(h * head_size, (h + 1) * head_size)
            y[..., cols] = 0.0 if fill is None else fill[cols].to(y)
        return (y, *args[1:])

    return hook


def _output_hook(fill: torch.Tensor | None):
    """A forward hook replacing a module's output (the first element of a tuple) with `fill`."""

    def hook(module, args, output):
        out = output[0] if isinstance(output, tuple) else output
        new = torch.zeros_like(out) if fill is None else fill.to(out).expand_as(out)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


# --------------------------------------------------------------------------- the losses


def mean_loss(model: GPT, windows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats) of predicting windows[:, 1:] from windows[:, :-1] (B, T + 1)."""
    total = 0.0
    with eval_mode(model):
        for chunk in windows.split(batch_size):
            chunk = chunk.to(model_device(model))
            logits = model(chunk[:, :-1])
            total += float(F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum"))
    return total / (windows.size(0) * (windows.size(1) - 1))


def ablation_table(model: GPT, windows: torch.Tensor, parts: list[Part], batch_size: int = 64) -> list[dict]:
    """For each part: the loss on `windows` (B, T + 1) with it removed, zero- and mean-ablated,
    as increases over the intact model's loss (nats); rows ranked by the mean ablation's cost."""
    base = mean_loss(model, windows, batch_size)
    means = output_means(model, windows[:, :-1], batch_size)
    rows = []
    for part in parts:
        row = {
            "part": part.name,
            "kind": part.kind,
            "layer": part.layer,
            "head": part.head if part.kind == "head" else "",
        }
        for mode in MODES:
            with ablated(model, [part], means if mode == "mean" else None):
                row[f"{mode}_increase"] = mean_loss(model, windows, batch_size) - base
        rows.append(row)
    rows.sort(key=lambda r: -r["mean_increase"])
    return [{"rank": i + 1, **row, "base_loss": base} for i, row in enumerate(rows)]


def together(model: GPT, windows: torch.Tensor, parts: list[Part], batch_size: int = 64) -> dict[str, float]:
    """The loss increase when all of `parts` are removed at once (zero and mean ablation)."""
    base = mean_loss(model, windows, batch_size)
    means = output_means(model, windows[:, :-1], batch_size)
    result = {}
    for mode in MODES:
        with ablated(model, parts, means if mode == "mean" else None):
            result[f"{mode}_increase"] = mean_loss(model, windows, batch_size) - base
    return result


def copy_losses(model: GPT, ids: torch.Tensor, parts: Iterable[Part] = ()) -> tuple[float, float]:
    """The loss (nats) on the first and on the repeated copy of sequences `ids` (n, 2P) written
    twice (`probes.repeat_losses`), with `parts` zero-ablated."""
    with ablated(model, parts):
        return repeat_losses(position_losses(model, ids), ids.size(1) // 2)


def repeat_ablation(model: GPT, parts: list[Part], ids: torch.Tensor) -> list[dict]:
    """What removing each of `parts` (zero ablation), and all of them together, costs on the first
    and on the repeated copy of sequences `ids` (n, 2P) written twice (`probes.repeated_windows`):
    an induction circuit's heads cost little on the first copy, where the context holds no copy
    to read, and much on the repeated one. One row per removal, the first with nothing removed."""
    base_first, base_again = copy_losses(model, ids)
    rows = [{"removed": "nothing", "first_copy": base_first, "repeated_copy": base_again}]
    groups = [[p] for p in parts] + ([parts] if len(parts) > 1 else [])
    for group in groups:
        first, again = copy_losses(model, ids, group)
        rows.append(
            {
                "removed": " + ".join(p.name for p in group),
                "first_copy": first,
                "repeated_copy": again,
                "first_increase": first - base_first,
                "repeated_increase": again - base_again,
            }
        )
    return rows
