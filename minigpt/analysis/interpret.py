"""What each attention head of a checkpoint does, in numbers and in one interactive page.

`python -m minigpt interpret ckpt=... text="..."` writes into a new or empty folder:
- head scores (`minigpt.probes.head_scores`) on validation text, as a table and a heatmap;
- head and layer ablation (`minigpt.analysis.ablation`): the loss increase when each head, each
  layer's attention and each MLP is removed, zero- and mean-ablated, ranked;
- the logit lens: the validation loss read out after the embeddings and after each block, and
  the top prediction at each position of the text and each read-out point;
- the MLPs' activations: histograms and the fraction of dead units;
- the induction circuit (`minigpt.analysis.circuit`): the induction head, the previous-token head
  it reads from, their K-composition and what removing them costs on validation text written twice;
- explorer.html (`minigpt.analysis.explorer`): the text's attention, head by head, to hover over;
- index.md listing all of it, and results.json with every number.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, ListConfig, OmegaConf

from minigpt.analysis.ablation import Part, ablation_table, every_part, head_name, parse_head, together
from minigpt.analysis.circuit import circuit_markdown, circuit_summary, induction_circuit
from minigpt.analysis.diagnose import encode, read_text
from minigpt.analysis.explorer import attention_band, explorer_page, head_records
from minigpt.analysis.metrics import evaluation_ids
from minigpt.checkpoint.format import LoadedModel
from minigpt.checkpoint.load import load_model
from minigpt.cli import require
from minigpt.configs import check_composed
from minigpt.errors import DataError, MinigptError
from minigpt.figures import (
    plot_ablation,
    plot_head_scores,
    plot_lens_loss,
    plot_lens_predictions,
    plot_mlp_activations,
    show_char,
)
from minigpt.inference.generation import pick_device
from minigpt.io import check_out_dir, json_safe, markdown_code, printable
from minigpt.model import GPT
from minigpt.options import check_unknown
from minigpt.probes import (
    HEAD_SCORES,
    dead_fraction,
    head_scores,
    lens_losses,
    lens_points,
    lens_predictions,
    mark_ids,
    mlp_activations,
    repeated_windows,
    text_windows,
)

log = logging.getLogger("minigpt")
LENS_FIGURE_CHARS = 64  # columns of lens_predictions.png; the table covers the whole text
MLP_WINDOWS = 32  # validation windows whose MLP activations are histogrammed


@dataclass
class Options:
    """The options of `interpret`, checked before the checkpoint is read."""

    max_chars: int = 256
    windows: int | None = 256
    n_random: int = 16
    batch_size: int = 64
    unknown: str = "error"
    ablate: list[str] = field(default_factory=list)


def check_options(cfg: DictConfig) -> Options:
    """Every option that needs no checkpoint, as `Options`; one line for the first bad one."""
    check_composed(cfg, "interpret")  # types, choices and ranges, as InterpretOptions declares them
    ablate = cfg.get("ablate") or []
    if isinstance(ablate, ListConfig):
        ablate = OmegaConf.to_container(ablate, resolve=True)
    ablate = [str(h) for h in ablate] if isinstance(ablate, (list, tuple)) else [str(ablate)]
    return Options(
        max_chars=cfg.get("max_chars", 256),
        windows=cfg.get("windows", 256),
        n_random=cfg.get("n_random", 16),
        batch_size=cfg.get("batch_size", 64),
        unknown=check_unknown(cfg.get("unknown", "error")),
        ablate=ablate,
    )


def run(cfg: DictConfig) -> Path:
    """What `python -m minigpt interpret` does: check everything, load, measure, write."""
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/best.ckpt")
    text = read_text(cfg)
    options = check_options(cfg)
    for head in options.ablate:  # the syntax now; whether the head exists once the model is read
        head_name(head)
    out_dir = check_out_dir(cfg.out_dir)
    loaded = load_model(ckpt, pick_device(cfg.get("device", "auto")))
    if not isinstance(loaded.model, GPT):
        kind = type(loaded.model).__name__
        raise MinigptError(f"checkpoint {ckpt} holds a {kind}, which has no attention heads to explain; pass a GPT's")
    c = loaded.model.config
    heads = [parse_head(h, c.n_layer, c.n_head) for h in options.ablate]
    ids = encode(loaded.tokenizer, text, options.unknown)[: options.max_chars]
    val, source = evaluation_ids(loaded, cfg.get("data") or {}, options.unknown)
    windows = text_windows(val, c.block_size, options.windows)
    if windows.size(0) == 0:
        raise DataError(
            f"the {source} has fewer than block_size + 1 = {c.block_size + 1} tokens; pass a longer data.path"
        )
    index, found = interpret(loaded, ids, windows, source, out_dir, options, heads)
    print(circuit_summary(found.circuit))
    print(f"wrote {printable(index, None)} and {printable(index.parent / 'explorer.html', None)}")
    return index


@dataclass
class Findings:
    """Everything `interpret` measures, as plain tensors, lists and dicts."""

    scores: dict[str, torch.Tensor]
    ablation: list[dict]
    together: dict[str, float] | None
    lens: list[float]
    lens_top: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    mlp: list[tuple[torch.Tensor, torch.Tensor]]
    dead: list[float]
    band: torch.Tensor
    circuit: dict | None = None


def measure(loaded: LoadedModel, ids: torch.Tensor, windows: torch.Tensor, options: Options, heads: list[Part]):
    """Every measurement of `interpret` on the validation `windows` (B, T + 1) and the text `ids`."""
    model = loaded.model
    c = model.config
    bs = options.batch_size
    mlp = mlp_activations(model, windows[:MLP_WINDOWS, :-1])
    scores = head_scores(model, windows[:, :-1], mark_ids(loaded.tokenizer), options.n_random, bs)
    return Findings(
        scores=scores,
        ablation=ablation_table(model, windows, every_part(c.n_layer, c.n_head), bs),
        together=together(model, windows, heads, bs) if heads else None,
        lens=lens_losses(model, windows, bs),
        lens_top=lens_predictions(model, ids, bs),
        mlp=mlp,
        dead=[dead_fraction(pre) for pre, _ in mlp],
        band=attention_band(model, ids, bs),
        circuit=induction_circuit(model, scores, repeated_windows(windows[:, :-1], c.block_size // 2)),
    )


def interpret(
    loaded: LoadedModel,
    ids: torch.Tensor,
    windows: torch.Tensor,
    source: str,
    out_dir: Path,
    options: Options,
    heads: list[Part],
) -> tuple[Path, Findings]:
    """Measure everything, then write the tables, figures, explorer.html and index.md into
    `out_dir` (checked new or empty before); return the index's path and what was measured."""
    found = measure(loaded, ids, windows, options, heads)
    chars = [loaded.tokenizer.decode([i]) for i in ids.tolist()]
    figures = make_figures(loaded, found, ids)
    c = loaded.model.config
    meta = (
        f"{loaded.path.name}: {c.n_layer} layers x {c.n_head} heads, {c.n_embd} wide, context {c.block_size}; "
        f"{len(chars)} tokens of text; scores and ablations on {windows.size(0)} windows of the {source}"
    )
    page = explorer_page(chars, found.band, head_records(found.scores, found.ablation), meta, start=len(chars) // 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(out_dir / f"{name}.png")
    (out_dir / "explorer.html").write_text(page, encoding="utf-8")
    write_tables(out_dir, loaded, found, ids, {"windows": windows.size(0), "source": source})
    index = out_dir / "index.md"
    index.write_text(index_text(loaded, found, heads, meta), encoding="utf-8")
    return index, found


def make_figures(loaded: LoadedModel, found: Findings, ids: torch.Tensor) -> dict[str, Figure]:
    """The PNGs of `interpret`, by file name."""
    c = loaded.model.config
    chars = [loaded.tokenizer.decode([i]) for i in ids.tolist()]
    heads = [r for r in found.ablation if r["kind"] == "head"]
    grid = {mode: torch.zeros(c.n_layer, c.n_head) for mode in ("zero", "mean")}
    for r in heads:
        for mode in grid:
            grid[mode][r["layer"], r["head"]] = r[f"{mode}_increase"]
    layers = {}
    for kind in ("attn", "mlp"):
        for mode in ("zero", "mean"):
            rows = sorted((r for r in found.ablation if r["kind"] == kind), key=lambda r: r["layer"])
            layers[f"{kind}, {mode}"] = torch.tensor([r[f"{mode}_increase"] for r in rows])
    points = lens_points(c.n_layer)
    top_id, top_p, actual = found.lens_top
    n = min(LENS_FIGURE_CHARS, len(chars))
    top = [[loaded.tokenizer.decode([i]) for i in row[:n]] for row in top_id.tolist()]
    hit = top_id[:, : n - 1] == ids[1:n]  # the top prediction is the token that comes next
    return {
        "head_scores": plot_head_scores(found.scores),
        "ablation": plot_ablation(grid["zero"], grid["mean"], layers, found.ablation[0]["base_loss"]),
        "lens_loss": plot_lens_loss(found.lens, points),
        "lens_predictions": plot_lens_predictions(chars[:n], top, top_p[:, :n], _pad(hit, n), points),
        "mlp_activations": plot_mlp_activations(found.mlp, found.dead),
    }


def _pad(hit: torch.Tensor, n: int) -> torch.Tensor:
    """`hit` (rows, n - 1) with a last column of False (the last position has no next token)."""
    return torch.cat([hit, hit.new_zeros(hit.size(0), n - hit.size(1))], dim=1)


# --------------------------------------------------------------------------- writing


def head_rows(found: Findings) -> list[dict]:
    """One row per head: its scores and what removing it costs."""
    records = head_records(found.scores, found.ablation)
    return [{"head": name, **record} for name, record in records.items()]


def write_tsv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def lens_rows(loaded: LoadedModel, found: Findings, ids: torch.Tensor) -> list[dict]:
    """One row per position and read-out point: the top prediction and its probability, and the
    probability given to the token that really comes next."""
    top_id, top_p, actual = found.lens_top
    decode = lambda i: show_char(loaded.tokenizer.decode([i]))  # noqa: E731
    points = lens_points(loaded.model.config.n_layer)
    tokens = ids.tolist()
    return [
        {
            "position": t,
            "input": decode(tokens[t]),
            "next": decode(tokens[t + 1]) if t + 1 < len(tokens) else "",
            "read_after": point,
            "top": decode(top_id[i, t].item()),
            "p_top": round(float(top_p[i, t]), 4),
            "p_next": "" if t + 1 >= len(tokens) else round(float(actual[i, t]), 4),
        }
        for t in range(len(tokens))
        for i, point in enumerate(points)
    ]


def mlp_rows(found: Findings) -> list[dict]:
    """Per layer: the fraction of dead units and the spread of the MLP's pre-activations."""
    return [
        {
            "layer": i,
            "dead_fraction": round(d, 4),
            "pre_mean": round(float(pre.mean()), 4),
            "pre_std": round(float(pre.std()), 4),
            "positive_fraction": round(float((pre > 0).float().mean()), 4),
        }
        for i, ((pre, _), d) in enumerate(zip(found.mlp, found.dead))
    ]


def write_tables(out_dir: Path, loaded: LoadedModel, found: Findings, ids: torch.Tensor, data: dict) -> None:
    """head_scores.tsv, ablation.tsv, lens_loss.tsv, lens_predictions.tsv, mlp.tsv, and results.json
    (with `data`: what the measurements ran on)."""
    points = lens_points(loaded.model.config.n_layer)
    write_tsv(out_dir / "head_scores.tsv", head_rows(found))
    write_tsv(out_dir / "ablation.tsv", found.ablation)
    write_tsv(out_dir / "lens_loss.tsv", [{"read_after": p, "loss": v} for p, v in zip(points, found.lens)])
    write_tsv(out_dir / "lens_predictions.tsv", lens_rows(loaded, found, ids))
    write_tsv(out_dir / "mlp.tsv", mlp_rows(found))
    results = {
        "checkpoint": str(loaded.path),
        **data,
        "head_scores": {name: v.tolist() for name, v in found.scores.items()},
        "ablation": found.ablation,
        "ablate_together": found.together,
        "induction_circuit": found.circuit,
        "lens_loss": dict(zip(points, found.lens)),
        "mlp_dead_fraction": found.dead,
    }
    (out_dir / "results.json").write_text(json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n")


def markdown(rows: list[dict], columns: list[str], digits: dict[str, int] | None = None) -> list[str]:
    """`rows` as the lines of a Markdown table (numbers rounded to `digits`, 3 by default)."""

    def cell(key: str, value) -> str:
        if isinstance(value, float):
            return f"{value:.{(digits or {}).get(key, 3)}f}"
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(k, r.get(k)) for k in columns) + " |" for r in rows] + [""]


