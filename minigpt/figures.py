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
# the width (inches at 100 dpi) a figure of heatmaps fills: a documentation page's column shows it
# at full size, so its character labels stay legible
PAGE_WIDTH = 8.0


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
    """One heatmap per head of one layer (nh, T, T), and their mean as the last panel, in a grid of
    `columns` panels per row; by default as many as fit the width of a page (one per row for a
    64-character window), so that a page or a narrow TensorBoard card shows them at full size."""
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
    cols = min(columns or max(1, int(PAGE_WIDTH // size)), len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(size * cols, size * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    labels = [show_char(c) for c in chars]
    step = max(1, T // 32)  # at most ~32 tick labels per axis stay readable
    chars_size = 8 if T <= 32 else 6  # a 32-character panel has room for larger characters
    for i, (ax, panel, name) in enumerate(zip(axes, panels, names)):
        im = ax.imshow(panel.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(0, T, step), labels[::step], fontsize=chars_size, family="monospace")
        # characters label the rows of each row's first panel only: text is most of the drawing time
        ax.set_yticks(
            range(0, T, step), labels[::step] if i % cols == 0 else [], fontsize=chars_size, family="monospace"
        )
        ax.set_xlabel("key (attended to)", fontsize=7)
        if i % cols == 0:
            ax.set_ylabel("query (predicting the next char)", fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    # one column (TensorBoard's narrow cards): the colour scale below, so the panels keep the width
    where = "bottom" if cols == 1 else "right"
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="attention weight", location=where, aspect=30)
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


# --------------------------------------------------------------------------- images (minigpt/vlm.py)


def plot_captions(
    images: torch.Tensor, captions: list[str], truths: list[str], title: str = "", columns: int = 8
) -> Figure:
    """Grey images (K, H, W) in a grid, each titled with its generated caption: black when it is
    the true caption, red with the truth below when it is not."""
    cols = min(columns, len(images))
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(1.7 * cols, 1.9 * rows + 0.5), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, image, caption, truth in zip(axes, images, captions, truths):
        ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        right = caption == truth
        ax.set_title(caption if right else f"{caption}\n(true: {truth})", fontsize=7, color="black" if right else "C3")
    for ax in axes[len(images) :]:
        ax.set_axis_off()
    n_right = sum(c == t for c, t in zip(captions, truths))
    fig.suptitle(f"{title + ': ' if title else ''}{n_right} of {len(images)} captions right", fontsize=10)
    return fig


def plot_image_attention(
    images: torch.Tensor, weights: torch.Tensor, titles: list[str], rows: list[str], title: str
) -> Figure:
    """Attention painted over images: column k shows images[k] (K, H, W), row r its weights
    (R, K, N) over the N patches of a square grid, each patch's weight as the colour of its
    square (transparent where nothing is attended). Each panel says how much of the query's
    attention falls on that image; the rest goes to text positions."""
    R, K, N = weights.shape
    grid = round(N**0.5)
    H, W = images.shape[-2:]
    vmax = max(float(weights.max()), 1e-6)
    cmap = matplotlib.colormaps["inferno"]
    fig = Figure(figsize=(1.6 * K + 1.2, 1.7 * R + 0.7), dpi=100, layout="constrained")
    axes = fig.subplots(R, K, squeeze=False)
    for (r, k), ax in np.ndenumerate(axes):
        heat = (weights[r, k].reshape(grid, grid) / vmax).numpy()  # the patches in their places
        rgba = cmap(heat)
        rgba[..., 3] = 0.85 * heat  # opaque where attended: the digit shows through elsewhere
        ax.imshow(images[k].numpy(), cmap="gray", vmin=0.0, vmax=1.0, extent=(0, W, H, 0), interpolation="nearest")
        ax.imshow(rgba, extent=(0, W, H, 0), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{float(weights[r, k].sum()):.0%} on this image", fontsize=7)
        if r == 0:
            ax.set_title(titles[k], fontsize=8)
        if k == 0:
            ax.set_ylabel(rows[r], fontsize=8)
    mappable = ScalarMappable(norm=Normalize(0, vmax), cmap=cmap)
    fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight of a patch")
    fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- what the heads do


def _annotated_heatmap(ax, values: torch.Tensor, title: str, cmap: str, vmin: float, vmax: float, digits: int = 2):
    """A (n_layer, nh) heatmap with each cell's value written in it (NaN cells grey, '–')."""
    data = np.ma.masked_invalid(values.numpy())
    colours = matplotlib.colormaps[cmap].with_extremes(bad="0.85")
    im = ax.imshow(data, cmap=colours, vmin=vmin, vmax=vmax, aspect="auto")
    for (layer, head), v in np.ndenumerate(values.numpy()):
        text = "–" if np.isnan(v) else f"{v:.{digits}f}"
        shade = 0.0 if np.isnan(v) else (v - vmin) / max(vmax - vmin, 1e-12)
        ax.text(head, layer, text, ha="center", va="center", fontsize=8, color="white" if shade > 0.6 else "black")
    ax.set_xticks(range(values.size(1)), [f"H{h}" for h in range(values.size(1))])
    ax.set_yticks(range(values.size(0)), [f"L{i}" for i in range(values.size(0))])
    ax.set_title(title, fontsize=10)
    return im


# (title, colour map, fixed maximum or None for the data's) of each head score's panel
SCORE_PANELS = {
    "previous": ("previous token", "Blues", 1.0),
    "current": ("current token", "Blues", 1.0),
    "first": ("first position (sink)", "Blues", 1.0),
    "newline": ("most recent newline", "Blues", 1.0),
    "space": ("most recent space (word start)", "Blues", 1.0),
    "distance": ("mean distance attended", "Greens", None),
    "induction": ("induction (repeated random text)", "Purples", 1.0),
}


def plot_head_scores(scores: dict[str, torch.Tensor], title: str = "head scores") -> Figure:
    """One annotated heatmap (layers x heads) per head score of `minigpt.probes.head_scores`."""
    n = len(scores)
    cols = min(4, math.ceil(n / 2)) if n > 3 else n
    rows = math.ceil(n / cols)
    n_layer, nh = next(iter(scores.values())).shape
    fig = Figure(figsize=(cols * (1.2 + 0.7 * nh), rows * (1.0 + 0.5 * n_layer) + 0.5), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, (name, values) in zip(axes, scores.items()):
        label, cmap, vmax = SCORE_PANELS.get(name, (name, "Blues", None))
        top = vmax if vmax is not None else max(float(values.nan_to_num(0).max()), 1e-6)
        _annotated_heatmap(ax, values, label, cmap, 0.0, top, 2 if vmax else 1)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


def plot_ablation(
    heads_zero: torch.Tensor, heads_mean: torch.Tensor, layers: dict[str, torch.Tensor], base_loss: float
) -> Figure:
    """The validation-loss increase (nats) when each head is removed, zero- and mean-ablated
    (two layers x heads heatmaps), and when each layer's whole attention or MLP is (bars)."""
    nh = heads_zero.size(1)
    fig = Figure(figsize=(4 + 1.4 * nh, 1.5 + 0.55 * heads_zero.size(0)), dpi=100, layout="constrained")
    left, middle, right = fig.subplots(1, 3, width_ratios=[nh, nh, 1.5 * nh])
    top = max(float(heads_zero.max()), float(heads_mean.max()), 1e-6)
    _annotated_heatmap(left, heads_zero, "head set to zero", "Reds", 0.0, top, 3)
    im = _annotated_heatmap(middle, heads_mean, "head set to its mean", "Reds", 0.0, top, 3)
    fig.colorbar(im, ax=[left, middle], shrink=0.8, label="nats")
    n_layer = len(next(iter(layers.values())))
    width = 0.8 / len(layers)
    for i, (name, values) in enumerate(layers.items()):
        right.bar(np.arange(n_layer) + (i - (len(layers) - 1) / 2) * width, values.numpy(), width, label=name)
    right.set_xticks(range(n_layer), [f"L{i}" for i in range(n_layer)])
    right.axhline(0, color="gray", lw=0.8)
    right.set_ylabel("loss increase (nats)")
    right.set_title("whole layer removed", fontsize=10)
    right.legend(fontsize=7)
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(f"ablation: validation loss {base_loss:.4f} nats with every part in place")
    return fig


def plot_lens_loss(losses: list[float], points: list[str], references: dict[str, float] | None = None) -> Figure:
    """The logit lens's validation loss after the embeddings and after each block, with
    horizontal reference lines (e.g. the unigram and bigram losses)."""
    fig = Figure(figsize=(6, 3.8), dpi=110, layout="constrained")
    ax = fig.subplots()
    ax.plot(range(len(losses)), losses, "o-", lw=1.5)
    for x, v in enumerate(losses):
        ax.annotate(f"{v:.3f}", (x, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=f"C{i + 1}", ls=":", lw=1, label=f"{name} {value:.3f}")
    ax.set_xticks(range(len(points)), points)
    ax.set_xlabel("read out after")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("logit lens: the residual stream read through ln_f and lm_head")
    ax.grid(alpha=0.3)
    if references:
        ax.legend(fontsize=8)
    return fig


def plot_lens_predictions(
    chars: list[str], top: list[list[str]], top_p: torch.Tensor, hit: torch.Tensor, points: list[str]
) -> Figure:
    """The logit lens of a text: for each position (column) and read-out point (row), the top
    prediction for the next character, shaded by its probability, framed when it is right."""
    n_points, T = top_p.shape
    fig = Figure(figsize=(1.2 + 0.22 * T, 1.0 + 0.32 * (n_points + 1)), dpi=100, layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(top_p.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    for (row, col), p in np.ndenumerate(top_p.numpy()):
        colour = "white" if p > 0.6 else "black"
        ax.text(
            col, row, show_char(top[row][col]), ha="center", va="center", fontsize=7, family="monospace", color=colour
        )
        if hit[row, col]:
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="C3", lw=1))
    ax.set_yticks(range(n_points), points, fontsize=8)
    ax.set_xticks(range(T), [show_char(c) for c in chars], fontsize=7, family="monospace")
    ax.set_xlabel("input character (each column predicts the one after it; red frame: the top prediction is right)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="probability of the top prediction")
    ax.set_title("logit lens: top next-character prediction after each block")
    return fig


def plot_mlp_activations(activations: list[tuple[torch.Tensor, torch.Tensor]], dead: list[float]) -> Figure:
    """Per layer, histograms of the MLP units' input to the non-linearity and of its output, with
    the fraction of dead units (never a positive input on these positions)."""
    n = len(activations)
    fig = Figure(figsize=(10, 1.2 + 2.0 * n), dpi=100, layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    for i, ((pre, post), d) in enumerate(zip(activations, dead)):
        for ax, values, what in ((axes[i, 0], pre, "input to"), (axes[i, 1], post, "output of")):
            ax.hist(values.flatten().numpy(), bins=100, color="C0" if what == "input to" else "C1", log=True)
            ax.set_title(
                f"layer {i}: {what} the non-linearity" + (f" ({d:.1%} of units dead)" if ax is axes[i, 0] else ""),
                fontsize=9,
            )
            ax.grid(alpha=0.3)
        axes[i, 0].axvline(0, color="gray", lw=0.8)
    axes[-1, 0].set_xlabel("pre-activation")
    axes[-1, 1].set_xlabel("activation")
    return fig


def plot_head_formation(
    scalars: dict[str, list[tuple[int, float]]], scores: tuple[str, ...] = ("previous", "induction")
) -> Figure:
    """From a run's TensorBoard scalars (`read_scalars`): each head's score against the training
    step, one panel per score (`view/heads/<score>/*`, written by the HeadScores callback), and the
    validation loss with the logit-lens losses, to see when each kind of head forms."""
    fig = Figure(figsize=(5.0 * (len(scores) + 1), 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(scores) + 1)
    for ax, score in zip(axes, scores):
        for tag in sorted(t for t in scalars if t.startswith(f"view/heads/{score}/")):
            head = tag.rsplit("/", 1)[1]  # L<layer>H<head>: colour by layer, line style by head
            layer, index = (int(n) for n in head[1:].split("H"))
            steps, values = zip(*scalars[tag])
            style = ("-", "--", ":", "-.")[index % 4]
            ax.plot(steps, values, marker="o", ls=style, ms=2, lw=1.2, color=f"C{layer % 10}", label=head)
        ax.set_title(f"{SCORE_PANELS.get(score, (score,))[0]} score of each head", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=4)
    loss_ax = axes[-1]
    lens = sorted((t for t in scalars if t.startswith("view/lens/")), key=lambda t: (t != "view/lens/embed", t))
    for tag in lens:
        steps, values = zip(*scalars[tag])
        loss_ax.plot(steps, values, lw=1, label=tag.removeprefix("view/"))
    if "val/loss" in scalars:
        steps, values = zip(*scalars["val/loss"])
        loss_ax.plot(steps, values, "ko", ms=3, label="val/loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss (nats/char)")
    loss_ax.set_title("validation loss and logit-lens loss", fontsize=10)
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=7)
    return fig
