"""Summarise a sweep: python -m minigpt report dir=outputs/<task>/multiruns/<time> [out=DIR]

Reads every job directory of a Hydra multirun (its overrides, summary.json and TensorBoard
logs), prints a table, and writes `report.csv` plus plots: validation-loss curves overlaid,
best validation loss against each swept parameter, and against the parameter count when the
jobs' counts differ. Jobs that failed or are still running appear with their status and
whatever they logged; job folders that never reached a first step are named in a note and left
out. The plots are `matplotlib.figure.Figure`s made without pyplot.

Every loss axis starts at zero: a loss in nats per character has a natural zero (a perfect
prediction), and from there a difference of 0.01 looks as small as it is; each point of the
best-loss plots carries its value for the digits.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import DictConfig

from minigpt.errors import MinigptError
from minigpt.figures import read_scalars
from minigpt.io import file_problem, printable


class UnreadableJob(Exception):
    """A job folder whose record cannot be read (malformed overrides.yaml, a summary.json whose
    numbers are not numbers): the report lists the job as unreadable and goes on."""


SUMMARY_NUMBERS = ("best_val_loss", "steps", "parameters", "train_seconds")


def read_overrides(job_dir: Path) -> dict[str, str]:
    """The job's command-line overrides (`.hydra/overrides.yaml`) as {key: value}; {} without the file."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    try:
        overrides = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise UnreadableJob(f".hydra/overrides.yaml is not valid YAML ({str(e).splitlines()[0][:80]})") from None
    if overrides is None:
        return {}
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UnreadableJob(".hydra/overrides.yaml is not a list of key=value overrides")
    # printable from here on: the values reach the terminal, the CSV, the figures' legends
    pairs = dict(printable(o, 400).split("=", 1) for o in overrides if "=" in o and not o.startswith("hydra."))
    return {k.lstrip("+~"): v for k, v in pairs.items()}


def read_summary(job_dir: Path) -> dict:
    """The job's summary.json; {} when it is missing or cut short (a job killed while writing it)."""
    path = job_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return {}
    if not isinstance(summary, dict):
        return {}
    for key in SUMMARY_NUMBERS:
        value = summary.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, int) and abs(value) > 10**300)
        ):
            raise UnreadableJob(f"summary.json: {key} is {str(value)[:40]!r}, not a usable number")
    return summary


