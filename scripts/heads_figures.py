"""The figures and numbers of docs/heads.md, from a training run and `interpret`'s folder for it.

    python train.py hydra.run.dir=outputs/heads_default
    python -m minigpt interpret ckpt=outputs/heads_default/checkpoints/best.ckpt out_dir=outputs/heads_doc
    python scripts/heads_figures.py outputs/heads_default outputs/heads_doc

writes docs/images/heads_*.png and prints the tables and numbers the page quotes: the head table,
the ranked ablations, the logit-lens losses beside unigram and bigram references (counted on the
training split, scored on the same validation windows), and, from the run's TensorBoard scalars,
how each head's previous-token and induction scores moved during training.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import time
from pathlib import Path

import torch

from minigpt.analysis.metrics import evaluation_ids
from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import CharDataModule
from minigpt.figures import plot_head_formation, plot_lens_loss, read_scalars
from minigpt.probes import batch_attention, head_scores, lens_losses, mark_ids, text_windows

COPIED = ("head_scores", "ablation", "lens_predictions", "mlp_activations")


def references(ckpt: Path, windows: int) -> dict[str, float]:
    """Unigram and bigram (add-one) cross-entropy, counted on the checkpoint's training split and
    scored on the first `windows` validation windows, as `interpret` measured them."""
    loaded = load_model(ckpt)
    data = loaded.meta.get("run_config")["data"]
    dm = CharDataModule(
        block_size=loaded.model.config.block_size,
        val_fraction=data["val_fraction"],
        tokenizer=loaded.tokenizer,
        path=data.get("path"),
        name=data.get("name"),
        cache_dir=data.get("cache_dir", "data"),
    )
    dm.prepare_data()
    dm.setup()
    V = loaded.tokenizer.vocab_size
    train = dm.train_data.long()
    unigram = torch.bincount(train, minlength=V).double() + 1
    bigram = torch.ones(V, V, dtype=torch.float64)  # add-one
    bigram.index_put_((train[:-1], train[1:]), torch.ones(1, dtype=torch.float64), accumulate=True)
    w = text_windows(dm.val_data, loaded.model.config.block_size, windows)
    inputs, targets = w[:, :-1].flatten(), w[:, 1:].flatten()
    uni = -(unigram / unigram.sum()).log()[targets].mean()
    bi = -(bigram / bigram.sum(1, keepdim=True)).log()[inputs, targets].mean()
    return {"unigram": float(uni), "bigram": float(bi)}


def peaks(scalars: dict, score: str) -> str:
    """Each head's highest `score` over the run and the step it reached it, highest first."""
    tags = [t for t in scalars if t.startswith(f"view/heads/{score}/")]
    best = sorted(((max(scalars[t], key=lambda p: p[1]), t.rsplit("/", 1)[1]) for t in tags), key=lambda b: -b[0][1])
    return f"{score} peaks: " + ", ".join(f"{head} {v:.3f} (step {step})" for (step, v), head in best)


def lens_at(scalars: dict, steps: tuple[int, ...] = (25, 250, 500, 1000, 2000, 3000)) -> list[str]:
    """The logit-lens losses at a few steps."""
    lines = []
    for tag in sorted(t for t in scalars if t.startswith("view/lens/")):
        values = dict(scalars[tag])
        lines.append(f"{tag}: " + ", ".join(f"{s}: {values[s]:.3f}" for s in steps if s in values))
    return lines


def head_table(tsv: Path) -> list[str]:
    """interpret's head_scores.tsv as Markdown lines, numbers to 2 decimals (losses to 3)."""
    with tsv.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    columns = list(rows[0])

    def cell(key: str, value: str) -> str:
        if key == "head" or value == "":
            return value or "–"
        return f"{float(value):.{3 if key.endswith('increase') else 1 if key == 'distance' else 2}f}"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(k, r[k]) for k in columns) + " |" for r in rows]


def local_share(ckpt: Path, windows: int, reach: int = 3) -> list[str]:
    """Per head: the share of its attention within `reach` positions back (distance 0..reach),
    on the same validation windows as interpret's, and the induction score of uniform attention."""
    loaded = load_model(ckpt)
    T = loaded.model.config.block_size
    val, _ = evaluation_ids(loaded, {})
    w = text_windows(val, T, windows)[:, :-1]
    t = torch.arange(T)
    near = ((t[:, None] - t) <= reach).float()  # (T, T): keys at most `reach` back (the future is 0 anyway)
    shares = []
    for layer, maps in enumerate(zip(*(batch_attention(loaded.model, c) for c in w.split(32)))):
        share = (torch.cat(maps) * near).sum(-1).mean((0, 2))  # (nh,)
        shares += [f"L{layer}H{h} {float(v):.2f}" for h, v in enumerate(share)]
    P = T // 2
    chance = float((1 / (torch.arange(P, 2 * P) + 1.0)).mean())
    return [f"share of attention within {reach} positions back: " + ", ".join(shares), f"induction chance {chance:.4f}"]


