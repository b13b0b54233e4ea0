"""Look inside a trained model: figures of attention, residual stream, embeddings, logits and
per-character loss, plus samples at several temperatures.

`python -m minigpt.diagnose ckpt=... text="..."` writes them as PNGs with an index.md; the
training callbacks and notebooks/diagnostics.ipynb draw the same figures with the same functions.
Figures are `matplotlib.figure.Figure` objects made without pyplot, so nothing keeps them alive.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from pathlib import Path

import hydra
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from omegaconf import DictConfig, ListConfig, OmegaConf

from minigpt.checkpoint import LoadedModel, load_model
from minigpt.cli import check_int, check_out_dir, check_seed, check_unknown, friendly_errors, read_text_file, require
from minigpt.errors import ConfigError, MinigptError
from minigpt.evaluate import token_losses
from minigpt.generation import pick_device
from minigpt.model import GPT
from minigpt.sampling import SamplingConfig, generate, make_generator
from minigpt.tokenizer import Tokenizer

log = logging.getLogger("minigpt")
TEMPERATURES = (0.5, 0.8, 1.0, 1.2)


VISIBLE = {"\n": "\\n", "\t": "\\t", " ": "·", "\r": "\\r"}


def show_char(c: str) -> str:
    """A visible label for a character or a token: newline, tab, space and other control
    characters (BPE tokens hold any byte) would vanish in a plot or break a TSV line."""
    return "".join(_visible(ch) for ch in c) or "''"


def _visible(ch: str) -> str:
    if ch in VISIBLE:
        return VISIBLE[ch]
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Run the model without dropout or gradients, then give it back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- what the model computes


def encode(tokenizer: Tokenizer, text: str, unknown: str = "error") -> torch.Tensor:
    """Ids (T,) of `text`; one clear error when nothing of it is left."""
    ids = tokenizer.encode(text, unknown=unknown)
    if len(ids) < 2:
        raise MinigptError("the text needs at least 2 characters of the model's vocabulary; give a longer text")
    return torch.tensor(ids, dtype=torch.long)


def attention_maps(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every layer for one sequence (T,): a list of (nh, T, T), each row a
    probability distribution over the positions it may see."""
    with eval_mode(model):
        _, weights = model.forward_with_attention(ids[None].to(_device(model)))
    return [w[0].float().cpu() for w in weights]


def attention_entropy(layers: list[torch.Tensor]) -> list[float]:
    """Mean entropy (nats) of the attention rows of each layer, over heads and positions: 0 when
    every query looks at a single position, log(t + 1) at position t when it looks everywhere."""
    return [float(-(w * w.clamp_min(1e-30).log()).sum(-1).mean()) for w in layers]