SCORE_HELP = (
    "Each score is a mean over the queries of the validation windows: **previous** and **current**, the "
    "weight on the position before and on the position itself; **first**, on the window's first position "
    "(an attention sink); **newline** and **space**, on the most recent newline or space, the start of "
    "the line or of the word (when it is at least two back); **distance**, the mean distance of the "
    "positions attended to; **induction**, on random text repeated twice, the weight a token of the "
    "second copy puts on the token that followed its first occurrence (Olsson et al., 2022). `Δ zero` "
    "and `Δ mean`: the validation-loss increase (nats) when the head's output is set to zero or to its mean."
)


def index_text(loaded: LoadedModel, found: Findings, heads: list[Part], meta: str) -> str:
    """index.md: every table of `interpret`, its figures and a link to the explorer."""
    lines = [
        "# What each head does",
        "",
        f"- {printable(meta, None)}",
        f"- checkpoint: {markdown_code(loaded.path)}",
        "",
    ]
    lines += ["Open [explorer.html](explorer.html) in a browser to hover over the text, head by head.", ""]
    lines += ["## Head scores", "", SCORE_HELP, ""]
    lines += markdown(head_rows(found), ["head", *HEAD_SCORES, "zero_increase", "mean_increase"], {"distance": 1})
    lines += ["![head scores](head_scores.png)", ""]
    base = found.ablation[0]["base_loss"]
    lines += ["## Ablation", "", f"Validation loss with every part in place: {base:.4f} nats. Ranked by the cost "]
    lines[-1] += "of mean ablation; `attn` and `mlp` remove a layer's whole attention or MLP.\n"
    lines += markdown(found.ablation, ["rank", "part", "zero_increase", "mean_increase"])
    if found.together is not None:
        names = ", ".join(p.name for p in heads)
        lines += [
            f"Removing {names} together: +{found.together['zero_increase']:.3f} nats (zero), "
            f"+{found.together['mean_increase']:.3f} nats (mean).",
            "",
        ]
    lines += ["![ablation](ablation.png)", ""]
    lines += circuit_markdown(found.circuit)
    lines += ["## Logit lens", ""]
    points = lens_points(loaded.model.config.n_layer)
    lines += markdown(
        [{"read after": p, "loss": v} for p, v in zip(points, found.lens)], ["read after", "loss"], {"loss": 4}
    )
    lines += ["![logit-lens loss](lens_loss.png)", "", "![logit-lens predictions](lens_predictions.png)", ""]
    lines += ["Every position and read-out point: `lens_predictions.tsv`.", "", "## MLP activations", ""]
    lines += markdown(
        mlp_rows(found), ["layer", "dead_fraction", "pre_mean", "pre_std", "positive_fraction"], {"dead_fraction": 4}
    )
    lines += ["![MLP activations](mlp_activations.png)", ""]
    return "\n".join(lines)
