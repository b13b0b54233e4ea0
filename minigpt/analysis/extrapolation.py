"""Train short, test long (Press et al., 2022): score checkpoints at multiples of their training
context and tabulate and draw the loss by position.

Each checkpoint is scored on the validation split of its own corpus in consecutive
non-overlapping windows of 1x, 2x, 4x ... block_size tokens (`loss_by_position`). Learned
positions have one table row per training position and cannot be scored past block_size: their
cells say "cannot" and the reason is the model's own one-line refusal (`GPT.check_length`).
`scripts/extrapolate.py` runs this over a sweep of `experiment=extrapolate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from minigpt.analysis.metrics import evaluation_ids, loss_by_position
from minigpt.checkpoint.load import load_model
from minigpt.errors import ConfigError, MinigptError

FACTORS = (1, 2, 4)


@dataclass
class Extrapolation:
    """One checkpoint's losses at each multiple of its training context (None: cannot be scored)."""

    name: str  # the position encoding
    block_size: int
    losses: dict[int, float | None] = field(default_factory=dict)  # factor -> mean loss in nats
    curves: dict[int, list[float]] = field(default_factory=dict)  # factor -> loss at each position
    reason: str | None = None  # why some factor cannot be scored


def checkpoints_of(paths: list[str | Path]) -> list[Path]:
    """The checkpoints named by `paths`: a .ckpt file itself, or every job folder of a sweep (or a
    single run folder) holding checkpoints/last.ckpt, in job order; one line when there is none."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
            continue
        runs = [path] if (path / "checkpoints").is_dir() else sorted(p for p in path.iterdir() if p.is_dir())
        ckpts = [run / "checkpoints" / "last.ckpt" for run in runs if (run / "checkpoints" / "last.ckpt").is_file()]
        if not ckpts:
            raise ConfigError(
                f"{path} holds no checkpoints/last.ckpt (nor do its folders); pass a sweep of "
                "python train.py experiment=extrapolate, a run folder or a .ckpt file"
            )
        found += sorted(ckpts, key=lambda p: int(p.parents[1].name) if p.parents[1].name.isdigit() else 0)
    return found


def measure(ckpt: str | Path, factors: tuple[int, ...] = FACTORS, batch_size: int = 64) -> Extrapolation:
    """Loss and loss by position of `ckpt` at each of `factors` x its block_size, on the CPU."""
    loaded = load_model(ckpt, "cpu")
    config = loaded.model.config
    ids, _ = evaluation_ids(loaded, {})
    result = Extrapolation(getattr(config, "pos_encoding", "lstm"), config.block_size)
    for factor in factors:
        try:
            curve = loss_by_position(loaded.model, ids, factor * config.block_size, batch_size)
        except MinigptError as e:
            result.losses[factor] = None
            result.reason = result.reason or str(e)  # the first refusal: the shortest context refused
            continue
        result.curves[factor] = curve.tolist()
        result.losses[factor] = float(curve.mean())
    return result


def markdown_table(results: list[Extrapolation], factors: tuple[int, ...] = FACTORS) -> str:
    """Mean loss (nats) per encoding and context, "cannot" where the model refuses, and the reasons."""
    block = results[0].block_size if results else 0
    head = ["encoding", *(f"{f}x ({f * block})" for f in factors)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = ["cannot" if r.losses.get(f) is None else f"{r.losses[f]:.3f}" for f in factors]
        lines.append("| " + " | ".join([r.name, *cells]) + " |")
    reasons = [f"{r.name}: {r.reason}" for r in results if r.reason]
    return "\n".join(lines + ([""] + reasons if reasons else []))


def plot_loss_by_position(results: list[Extrapolation]) -> Figure:
    """One curve per encoding at the longest context it was scored at, against the position in the
    window (how many tokens each prediction reads), the training length marked."""
    fig = Figure(figsize=(8, 4.5), dpi=120, layout="constrained")
    ax = fig.subplots()
    block = results[0].block_size if results else 0
    for i, r in enumerate(results):
        if not r.curves:
            continue
        factor = max(r.curves)
        curve = r.curves[factor]
        label = f"{r.name} ({factor}x" + (" only: cannot go further)" if r.reason else ")")
        ax.plot(range(1, len(curve) + 1), curve, color=f"C{i}", label=label, linewidth=1.2)
    if block:
        ax.axvline(block, color="0.4", linestyle=":", label=f"training length ({block})")
    ymax = [max(c[len(c) // 8 :]) for r in results for c in r.curves.values() if c]
    if ymax and all(math.isfinite(y) for y in ymax):
        ax.set_ylim(top=max(ymax) * 1.05)  # the first positions, read with almost no context, are off the scale
    ax.set_xlabel("position in the window (tokens the prediction reads)")
    ax.set_ylabel("mean loss (nats)")
    ax.set_title("Train short, test long: loss by position past the training context", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