def read_logs(job_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The job's TensorBoard scalars; an event file that is not a regular file (a FIFO would block
    the reader forever) makes the job unreadable."""
    logs = job_dir / "tensorboard"
    if not logs.is_dir():
        return {}
    for events in logs.rglob("events.out.tfevents.*"):
        if problem := file_problem(events):
            raise UnreadableJob(f"{events.relative_to(job_dir)} {problem}")
    return read_scalars(logs)


def load_job(job_dir: Path) -> dict:
    """One job's overrides, status, metrics and validation curve; a job whose record cannot be read
    has status `unreadable` and the reason under `problem`."""
    try:
        overrides, summary, scalars = read_overrides(job_dir), read_summary(job_dir), read_logs(job_dir)
    except UnreadableJob as e:
        results = {key: None for key in SUMMARY_NUMBERS}
        return {
            "job": job_dir.name,
            "overrides": {},
            "status": "unreadable",
            "problem": str(e),
            **results,
            "curve": [],
            "scalars": {},
        }
    curve = scalars.get("val/loss", [])
    best = summary.get("best_val_loss")
    if best is None and curve:
        best = min(v for _, v in curve)
    if summary:
        # a job stopped before its first validation has best_val_loss null
        status = (
            "ok" if best is not None and math.isfinite(best) else "diverged" if best is not None else "not validated"
        )
    else:
        status = "failed/incomplete"
    return {
        "job": job_dir.name,
        "overrides": overrides,
        "status": status,
        "best_val_loss": best,
        "steps": summary.get("steps", curve[-1][0] + 1 if curve else None),
        "parameters": summary.get("parameters"),
        "train_seconds": summary.get("train_seconds"),
        "curve": curve,
        "scalars": scalars,
    }


def find_jobs(sweep_dir: Path) -> list[dict]:
    dirs = [d for d in sweep_dir.iterdir() if d.is_dir() and (d / ".hydra").is_dir()]
    return [load_job(d) for d in sorted(dirs, key=lambda d: (len(d.name), d.name))]


def never_started(job: dict, sweep_dir: Path) -> bool:
    """A job folder with no summary, no logged scalar and no checkpoint: a job that failed before
    its first step (a run removes such a folder itself when it made it) or has not reached it yet."""
    if job["status"] != "failed/incomplete" or job["scalars"]:
        return False
    return not any((sweep_dir / job["job"] / "checkpoints").glob("*.ckpt"))


def swept_keys(jobs: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (or the only overrides of a 1-job sweep)."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job["overrides"] if k not in keys]
    varying = [k for k in keys if len({job["overrides"].get(k) for job in jobs}) > 1]
    return varying or keys


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def label(job: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={job['overrides'].get(k, '-')}" for k in keys) or job["job"]


def write_csv(jobs: list[dict], keys: list[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["job", *keys, "status", "best_val_loss", "best_val_bpc", "steps", "parameters", "train_seconds"]
        )
        for j in jobs:
            loss = j["best_val_loss"]
            bpc = loss / math.log(2) if loss is not None and math.isfinite(loss) else None
            writer.writerow(
                [
                    j["job"],
                    *(j["overrides"].get(k, "") for k in keys),
                    j["status"],
                    loss,
                    bpc,
                    j["steps"],
                    j["parameters"],
                    j["train_seconds"],
                ]
            )


def print_table(jobs: list[dict], keys: list[str], out=None) -> None:
    out = out or sys.stdout
    rows = [["job", *keys, "status", "val loss", "bpc", "steps", "params"]]
    for j in jobs:
        loss = j["best_val_loss"]
        finite = loss is not None and math.isfinite(loss)
        rows.append(
            [
                j["job"],
                *(str(j["overrides"].get(k, "")) for k in keys),
                j["status"],
                f"{loss:.4f}" if finite else str(loss),
                f"{loss / math.log(2):.3f}" if finite else "-",
                str(j["steps"] or "-"),
                f"{j['parameters']:,}" if j["parameters"] else "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def plot_curves(jobs: list[dict], keys: list[str], tag: str = "val/loss", log_y: bool = False) -> Figure | None:
    """One TensorBoard scalar (default: the validation loss) of every job, overlaid; None if no
    job logged it. The validation loss comes with each job's training loss, faint, in the same
    colour: a sweep of few steps has one or two validation points, and the training curve shows
    how the loss got there. Both axes start at zero (see the module's docstring)."""
    if not any(j["scalars"].get(tag) for j in jobs):
        return None
    fig = Figure(figsize=(7.5, 4.5), dpi=120, layout="constrained")
    ax = fig.subplots()
    lowest = math.inf
    for j in jobs:
        if not j["scalars"].get(tag):
            continue
        steps, values = zip(*j["scalars"][tag])
        lowest = min(lowest, *values)
        few = len(steps) <= 3  # a few points: markers big enough to see
        (line,) = ax.plot(
            steps,
            values,
            "o-",
            ms=6 if few else 2.5,
            lw=1.2,
            label=f"{label(j, keys)} ({j['status']})" if j["status"] != "ok" else label(j, keys),
        )
        if tag == "val/loss" and j["scalars"].get("train/loss"):
            train_steps, train_values = zip(*j["scalars"]["train/loss"])
            ax.plot(train_steps, train_values, "-", lw=0.8, alpha=0.35, color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/char)" if tag == "val/loss" else tag)
    ax.set_title("validation loss (faint: training loss)" if tag == "val/loss" else tag)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log_y:
        ax.set_yscale("log", nonpositive="mask")  # exact zeros are left out
    elif lowest >= 0:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_vs(jobs: list[dict], xs: list, xlabel: str, log_x: bool = False) -> Figure | None:
    """Best validation loss against one quantity per job, as a line when the quantity is numeric
    and as bars when it is not; None when no job has both."""
    points = [
        (x, j["best_val_loss"])
        for x, j in zip(xs, jobs)
        if x is not None and j["best_val_loss"] is not None and math.isfinite(j["best_val_loss"])
    ]
    if not points:
        return None
    fig = Figure(figsize=(6, 4), dpi=120, layout="constrained")
    ax = fig.subplots()
    numeric = all(isinstance(x, (int, float)) for x, _ in points)
    if numeric:
        points.sort()
        ax.plot([x for x, _ in points], [y for _, y in points], "o-")
        if log_x:
            ax.set_xscale("log")
    else:
        ax.bar([str(x) for x, _ in points], [y for _, y in points])
        for tick in ax.get_xticklabels():
            tick.set(rotation=30, ha="right")
    ax.set_ylim(bottom=0, top=max(y for _, y in points) * 1.1)  # from zero: a difference looks its size
    for x, y in points:
        ax.annotate(
            f"{y:.3f}",
            (x if numeric else str(x), y),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=7,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation loss")
    ax.set_title(f"best validation loss against {xlabel}")
    ax.grid(alpha=0.3)
    return fig


def report_figures(
    jobs: list[dict], keys: list[str], curves: tuple[str, ...] = (), log_y: bool = False
) -> dict[str, Figure]:
    """Every plot of the report by file name (without .png): the validation-loss curves, one
    overlay per tag of `curves`, the best loss against each swept key, and against the parameter
    count when the jobs' counts differ. A plot with nothing to draw is left out."""
    figures = {"val_loss_curves": plot_curves(jobs, keys)}
    for tag in curves:
        figures[f"curves_{tag.replace('/', '_')}"] = plot_curves(jobs, keys, tag, log_y)
    for key in keys:
        values = [j["overrides"].get(key) for j in jobs]
        numbers = [_number(v) for v in values]
        xs = numbers if all(n is not None for n in numbers) else values
        positive = all(isinstance(x, float) and x > 0 for x in xs)
        figures[f"loss_vs_{key.replace('/', '_')}"] = plot_vs(
            jobs, xs, key, log_x=positive and max(xs) / min(xs) >= 100
        )
    if len({j["parameters"] for j in jobs if j["parameters"]}) > 1:  # one count: nothing to compare
        counts = [j["parameters"] for j in jobs]
        figures["loss_vs_parameters"] = plot_vs(jobs, counts, "parameter count", log_x=True)
    return {name: fig for name, fig in figures.items() if fig is not None}


def report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    out=None,
    curves: tuple[str, ...] = (),
    log_y: bool = False,
) -> dict:
    """Write report.csv and the plots of `report_figures` for `sweep_dir` (plus one overlay per
    TensorBoard tag in `curves`); return the jobs, the swept keys and the files written by name."""
    out = out or sys.stdout
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise MinigptError(
            f"{sweep_dir} is not a directory; pass a multirun folder such as outputs/<task>/multiruns/<time>"
        )
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise MinigptError(f"no Hydra jobs (folders with .hydra/) under {sweep_dir}")
    keys = swept_keys(jobs)  # what the sweep varies, its unstarted jobs included
    unstarted = [j for j in jobs if never_started(j, sweep_dir)]
    if unstarted and len(unstarted) < len(jobs):
        jobs = [j for j in jobs if j not in unstarted]
        labels = {j["job"]: " ".join(f"{k}={j['overrides'].get(k)}" for k in keys) for j in unstarted}
        names = ", ".join(f"{job} ({label})" for job, label in labels.items())
        print(f"note: left out job(s) that never reached a first step (no log, no checkpoint): {names}", file=out)
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"csv": out_dir / "report.csv"}
    write_csv(jobs, keys, written["csv"])
    figures = report_figures(jobs, keys, curves, log_y)
    for name, fig in figures.items():
        written[name] = out_dir / f"{name}.png"
        fig.savefig(written[name])
    for tag in curves:
        if f"curves_{tag.replace('/', '_')}" not in figures:
            tags = sorted({t for j in jobs for t in j["scalars"]})
            print(f"note: no job logged {tag!r}; logged tags: {', '.join(tags) or 'none'}", file=out)
    for job in jobs:
        if job["status"] == "unreadable":
            print(f"note: job {job['job']} is unreadable: {job['problem']}; it is listed without results", file=out)
    print_table(jobs, keys, out)
    print(f"\nwrote {', '.join(str(p) for p in written.values())}", file=out)
    return {"jobs": jobs, "keys": keys, "files": written}


def run(cfg: DictConfig) -> dict:
    """What `python -m minigpt report dir=...` does (conf/report.yaml)."""
    if not cfg.get("dir"):
        raise MinigptError("dir is required: pass dir=outputs/<task>/multiruns/<time>")
    curves = cfg.get("curves") or ()
    curves = (curves,) if isinstance(curves, str) else tuple(str(c) for c in curves)
    return report(cfg.dir, cfg.get("out"), curves=curves, log_y=bool(cfg.get("log_y")))
