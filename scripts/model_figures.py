"""The diagrams of docs/reading-the-model.md, docs/sampling.md and docs/configs.md, drawn from
minigpt's own tensors rather than by hand.

    python scripts/model_figures.py [--ckpt outputs/.../best.ckpt]

The model figures use the `small` model of conf/model/small.yaml, freshly initialised (seed 0)
with the 65-character vocabulary of Tiny Shakespeare: they show mechanics, which do not need
training. Every shape is recorded by forward hooks during a real forward pass; the causal mask and
ALiBi's penalty are `GPT.attention_bias`'s; RoPE's rotation is `rope_cos_sin` and `apply_rope`;
the KV cache is filled by real cached decoding, checked equal to full recompute. The sampling
figure needs a trained checkpoint (`--ckpt`): the distributions of its next character after each
of `process_logits`'s filters. The configs figure counts the parameters of every model of
conf/model/, built on the meta device. Writes docs/images/model_*.png, sampling_filters.png and
configs_model_sizes.png, and prints what each shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyBboxPatch

from minigpt.architectures import build_model
from minigpt.checkpoint.load import load_model
from minigpt.configs import compose
from minigpt.figures import show_char
from minigpt.model import GPT, apply_rope, rope_cos_sin
from minigpt.sampling import SamplingConfig, process_logits

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
# the 65 characters of Tiny Shakespeare, in the order the character tokenizer sorts them
VOCAB = list("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
TEXT = "ROMEO:\nBut soft, what light"
DPI = 100


def small_model(**changes) -> GPT:
    """conf/model/small.yaml as the training run composes it, freshly initialised (seed 0)."""
    model_cfg = dict(compose("train", ["model=small"]).model)
    model_cfg.update(vocab_size=len(VOCAB), **changes)
    torch.manual_seed(0)
    return build_model(model_cfg).eval()


def ids_of(text: str) -> torch.Tensor:
    return torch.tensor([[VOCAB.index(c) for c in text]])


def save(fig, name: str) -> None:
    path = IMAGES / name
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"wrote {shown} ({path.stat().st_size // 1024} KB)")


# --------------------------------------------------------------------------- the whole model


def recorded_shapes(model: GPT, ids: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The output shape of every named module of `model` in one forward pass (forward hooks)."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module in model.named_modules():

        def record(_module, _inputs, output, name=name):
            out = output[0] if isinstance(output, tuple) else output
            shapes.setdefault(name, tuple(out.shape))

        hooks.append(module.register_forward_hook(record))
    with torch.no_grad():
        model(ids)
    for hook in hooks:
        hook.remove()
    return shapes


def params(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,} params"


def overview_boxes(model: GPT, shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, str, str, str]]:
    """(label, output shape, parameters, colour) of each box of the overview, bottom to top."""
    cfg, t = model.config, model.transformer
    block = t.h[0]
    tied = model.lm_head.weight is t.wte.weight
    return [
        ("token ids", str(shapes["transformer.wte"][:2]), "", "#eeeeee"),
        ("wte: token embedding", str(shapes["transformer.wte"]), params(t.wte), "#cfe2f3"),
        (f"+ wpe: {cfg.pos_encoding} positions", str(shapes["transformer.wpe"]), params(t.wpe), "#cfe2f3"),
        ("ln_1", str(shapes["transformer.h.0.ln_1"]), params(block.ln_1), "#fff2cc"),
        (
            f"attn: {cfg.n_head} heads of {cfg.head_size}",
            str(shapes["transformer.h.0.attn"]),
            params(block.attn),
            "#f4cccc",
        ),
        ("+ (residual)", "", "", "#ffffff"),
        ("ln_2", str(shapes["transformer.h.0.ln_2"]), params(block.ln_2), "#fff2cc"),
        (
            f"mlp: {cfg.n_embd} → {cfg.mlp_ratio * cfg.n_embd} → {cfg.n_embd}",
            str(shapes["transformer.h.0.mlp"]),
            params(block.mlp),
            "#d9ead3",
        ),
        ("+ (residual)", "", "", "#ffffff"),
        ("ln_f", str(shapes["transformer.ln_f"]), params(t.ln_f), "#fff2cc"),
        (
            "lm_head" + (" (tied to wte)" if tied else ""),
            str(shapes["lm_head"]),
            "shared" if tied else params(model.lm_head),
            "#d9d2e9",
        ),
    ]


def draw_overview(model: GPT, shapes: dict[str, tuple[int, ...]]) -> plt.Figure:
    boxes = overview_boxes(model, shapes)
    fig, ax = plt.subplots(figsize=(8, 7.2))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.3, len(boxes) + 0.1)
    ax.axis("off")
    left, right, mid = 2.0, 7.0, 4.5
    for i, (label, shape, count, colour) in enumerate(boxes):
        ax.add_patch(
            FancyBboxPatch((left, i + 0.12), right - left, 0.62, boxstyle="round,pad=0.02", fc=colour, ec="#555555")
        )
        ax.text(left + 0.15, i + 0.43, label, va="center", fontsize=11)
        ax.text(right - 0.15, i + 0.43, shape, va="center", ha="right", fontsize=9, family="monospace")
        ax.text(right + 0.45, i + 0.43, count, va="center", fontsize=9, color="#444444")
        if i:
            ax.annotate("", (mid, i + 0.12), (mid, i - 0.24), arrowprops={"arrowstyle": "->", "color": "#555555"})
    # the block repeats n_layer times; the residual stream runs past each sub-layer to its "+"
    blue = "#1f4e99"
    ax.add_patch(plt.Rectangle((0.9, 2.88), right + 0.2 - 0.9, 6.0, fill=False, ls="--", ec=blue))
    ax.text(right + 0.45, 8.55, f"Block × {model.config.n_layer}", color=blue, fontsize=11)
    for start, end in ((3, 5), (6, 8)):
        y0, y1 = start - 0.06, end + 0.43
        ax.plot([mid, 1.3, 1.3], [y0, y0, y1], color=blue, lw=1.5)
        ax.annotate("", (left, y1), (1.3, y1), arrowprops={"arrowstyle": "->", "color": blue, "lw": 1.5})
    ax.text(0.05, 4.2, "residual\nstream", color=blue, fontsize=9)
    T = shapes["lm_head"][1]
    ax.set_title(
        f"model=small on T={T} characters: the output shape of each module (forward hooks),\n"
        f"{sum(p.numel() for p in model.parameters()):,} parameters "
        f"({model.num_params():,} without the position table)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- heads: split and merge


def attention_tensors(model: GPT, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block 0's c_attn output (B, T, 3C), its c_proj input (B, T, C) (the merged heads) and its
    attention weights (B, nh, T, T), recorded by forward hooks in one forward pass."""
    attn = model.transformer.h[0].attn
    seen = {}
    hooks = [
        attn.c_attn.register_forward_hook(lambda m, i, o: seen.setdefault("qkv", o)),
        attn.c_proj.register_forward_hook(lambda m, i, o: seen.setdefault("merged", i[0])),
    ]
    with torch.no_grad():
        _, weights = model.forward_with_attention(ids)
    for hook in hooks:
        hook.remove()
    return seen["qkv"], seen["merged"], weights[0]