def residual_stream(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream (T, C) after the embeddings and after each block, read with forward
    hooks so the model needs no extra code path."""
    states: list[torch.Tensor] = []

    def keep(module, inputs, output):
        states.append((output[0] if isinstance(output, tuple) else output)[0].float().cpu())

    hooks = [model.transformer.drop.register_forward_hook(keep)]
    hooks += [block.register_forward_hook(keep) for block in model.transformer.h]
    try:
        with eval_mode(model):
            model(ids[None].to(_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return states


def position_spread(states: list[torch.Tensor]) -> list[float]:
    """For each residual-stream state (T, C): how far the positions' vectors lie from their
    mean, relative to their size (mean over t of |x_t - mean x| / mean over t of |x_t|).
    Near 1 the positions carry different information; 0 means every position holds the same
    vector, so the model predicts the same next character everywhere (representation collapse,
    as in the no_residual ablation)."""
    spreads = []
    for x in states:
        x = x.float()
        size = x.norm(dim=-1).mean()
        spreads.append(float((x - x.mean(0)).norm(dim=-1).mean() / size) if size > 0 else 0.0)
    return spreads


def next_token_logits(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """Logits (..., T, V) for ids (..., T)."""
    with eval_mode(model):
        return model(ids.reshape(-1, ids.size(-1)).to(_device(model))).float().cpu().reshape(*ids.shape, -1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the next-token distribution at every position: (..., V) -> (...)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def sample_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    seed: int | None = None,
) -> str:
    """The prompt and `max_new_tokens` sampled characters; the same seed gives the same text."""
    device = _device(model)
    ids = tokenizer.encode(prompt or "\n", unknown="skip") or [0]
    with eval_mode(model):
        out = generate(
            model,
            torch.tensor([ids], device=device),
            max_new_tokens,
            SamplingConfig(temperature=temperature),
            generator=make_generator(seed, device),
        )
    return tokenizer.decode(out[0].tolist())


def _device(model: GPT) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------- figures


def plot_attention(weights: torch.Tensor, chars: list[str], title: str) -> Figure:
    """One heatmap per head of one layer (nh, T, T), and their mean as the last panel."""
    panels = [*weights, weights.mean(0)]
    names = [f"head {h}" for h in range(len(weights))] + ["mean of heads"]
    return _heatmaps(panels, names, chars, title)


def plot_attention_mean(layers: list[torch.Tensor], chars: list[str]) -> Figure:
    """Attention averaged over the heads of each layer and over all layers, side by side."""
    panels = [w.mean(0) for w in layers] + [torch.stack(layers).mean((0, 1))]
    names = [f"layer {i}" for i in range(len(layers))] + ["all layers"]
    return _heatmaps(panels, names, chars, "attention averaged over heads")


def _heatmaps(panels: list[torch.Tensor], names: list[str], chars: list[str], title: str) -> Figure:
    T = panels[0].size(-1)
    size = 2.2 + T / 16
    fig = Figure(figsize=(size * len(panels), size + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = [show_char(c) for c in chars]
    step = max(1, T // 32)  # at most ~32 tick labels per axis stay readable
    for i, (ax, panel, name) in enumerate(zip(axes, panels, names)):
        im = ax.imshow(panel.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(0, T, step), labels[::step], fontsize=6, family="monospace")
        # characters label the rows of the first panel only: text is most of the drawing time
        ax.set_yticks(range(0, T, step), labels[::step] if i == 0 else [], fontsize=6, family="monospace")
        ax.set_xlabel("key (attended to)", fontsize=7)
    axes[0].set_ylabel("query (predicting the next char)", fontsize=7)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(title)
    return fig


def plot_residual_norms(states: list[torch.Tensor], chars: list[str]) -> Figure:
    """L2 norm of the residual stream per position after the embeddings and after each block,
    and its mean per layer: how much each block writes into the stream."""
    norms = torch.stack([s.norm(dim=-1) for s in states])  # (n_layer + 1, T)
    names = ["embed"] + [f"block {i}" for i in range(len(states) - 1)]
    fig = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 2.5])
    left.plot(range(len(names)), norms.mean(1).numpy(), "o-")
    left.set_xticks(range(len(names)), names, rotation=45, fontsize=8)
    left.set_ylabel("mean ‖x‖ over positions")
    left.set_title("residual stream norm per layer")
    left.grid(alpha=0.3)
    im = right.imshow(norms.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
    right.set_yticks(range(len(names)), names, fontsize=8)
    T = norms.size(1)
    step = max(1, T // 48)
    right.set_xticks(range(0, T, step), [show_char(c) for c in chars][::step], fontsize=6, family="monospace")
    right.set_title("‖x‖ per position")
    fig.colorbar(im, ax=right, label="L2 norm")
    return fig


def plot_embedding_pca(weight: torch.Tensor, chars: list[str]) -> Figure:
    """The character embeddings projected on their first two principal components, each point
    labelled with its character: similar characters (vowels, digits, capitals) cluster."""
    coords, explained = embedding_pca(weight)
    fig = Figure(figsize=(7, 6), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.3)
    for (x, y), c in zip(coords.tolist(), chars):
        colour = "C3" if c.isupper() else "C0" if c.islower() else "C2"
        ax.annotate(show_char(c), (x, y), fontsize=9, ha="center", va="center", color=colour, family="monospace")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.set_title("character embeddings (wte), PCA\nred: upper case, blue: lower case, green: other", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def embedding_pca(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (V, 2) of the rows of `weight` on its first two principal components, and the
    fraction of variance each explains."""
    centred = weight.detach().float().cpu() - weight.detach().float().cpu().mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    explained = (s**2 / (s**2).sum())[:2]
    return (centred @ v[:2].T).numpy(), explained.numpy()


def plot_logits(logits: torch.Tensor, chars: list[str]) -> Figure:
    """Histogram of every logit of the text, and the next-token entropy at each position."""
    ent = entropy(logits)
    fig = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    left.hist(logits.flatten().numpy(), bins=60, color="C0")
    left.set_xlabel("logit")
    left.set_ylabel("count")
    left.set_title(f"logits ({logits.size(0)} positions x {logits.size(1)} characters)")
    T = ent.numel()
    right.bar(range(T), ent.numpy(), color="C1")
    right.axhline(np.log(logits.size(-1)), color="gray", ls=":", lw=1, label="uniform (ln V)")
    step = max(1, T // 48)
    right.set_xticks(range(0, T, step), [show_char(c) for c in chars][::step], fontsize=6, family="monospace")
    right.set_ylabel("entropy (nats)")
    right.set_title("uncertainty about the next character, after each character")
    right.legend(fontsize=8)
    return fig


def per_character(tokenizer: Tokenizer, ids: torch.Tensor, losses: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The text of `ids` and, for each of its characters after the first, the loss of the token
    holding it (with characters as tokens: the losses themselves; the first token has none)."""
    if tokenizer.kind == "char":
        return tokenizer.decode(ids.tolist()), losses
    pieces = [tokenizer.decode([i]) for i in ids.tolist()]
    per_token = [float("nan")] + losses.tolist()
    values = [loss for piece, loss in zip(pieces, per_token) for _ in piece]
    return "".join(pieces), torch.tensor(values[1:])


def plot_char_loss(text: str, losses: torch.Tensor, width: int = 64) -> Figure:
    """The text, each character shaded by the loss (nats) of predicting it; the first character
    has no prediction and stays grey. Lines wrap at newlines and at `width` characters."""
    cells: list[tuple[int, int, str, float]] = []  # (row, col, char, loss or nan)
    row = col = 0
    values = [float("nan")] + losses.tolist()
    for c, loss in zip(text, values):
        cells.append((row, col, show_char(c) if c in "\n\t" else c, loss))
        col += 1
        if c == "\n" or col >= width:
            row, col = row + 1, 0
    n_rows = row + 1
    vmax = max(float(losses.nan_to_num(0.0).max()), 1e-6)
    cmap = matplotlib.colormaps["Reds"]
    fig = Figure(figsize=(0.16 * width + 1.5, 0.3 * n_rows + 1.0), dpi=100, layout="constrained")
    ax = fig.subplots()
    for r, c, ch, loss in cells:
        colour = "0.85" if np.isnan(loss) else cmap(loss / vmax)
        ax.add_patch(Rectangle((c, r), 1, 1, color=colour))
        ax.text(c + 0.5, r + 0.55, ch, ha="center", va="center", fontsize=8, family="monospace")
    ax.set_xlim(0, width)
    ax.set_ylim(n_rows, 0)
    ax.set_axis_off()
    mappable = ScalarMappable(norm=Normalize(0, vmax), cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="loss (nats)", shrink=0.8)
    ax.set_title(f"per-character loss, mean {float(losses.nanmean()):.3f} nats")
    return fig


# --------------------------------------------------------------------------- the report


def check_temperatures(value) -> tuple[float, ...]:
    """The sampling temperatures: a list of numbers >= 0 (0 = greedy), or one number; null means
    the default four and an empty list no samples."""
    if value is None:
        return TEMPERATURES
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"temperatures must be numbers >= 0 (0 = greedy) such as [0.5,1.0], got {t!r}")
    return tuple(float(t) for t in items)


def check_sampling(max_new_tokens, seed) -> None:
    """The options of the samples, checked before anything is computed or written."""
    check_int(max_new_tokens, "max_new_tokens", 0, "the length of each sample")
    check_seed(seed)


def read_text(cfg: DictConfig) -> str:
    """The text to look at: `text_file` when given (UTF-8), else `text`; one line when it is
    missing, not text, or empty."""
    if not cfg.get("text_file"):
        text = cfg.get("text")
        if text is None or str(text) == "":
            raise ConfigError('text is empty; pass text="some text" or text_file=PATH')
        return str(text)
    text = read_text_file(cfg.text_file, "text_file", "text=...")
    if not text:
        raise MinigptError(f"text_file {cfg.text_file} is empty; pass a file with some text, or text=...")
    return text


def diagnose(
    loaded: LoadedModel,
    text: str,
    out_dir: str | Path,
    temperatures: tuple[float, ...] = TEMPERATURES,
    max_new_tokens: int = 200,
    seed: int | None = 1337,
    unknown: str = "error",
) -> Path:
    """Write every figure for `text` into `out_dir` as a PNG, and index.md listing them with the
    samples; return the index's path. Attention, residual stream and logits look at the first
    `block_size` characters; the per-character loss covers the whole text. Every option is checked
    and everything computed before the first file is written; `out_dir` must be new or empty."""
    model, tok = loaded.model, loaded.tokenizer
    temperatures = check_temperatures(temperatures)
    check_sampling(max_new_tokens, seed)
    out_dir = check_out_dir(out_dir)
    ids = encode(tok, text, check_unknown(unknown))
    text = tok.decode(ids.tolist())  # what the model sees, after unknown=skip or a replacement
    window = ids[: model.config.block_size]
    chars = [tok.decode([i]) for i in window.tolist()]  # the text of each position: a character or a BPE token

    figures: dict[str, tuple[Figure, str]] = {}
    layers = attention_maps(model, window)
    for i, w in enumerate(layers):
        figures[f"attention_layer{i}"] = (
            plot_attention(w, chars, f"layer {i}: attention of each head"),
            f"Attention of layer {i}, one panel per head and their mean. Row = the position predicting "
            "the next character, column = a position it looks at; rows sum to 1, the upper triangle "
            "(the future) is empty.",
        )
    figures["attention_mean"] = (
        plot_attention_mean(layers, chars),
        "Attention averaged over the heads of each layer, and over all layers. Mean entropy of "
        "the attention rows per layer (nats; lower = sharper, uniform over this window = "
        f"{float(torch.log(torch.arange(1, len(window) + 1.0)).mean()):.3f}): "
        + ", ".join(f"{v:.3f}" for v in attention_entropy(layers))
        + ".",
    )
    states = residual_stream(model, window)
    spread = ", ".join(f"{v:.4f}" for v in position_spread(states))
    figures["residual_norm"] = (
        plot_residual_norms(states, chars),
        "Norm of the residual stream after the embeddings and after each block. Its spread over "
        f"positions (0 = every position holds the same vector, see `position_spread`): {spread}.",
    )
    figures["embedding_pca"] = (
        # at most 1,000 labels: GPT-2's 50,257 would cover the plot
        plot_embedding_pca(model.transformer.wte.weight, [tok.decode([i]) for i in range(min(tok.vocab_size, 1000))]),
        "Character embeddings on their first two principal components.",
    )
    figures["logits"] = (
        plot_logits(next_token_logits(model, window), chars),
        "Histogram of the logits and the entropy of the next-character distribution per position.",
    )
    losses = token_losses(model, ids)
    figures["char_loss"] = (
        plot_char_loss(*per_character(tok, ids, losses)),
        f"Loss of predicting each character (mean {float(losses.mean()):.3f} nats); darker = more surprising.",
    )
    lines = [
        "# minigpt diagnostics",
        "",
        f"- checkpoint: `{loaded.path}`",
        f"- model: {loaded.model.config.n_layer} layers, {loaded.model.config.n_head} heads, "
        f"{loaded.model.config.n_embd} wide, block {loaded.model.config.block_size}",
        f"- text ({len(text)} characters; figures of attention, residual stream and logits use the first "
        f"{len(window)}):",
        "",
        "```",
        text,
        "```",
        "",
    ]
    for name, (_, caption) in figures.items():
        lines += [f"## {name}", "", caption, "", f"![{name}]({name}.png)", ""]
    lines += ["## samples", "", f"Prompt: the text above; {max_new_tokens} new characters, seed {seed}.", ""]
    for t in temperatures:
        sample = sample_text(model, tok, text, max_new_tokens, t, seed)
        lines += [f"### temperature {t}", "", "```", sample, "```", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (fig, _) in figures.items():
        fig.savefig(out_dir / f"{name}.png")
    index = out_dir / "index.md"
    index.write_text("\n".join(lines))
    return index


def run(cfg: DictConfig) -> Path:
    """What `python -m minigpt.diagnose` does: load the checkpoint, write the figures and index."""
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/best.ckpt")
    # everything that needs no checkpoint is checked before it is loaded; diagnose checks it again
    text = read_text(cfg)
    temperatures = check_temperatures(cfg.get("temperatures"))
    max_new_tokens, seed, unknown = cfg.get("max_new_tokens", 200), cfg.get("seed"), cfg.get("unknown", "error")
    check_sampling(max_new_tokens, seed)
    check_unknown(unknown)
    out_dir = check_out_dir(cfg.out_dir)
    loaded = load_model(ckpt, pick_device(cfg.get("device", "auto")))
    index = diagnose(loaded, text, out_dir, temperatures, max_new_tokens, seed, unknown)
    print(f"wrote {len(list(index.parent.glob('*.png')))} figures and {index}")
    return index


@hydra.main(config_path="../conf", config_name="diagnose", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
