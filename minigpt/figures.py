"""Figures of training runs and of what a model computes: loss curves, attention heatmaps,
residual-stream norms, embeddings, logits and per-character loss.

Each function returns a `matplotlib.figure.Figure` made without pyplot (nothing keeps it alive),
drawn from plain tensors; the training callbacks, diagnose and the notebooks share them.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.probes import entropy

VISIBLE = {"\n": "\\n", "\t": "\\t", " ": "·", "\r": "\\r"}


def show_char(c: str) -> str:
    """A visible label for a character or a token: newline, tab, space and other control
    characters (BPE tokens hold any byte) would vanish in a plot or break a TSV line."""
    return "".join(_visible(ch) for ch in c) or "''"


def _visible(ch: str) -> str:
    if ch in VISIBLE:
        return VISIBLE[ch]
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of the TensorBoard logs under `log_dir`: tag -> [(step, value)]."""
    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in series.items()}


def plot_loss_curve(log_dir: str | Path, out: str | Path, title: str = "") -> Path | None:
    """Training and validation loss against step, as a PNG; None when there is nothing to plot."""
    scalars = read_scalars(log_dir)
    if "train/loss" not in scalars and "val/loss" not in scalars:
        return None
    fig = Figure(figsize=(7, 4), dpi=120, layout="constrained")
    ax = fig.subplots()
    if "train/loss" in scalars:
        steps, values = zip(*scalars["train/loss"])
        ax.plot(steps, values, lw=0.8, alpha=0.7, label="train/loss")
    if "val/loss" in scalars:
        steps, values = zip(*scalars["val/loss"])
        ax.plot(steps, values, "o-", lw=1.5, ms=3, label="val/loss")
        best = min(values)
        ax.axhline(best, color="gray", ls=":", lw=0.8)
        ax.annotate(
            f"best val {best:.3f}",
            (steps[-1], best),
            textcoords="offset points",
            xytext=(-5, 5),
            ha="right",
            fontsize=8,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(out)
    fig.savefig(out)
    return out


def plot_attention(weights: torch.Tensor, chars: list[str], title: str, columns: int | None = None) -> Figure:
    """One heatmap per head of one layer (nh, T, T), and their mean as the last panel; in one
    row, or in a grid of `columns` panels per row (legible in a narrow TensorBoard card)."""
    panels = [*weights, weights.mean(0)]
    names = [f"head {h}" for h in range(len(weights))] + ["mean of heads"]
    return _heatmaps(panels, names, chars, title, columns)


def plot_attention_mean(layers: list[torch.Tensor], chars: list[str], columns: int | None = None) -> Figure:
    """Attention averaged over the heads of each layer and over all layers, side by side."""
    panels = [w.mean(0) for w in layers] + [torch.stack(layers).mean((0, 1))]
    names = [f"layer {i}" for i in range(len(layers))] + ["all layers"]
    return _heatmaps(panels, names, chars, "attention averaged over heads", columns)


def _heatmaps(
    panels: list[torch.Tensor], names: list[str], chars: list[str], title: str, columns: int | None = None
) -> Figure:
    T = panels[0].size(-1)
    size = 2.2 + T / 16
    cols = min(columns or len(panels), len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(size * cols, size * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    labels = [show_char(c) for c in chars]
    step = max(1, T // 32)  # at most ~32 tick labels per axis stay readable
    for i, (ax, panel, name) in enumerate(zip(axes, panels, names)):
        im = ax.imshow(panel.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(0, T, step), labels[::step], fontsize=6, family="monospace")
        # characters label the rows of each row's first panel only: text is most of the drawing time
        ax.set_yticks(range(0, T, step), labels[::step] if i % cols == 0 else [], fontsize=6, family="monospace")
        ax.set_xlabel("key (attended to)", fontsize=7)
        if i % cols == 0:
            ax.set_ylabel("query (predicting the next char)", fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
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