def draw_heads(model: GPT, ids: torch.Tensor) -> plt.Figure:
    qkv, merged, weights = attention_tensors(model, ids)
    B, T, C = merged.shape
    nh, hs = model.config.n_head, model.config.head_size
    q = qkv[..., :C]
    v_heads = qkv[..., 2 * C :].view(B, T, nh, hs).transpose(1, 2)  # as CausalSelfAttention splits
    y_heads = merged.view(B, T, nh, hs).transpose(1, 2)
    # the merged heads are each head's weights times its values, side by side
    torch.testing.assert_close(y_heads, weights @ v_heads)
    q_heads = q.view(B, T, nh, hs).transpose(1, 2)
    fig = plt.figure(figsize=(8, 7.6))
    grid = fig.add_gridspec(4, nh, hspace=1.1, wspace=0.12, top=0.9, bottom=0.07)
    rows = [
        (q[0], [q_heads[0, h] for h in range(nh)], "RdBu_r"),
        (merged[0], [y_heads[0, h] for h in range(nh)], "PuOr_r"),
    ]
    captions = (
        f"q = c_attn(x)[..., :C]: (B, T, C) = {tuple(q.shape)}, the {nh} heads side by side",
        f"q.view(B, T, nh, hs).transpose(1, 2): (B, nh, T, hs) = {tuple(q_heads.shape)}",
        f"y.transpose(1, 2).view(B, T, C) = {tuple(merged.shape)}: merged, then c_proj mixes them",
        f"each head on its own: weights (B, nh, T, T) @ v (B, nh, T, hs) = {tuple(y_heads.shape)}",
    )
    for (row, heads_row), (matrix, heads, cmap), (title, heads_title) in zip(
        ((0, 1), (3, 2)), rows, (captions[:2], captions[2:])
    ):
        limit = matrix.abs().max().item()
        style = {"cmap": cmap, "vmin": -limit, "vmax": limit, "aspect": "auto", "interpolation": "nearest"}
        ax = fig.add_subplot(grid[row, :])
        ax.imshow(matrix, **style)
        for h in range(1, nh):
            ax.axvline(h * hs - 0.5, color="black", lw=1.5)
        ax.set_ylabel("position", fontsize=9)
        ax.set_xlabel("channel", fontsize=9)
        ax.set_title(title, fontsize=10)
        for h, head in enumerate(heads):
            small = fig.add_subplot(grid[heads_row, h])
            small.imshow(head, **style)
            small.set_xticks([])
            small.set_yticks([])
            small.set_xlabel(f"head {h}", fontsize=9)
        top = small.get_position().y1
        fig.text(0.5, top + 0.015, heads_title, ha="center", fontsize=10)
    return fig


