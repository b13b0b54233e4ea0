"""Figures made from a run's TensorBoard logs (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


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
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
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
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
