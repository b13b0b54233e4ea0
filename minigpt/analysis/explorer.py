"""The attention explorer: one self-contained HTML page per checkpoint and text.

The page (explorer.html beside this module: its own small style sheet and JavaScript) gets every
attention weight of the text inline, one byte each, with the head scores and ablation results;
it needs no server, no network and no other file. A text longer than the model's context is
seen as generation sees it: each position attends within the `block_size` positions ending at it.
"""

from __future__ import annotations

import base64
import json
import math
from importlib.resources import files

import torch

from minigpt.model import GPT
from minigpt.probes import batch_attention

# the head table beside the grid: (key in each head's record, column label, digits, tooltip)
COLUMNS = (
    ("previous", "prev", 2, "mean weight on the previous position"),
    ("current", "cur", 2, "mean weight on the position itself"),
    ("first", "first", 2, "mean weight on the window's first position (an attention sink)"),
    ("newline", "nl", 2, "mean weight on the most recent newline"),
    ("space", "sp", 2, "mean weight on the most recent space"),
    ("distance", "dist", 1, "mean distance of the positions attended to"),
    ("induction", "ind", 2, "induction score on repeated random text"),
    ("zero_increase", "\u0394 zero", 3, "loss increase (nats) when the head's output is set to zero"),
    ("mean_increase", "\u0394 mean", 3, "loss increase (nats) when the head's output is set to its mean"),
)


def attention_band(model: GPT, ids: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Every layer's attention for a text (T,) by distance: (n_layer, nh, T, W) with
    [..., q, d] = the weight query q puts on key q - d, W = min(T, block_size). The first W
    queries share one window; each later query q gets the window of the W positions ending at q."""
    T, W = ids.numel(), min(ids.numel(), model.config.block_size)
    n_layer, nh = model.config.n_layer, model.config.n_head
    band = torch.zeros(n_layer, nh, T, W)
    q, d = torch.arange(W)[:, None], torch.arange(W)
    key = (q - d).clamp(min=0).expand(nh, W, W)
    for layer, maps in enumerate(batch_attention(model, ids[None, :W])):
        band[layer, :, :W] = maps[0].gather(-1, key) * (d <= q)
    starts = torch.arange(1, T - W + 1)
    for chunk in starts.split(batch_size):
        windows = ids[chunk[:, None] + torch.arange(W)]  # (B, W): window s ends at query s + W - 1
        for layer, maps in enumerate(batch_attention(model, windows)):
            band[layer, :, chunk + W - 1] = maps[:, :, -1].flip(-1).transpose(0, 1)  # key s + W - 1 - d
    return band


def head_records(scores: dict[str, torch.Tensor], ablation: list[dict]) -> dict[str, dict]:
    """Per head (`L1H2`): its scores and its ablation results, as plain numbers (None for NaN)."""
    records: dict[str, dict] = {}
    n_layer, nh = next(iter(scores.values())).shape
    for layer in range(n_layer):
        for head in range(nh):
            records[f"L{layer}H{head}"] = {name: _number(v[layer, head]) for name, v in scores.items()}
    for row in ablation:
        if row["kind"] == "head":
            records[row["part"]].update(zero_increase=row["zero_increase"], mean_increase=row["mean_increase"])
    return records


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def explorer_page(
    chars: list[str], band: torch.Tensor, heads: dict[str, dict], meta: str, notes: str = "", start: int = 0
) -> str:
    """The explorer's HTML for the text `chars` and its attention `band` (`attention_band`);
    `heads` (`head_records`) fills the table, ranked by the cost of removing each head."""
    n_layer, nh, _, window = band.shape
    order = sorted(heads, key=lambda name: -(heads[name].get("mean_increase") or 0.0))
    data = {
        "chars": chars,
        "n_layer": n_layer,
        "n_head": nh,
        "window": window,
        "band": base64.b64encode((band * 255).round().clamp(0, 255).to(torch.uint8).numpy().tobytes()).decode(),
        "heads": heads,
        "order": order,
        "columns": [{"key": k, "label": lab, "digits": d, "help": h} for k, lab, d, h in COLUMNS],
        "meta": meta,
        "notes": notes,
        "start": start,
    }
    # no <, > or & reaches the page as itself: "</script>" would end the data's element early and
    # "<!--" would make the parser look past its end; in JSON strings their escapes mean the same
    inline = json.dumps(data, ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        inline = inline.replace(char, escape)
    template = files("minigpt.analysis").joinpath("explorer.html").read_text(encoding="utf-8")
    return template.replace("__MINIGPT_DATA__", inline)