def callback_seconds(ckpt: Path, repeats: int = 5) -> float:
    """Seconds the HeadScores callback's measurement takes on this checkpoint, as configured by
    default (8 validation windows, 8 random sequences): the median of `repeats` runs."""
    loaded = load_model(ckpt)
    val, _ = evaluation_ids(loaded, {})
    windows = text_windows(val, loaded.model.config.block_size, 8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        head_scores(loaded.model, windows[:, :-1], mark_ids(loaded.tokenizer), 8)
        lens_losses(loaded.model, windows)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def lens_hits(tsv: Path) -> list[str]:
    """From interpret's lens_predictions.tsv: per read-out point, how often the top prediction is
    the character that comes next, and how often it is the input character itself."""
    with tsv.open() as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["next"] != ""]
    lines = []
    for point in dict.fromkeys(r["read_after"] for r in rows):
        mine = [r for r in rows if r["read_after"] == point]
        right = sum(r["top"] == r["next"] for r in mine)
        echo = sum(r["top"] == r["input"] for r in mine)
        lines.append(f"{point}: top prediction right at {right}/{len(mine)}, the input character itself at {echo}")
    return lines


def formation(scalars: dict, score: str, threshold: float) -> list[str]:
    """Per head: its score at the first and last validation, and the first step it reached
    `threshold` (Markdown table lines)."""
    lines = [f"| head | {score} at first validation | at the end | first step >= {threshold} |", "|---|---|---|---|"]
    for tag in sorted(t for t in scalars if t.startswith(f"view/heads/{score}/")):
        points = scalars[tag]
        reached = next((step for step, v in points if v >= threshold), None)
        lines.append(
            f"| {tag.rsplit('/', 1)[1]} | {points[0][1]:.3f} (step {points[0][0]}) | {points[-1][1]:.3f} | "
            f"{reached if reached is not None else 'never'} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the training run's folder (with tensorboard/ and checkpoints/)")
    parser.add_argument("interpret", type=Path, help="the folder python -m minigpt interpret wrote")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="where the PNGs go")
    parser.add_argument("--dense", type=Path, default=None, help="the same run validated more often (more points)")
    args = parser.parse_args()
    results = json.loads((args.interpret / "results.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copyfile(args.interpret / f"{name}.png", args.out / f"heads_{name}.png")

    refs = references(Path(results["checkpoint"]), results["windows"])
    lens = results["lens_loss"]
    plot_lens_loss(list(lens.values()), list(lens), refs).savefig(args.out / "heads_lens_loss.png")
    scalars = read_scalars(args.run / "tensorboard")
    plot_head_formation(scalars).savefig(args.out / "heads_formation.png")

    print(f"measured on {results['windows']} windows of the {results['source']}")
    print("logit lens:", ", ".join(f"{k} {v:.4f}" for k, v in lens.items()))
    print("references:", ", ".join(f"{k} {v:.4f}" for k, v in refs.items()))
    print("\n".join(lens_hits(args.interpret / "lens_predictions.tsv")))
    print("\n".join(local_share(Path(results["checkpoint"]), results["windows"])))
    print("\n" + "\n".join(head_table(args.interpret / "head_scores.tsv")))
    for score, threshold in (("previous", 0.2), ("induction", 0.1), ("newline", 0.3)):
        print("\n" + "\n".join(formation(scalars, score, threshold)))
    profile = args.run / "fit-profile.txt"
    if profile.is_file():  # the run had +trainer.profiler=... (SimpleProfiler, written into the run folder)
        line = next((ln for ln in profile.read_text().splitlines() if "HeadScores.on_validation_end" in ln), "")
        print("profiler:", " ".join(line.replace("|", " ").split()))
    summary = json.loads((args.run / "summary.json").read_text())
    print(f"run: {summary['steps']} steps in {summary['train_seconds']:.0f} s")
    print(f"HeadScores measurement now: {callback_seconds(Path(results['checkpoint'])):.3f} s (median of 5)")
    if args.dense is not None:
        dense = read_scalars(args.dense / "tensorboard")
        plot_head_formation(dense, ("newline", "space", "induction")).savefig(args.out / "heads_formation_dense.png")
        for score, threshold in (("newline", 0.3), ("space", 0.3), ("previous", 0.2), ("induction", 0.1)):
            print(f"\ndense run, {score}:\n" + "\n".join(formation(dense, score, threshold)))
            print(peaks(dense, score))
        print("\n".join(lens_at(dense)))
    val = scalars.get("val/loss", [])
    print("\nval/loss:", ", ".join(f"{s}: {v:.4f}" for s, v in val))
    print("MLP dead fraction per layer:", [round(d, 4) for d in results["mlp_dead_fraction"]])
    best = [r for r in results["ablation"] if not math.isnan(r["mean_increase"])][:8]
    shown = (f"{r['part']} +{r['mean_increase']:.3f}/+{r['zero_increase']:.3f}" for r in best)
    print("\ntop ablations (mean/zero):", "; ".join(shown))
    print(f"wrote {len(list(args.out.glob('heads_*.png')))} heads_*.png figures into {args.out}")


if __name__ == "__main__":
    main()