# --------------------------------------------------------------------------- the causal mask


def heatmap(ax, values: torch.Tensor, rows: list[str], cols: list[str], title: str, cmap: str, fmt: str) -> None:
    """values (len(rows), len(cols)) with each cell written in it; -inf shown as a blank cell."""
    finite = torch.isfinite(values)
    shown = values.masked_fill(~finite, float("nan"))
    ax.imshow(shown, cmap=cmap, aspect="equal", interpolation="nearest")
    for (i, j), v in zip(
        torch.cartesian_prod(torch.arange(values.size(0)), torch.arange(values.size(1))).tolist(),
        values.flatten().tolist(),
    ):
        ax.text(j, i, "−∞" if v == float("-inf") else format(v, fmt), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("key", fontsize=9)
    ax.set_ylabel("query", fontsize=9)
    ax.set_title(title, fontsize=10)


def draw_mask(model: GPT, alibi: GPT, text: str) -> plt.Figure:
    T = len(text)
    chars = [show_char(c) for c in text]
    full = model.attention_bias(T, past=0, dense=True, device=torch.device("cpu"))[0]
    cached = model.attention_bias(3, past=T - 3, dense=True, device=torch.device("cpu"))[0]
    slopes = alibi.attention_bias(T, past=0, dense=True, device=torch.device("cpu"))
    with torch.no_grad():
        weights = model.forward_with_attention(ids_of(text))[1][0][0, 0]
    fig, axes = plt.subplots(2, 2, figsize=(8, 8))
    heatmap(axes[0, 0], full, chars, chars, f"attention_bias(T={T}, past=0): added to the scores", "Greys", ".0f")
    heatmap(axes[0, 1], weights, chars, chars, "softmax(scores + bias): layer 0, head 0", "Blues", ".2f")
    heatmap(axes[1, 0], cached, chars[-3:], chars, f"T=3 new queries after past={T - 3} cached keys", "Greys", ".0f")
    heatmap(
        axes[1, 1],
        slopes[0],
        chars,
        chars,
        f"ALiBi, head 0: −{alibi.alibi_slopes[0]:.2f} × distance",
        "Oranges_r",
        ".1f",
    )
    fig.suptitle(f"the causal mask of model=small on {text!r}: a query sees its own key and earlier ones", fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- RoPE


def draw_rope(model: GPT) -> plt.Figure:
    hs, base = model.config.head_size, model.config.rope_base
    positions = torch.arange(model.config.block_size)
    cos, sin = rope_cos_sin(positions, hs, base)  # (T, hs/2)
    fig = plt.figure(figsize=(8, 7.6))
    mosaic = fig.subplot_mosaic([["cos", "cos"], ["turn", "score"]], height_ratios=[0.8, 1])
    axes = [mosaic["cos"], mosaic["turn"], mosaic["score"]]
    axes[0].imshow(cos.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    axes[0].set_xlabel("position", fontsize=9)
    axes[0].set_ylabel("pair i: (x[2i], x[2i+1])", fontsize=9)
    axes[0].set_title(f"rope_cos_sin: cos of each pair's angle (head size {hs}, base {base:g})", fontsize=10)
    # one vector, the same at every position, rotated by apply_rope: pair 0 turns fastest
    x = torch.zeros(1, 1, 8, hs)
    x[..., 0::2] = 1.0
    rotated = apply_rope(x, cos[:8], sin[:8])[0, 0]
    for pair, colour in ((0, "#c0392b"), (3, "#1f4e99")):
        for t in range(8):
            a, b = rotated[t, 2 * pair].item(), rotated[t, 2 * pair + 1].item()
            axes[1].annotate(
                "", (a, b), (0, 0), arrowprops={"arrowstyle": "->", "color": colour, "alpha": 0.35 + 0.08 * t}
            )
            axes[1].text(1.1 * a, 1.1 * b, str(t), color=colour, fontsize=8, ha="center", va="center")
        axes[1].plot([], [], color=colour, label=f"pair {pair}")
    axes[1].set(xlim=(-1.25, 1.25), ylim=(-1.25, 1.25), aspect="equal")
    axes[1].legend(fontsize=8, loc="lower left")
    axes[1].set_title("apply_rope: the pair (1, 0)\nat positions 0-7", fontsize=10)
    # the score of a rotated query and key depends on the offset between them only
    torch.manual_seed(0)
    q, k = torch.randn(hs), torch.randn(hs)
    qs = apply_rope(q.expand(1, 1, len(positions), hs), cos, sin)[0, 0]
    ks = apply_rope(k.expand(1, 1, len(positions), hs), cos, sin)[0, 0]
    scores = qs @ ks.T  # (T, T): query at m, key at n
    m, n = torch.meshgrid(positions, positions, indexing="ij")
    keep = n <= m
    axes[2].scatter((m - n)[keep], scores[keep], s=4, color="#1f4e99")
    axes[2].set_xlabel("offset m − n (query − key position)", fontsize=9)
    axes[2].set_ylabel("q·k after rotation", fontsize=9)
    axes[2].set_title(
        f"all {int(keep.sum())} pairs (m, n) of {len(positions)} positions:\none score per offset", fontsize=10
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the KV cache


def cached_decoding(model: GPT, prompt: str, steps: int) -> tuple[list[tuple[int, int]], list[int], float]:
    """Greedy decoding with a KV cache: (past, new) positions of each forward call, the ids, and the
    largest difference between a cached call's last logits and a full recompute of the same text."""
    cache = model.new_cache()
    ids = ids_of(prompt)[0].tolist()
    calls, worst, new = [], 0.0, ids
    with torch.no_grad():
        for _ in range(steps + 1):
            calls.append((cache.length, len(new)))
            cached = model(torch.tensor([new]), cache=cache)[0, -1]
            full = model(torch.tensor([ids]))[0, -1]
            worst = max(worst, (cached - full).abs().max().item())
            new = [int(cached.argmax())]
            ids = ids + new
    return calls, ids[: calls[-1][0] + calls[-1][1]], worst


def draw_kv_cache(model: GPT, prompt: str, steps: int = 4) -> plt.Figure:
    calls, ids, worst = cached_decoding(model, prompt, steps)
    chars = [show_char(VOCAB[i]) for i in ids]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colours = {"cache": "#d9d9d9", "new": "#93c47d"}
    for row, (past, new) in enumerate(calls):
        for pos in range(past + new):
            kind = "cache" if pos < past else "new"
            ax.add_patch(plt.Rectangle((pos, -row - 1), 0.95, 0.9, color=colours[kind]))
            ax.text(pos + 0.47, -row - 0.55, chars[pos], ha="center", va="center", fontsize=10, family="monospace")
        name = "prefill" if row == 0 else f"step {row}"
        ax.text(-0.3, -row - 0.55, name, ha="right", va="center", fontsize=10)
        ax.text(
            len(chars) + 0.3,
            -row - 0.55,
            f"T={new} {'query' if new == 1 else 'queries'}, S={past + new} keys",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(-2.2, len(chars) + 4.2)
    ax.set_ylim(-len(calls) - 0.2, 0.1)
    ax.axis("off")
    ax.legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()],
        labels=["k, v read from the cache", "q, k, v computed, k and v stored"],
        loc="lower center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=2,
        fontsize=9,
        frameon=False,
    )
    cache = model.new_cache()
    with torch.no_grad():
        model(ids_of(prompt), cache=cache)
    ax.set_title(
        f"greedy decoding with model.new_cache(): each layer's k, v are {tuple(cache.k[0].shape)} "
        "(B, nh, block_size, hs);\n"
        f"the last logits of every call equal a full recompute to within {worst:.1e}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- sampling


FILTERS = (
    ("temperature=1", SamplingConfig()),
    ("temperature=0.5", SamplingConfig(temperature=0.5)),
    ("temperature=1.5", SamplingConfig(temperature=1.5)),
    ("top_k=5", SamplingConfig(top_k=5)),
    ("top_p=0.9", SamplingConfig(top_p=0.9)),
    ("min_p=0.1", SamplingConfig(min_p=0.1)),
)


def draw_sampling(ckpt: Path, prompt: str, shown: int = 16) -> plt.Figure:
    """The next-character distribution of a trained checkpoint after `prompt`, as each filter of
    `process_logits` leaves it (bars), over the unfiltered one (outlines)."""
    loaded = load_model(ckpt)
    ids = torch.tensor([loaded.tokenizer.encode(prompt)])
    with torch.no_grad():
        logits = loaded.model(ids)[:, -1].float()  # (1, V)
    base = torch.softmax(logits, -1)[0]
    order = base.argsort(descending=True)[:shown]
    labels = [show_char(loaded.tokenizer.decode([int(i)])) for i in order]
    fig, axes = plt.subplots(2, 3, figsize=(9, 5.6), sharey=True)
    for ax, (name, cfg) in zip(axes.flat, FILTERS):
        probs = torch.softmax(process_logits(logits, cfg), -1)[0]
        kept = int((probs > 0).sum())
        ax.bar(range(shown), base[order], color="none", edgecolor="#999999")
        ax.bar(range(shown), probs[order], color="#1f4e99")
        ax.set_xticks(range(shown), labels, fontsize=8, family="monospace")
        ax.set_title(f"{name}: {kept} of {len(base)} kept", fontsize=10)
    for ax in axes[:, 0]:
        ax.set_ylabel("probability", fontsize=9)
    fig.suptitle(
        f"next character after {prompt!r}: process_logits's output (bars) over the unfiltered distribution (outlines)\n"
        f"{ckpt.parent.parent.name}/{ckpt.parent.name}/{ckpt.name}, {loaded.model.num_params():,} parameters",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- configs


def draw_model_sizes() -> plt.Figure:
    """Parameters of every model of conf/model/, each built on the meta device (no memory, no time)."""
    rows = []
    for path in sorted((ROOT / "conf" / "model").glob("*.yaml")):
        cfg = dict(compose("train", [f"model={path.stem}"]).model)
        with torch.device("meta"):
            model = build_model({**cfg, "vocab_size": len(VOCAB)})
        count = sum(p.numel() for p in model.parameters())
        shape = f"{cfg['n_layer']} × {cfg['n_embd']}" + (f", {cfg['n_head']} heads" if "n_head" in cfg else ", LSTM")
        rows.append((count, path.stem, f"{shape}, context {cfg['block_size']}"))
    rows.sort()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.barh(range(len(rows)), [r[0] for r in rows], color="#1f4e99")
    for i, (count, _, shape) in enumerate(rows):
        ax.text(count * 1.1, i, f"{count:,}  ({shape})", va="center", fontsize=9)
    ax.set_yticks(range(len(rows)), [f"model={r[1]}" for r in rows], fontsize=10)
    ax.set_xscale("log")
    ax.set_xlim(min(r[0] for r in rows) / 2, max(r[0] for r in rows) * 100)
    ax.set_xlabel("parameters, the position table included (log scale), vocabulary of 65 characters", fontsize=9)
    ax.set_title("the models of conf/model/, counted from the models themselves", fontsize=11)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="a trained checkpoint for the sampling figure")
    parser.add_argument("--prompt", default="ROMEO:\nWhat ", help="the text the sampling figure continues")
    args = parser.parse_args()
    model, ids = small_model(), ids_of(TEXT)
    save(draw_overview(model, recorded_shapes(model, ids)), "model_overview.png")
    save(draw_heads(model, ids), "model_heads_split_merge.png")
    save(draw_mask(model, small_model(pos_encoding="alibi"), "ROMEO:\nBut"), "model_causal_mask.png")
    save(draw_rope(model), "model_rope.png")
    save(draw_kv_cache(model, "ROMEO:"), "model_kv_cache.png")
    save(draw_model_sizes(), "configs_model_sizes.png")
    if args.ckpt is None:
        print("no --ckpt: sampling_filters.png not drawn")
    else:
        save(draw_sampling(args.ckpt, args.prompt), "sampling_filters.png")


if __name__ == "__main__":
    main()
