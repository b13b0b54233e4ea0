"""What `python -m minigpt evaluate` (and evaluate.py) measures: loss, perplexity and bits per
character of a checkpoint on a text, and a table of generation quality across decoding strategies.

The loss is a full sweep of the text, not random batches: windows of `block_size` characters
start every `stride` characters and each character is scored once, in the earliest window that
holds it (the one that gives it the most context). With the default stride = block_size the
windows do not overlap, exactly as training's validation does.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.text import chrf_score, sacre_bleu_score

from minigpt.checkpoint.format import LoadedModel
from minigpt.checkpoint.load import load_model
from minigpt.checkpoint.weights import activation_bytes, memory_shortfall
from minigpt.cli import require
from minigpt.configs import EvaluateOptions, GenerateSchema, check_composed
from minigpt.data.corpus import CharDataModule, read_corpus, resolve_corpus
from minigpt.errors import ConfigError, DataError
from minigpt.inference.generation import check_decoding_memory, pick_device
from minigpt.inference.quantize import check_quantize, device_for, quantize_model
from minigpt.io import check_out_dir, json_safe, markdown_code, printable
from minigpt.model import GPT
from minigpt.options import check_unknown
from minigpt.probes import text_windows
from minigpt.sampling import SamplingConfig, beam_search, generate, make_generator
from minigpt.schema import check_values
from minigpt.threads import resolve_threads, using_threads

log = logging.getLogger("minigpt")
LN2 = math.log(2)
GENERATION_COLUMNS = ("strategy", "settings", "bleu", "chrf", "distinct_1", "distinct_2", "self_ppl")
FIGURE = "generation.png"
# the bar charts of generation.png: (column, title, y label)
METRIC_PANELS = (
    ("chrf", "chrF against the real continuation", "chrF x 100"),
    ("bleu", "character BLEU against the real continuation", "BLEU x 100"),
    ("distinct_2", "diversity: distinct word bigrams", "distinct-2"),
    ("self_ppl", "the model's perplexity of the text", "self-perplexity"),
)


# --------------------------------------------------------------------------- options


def check_generation_fits(n_ids: int, prompts: int, prompt_chars: int, new_chars: int, unit: str = "char") -> None:
    """One line unless the text holds `prompts` distinct snippets of prompt_chars + new_chars."""
    unit = "characters" if unit == "char" else "tokens"
    span = prompt_chars + new_chars
    if n_ids < span:
        raise DataError(
            f"the text has {n_ids} {unit}, fewer than generation.prompt_chars + generation.new_chars = "
            f"{prompt_chars} + {new_chars} = {span}; lower generation.prompt_chars or generation.new_chars, "
            f"or pass a longer text (data.path=FILE)"
        )
    places = n_ids - span + 1
    if prompts > places:
        raise ConfigError(
            f"generation.prompts={prompts} but the text of {n_ids} {unit} has only {places} distinct places "
            f"for a prompt and its continuation ({span} {unit}); pass generation.prompts={places} or fewer, "
            f"or a longer text"
        )


def check_options(cfg: DictConfig) -> dict:
    """Every option that needs no checkpoint, checked before the checkpoint is loaded; returns
    the strategies as plain dicts."""
    check_composed(cfg, "evaluate")  # types, choices and ranges, as EvaluateOptions declares them
    check_unknown(cfg.get("unknown", "error"))
    resolve_threads(cfg.get("threads", "auto"), 1, 1)  # a bad value: one line before the checkpoint loads
    gen = cfg.generation
    strategies = OmegaConf.to_container(gen.strategies, resolve=True) if gen.get("strategies") is not None else {}
    if not isinstance(strategies, dict):
        raise ConfigError(f"generation.strategies must map names to decoding options, got {strategies!r}")
    for name, settings in strategies.items():
        parse_strategy(name, settings)
    return strategies


# --------------------------------------------------------------------------- loss of a text


def window_length(model: GPT, context: int | None) -> int:
    """The inputs of one scored window: `context` tokens (None: block_size). Longer than
    block_size only where the position encoding computes any position (`GPT.check_length`
    refuses learned positions in one line)."""
    if context is None:
        return model.config.block_size
    check_values(EvaluateOptions, {"context": context})  # as declared in configs.py
    if hasattr(model, "check_length"):
        model.check_length(context)
    return context


@torch.no_grad()
def token_losses(
    model: GPT, ids: torch.Tensor, stride: int | None = None, batch_size: int = 64, context: int | None = None
) -> torch.Tensor:
    """-log p(ids[t] | what precedes it in its window) for t = 1..N-1: a tensor of N-1 nats.

    Windows of `context` inputs (None: block_size) start at 0, stride, 2*stride, ... and one last
    window ends at the final character, so every character after the first is scored exactly once.
    """
    T = window_length(model, context)
    stride = T if stride is None else stride
    check_values(EvaluateOptions, {"stride": stride, "batch_size": batch_size})  # as declared in configs.py
    if stride > T:
        raise ConfigError(f"stride must be an integer between 1 and the window of {T} tokens, got {stride!r}")
    ids = ids.reshape(-1).long()  # corpora may be stored as uint8
    n_pred = ids.numel() - 1
    if n_pred < 1:
        raise DataError("the text has fewer than 2 characters; there is nothing to predict")
    width = min(T, n_pred)
    last = n_pred - width
    starts = list(range(0, last, stride)) + [last]
    offsets = torch.arange(width + 1)
    device = next(model.parameters()).device
    short = memory_shortfall(activation_bytes(model.config, min(batch_size, len(starts)), width, False), device)
    if short:
        raise ConfigError(
            f"scoring batch_size={batch_size} windows of {width} tokens at once {short}; lower batch_size"
        )
    out = torch.empty(n_pred)
    was_training = model.training
    model.eval()
    # later windows first: a character's loss is overwritten by the earliest window holding it
    for first in reversed(range(0, len(starts), batch_size)):
        batch_starts = starts[first : first + batch_size]
        windows = ids[torch.tensor(batch_starts)[:, None] + offsets].to(device)  # (B, width+1)
        logits = model(windows[:, :-1])  # (B, width, V)
        nll = F.cross_entropy(logits.transpose(1, 2).float(), windows[:, 1:], reduction="none").cpu()  # (B, width)
        for row in reversed(range(len(batch_starts))):
            out[batch_starts[row] : batch_starts[row] + width] = nll[row]
    model.train(was_training)
    return out


@torch.no_grad()
def loss_by_position(model: GPT, ids: torch.Tensor, context: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Mean loss (nats) at each position 0..context-1 of the consecutive non-overlapping windows of
    `context` tokens (None: block_size) that fit in `ids`: (context,). Position p predicts its
    token from p + 1 tokens, so the curve falls as context grows, until positions the model never
    saw in training, where an encoding that does not extrapolate turns it up again."""
    T = window_length(model, context)
    check_values(EvaluateOptions, {"batch_size": batch_size})  # as declared in configs.py
    windows = text_windows(ids, T)
    if windows.size(0) == 0:
        raise DataError(f"the text has {ids.numel()} tokens, too few for one window of {T} + 1; pass a longer text")
    device = next(model.parameters()).device
    short = memory_shortfall(activation_bytes(model.config, min(batch_size, windows.size(0)), T, False), device)
    if short:
        raise ConfigError(f"scoring batch_size={batch_size} windows of {T} tokens at once {short}; lower batch_size")
    total = torch.zeros(T, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for batch in windows.split(batch_size):
        batch = batch.to(device)
        logits = model(batch[:, :-1])  # (B, T, V)
        nll = F.cross_entropy(logits.transpose(1, 2).float(), batch[:, 1:], reduction="none")  # (B, T)
        total += nll.sum(0).double().cpu()
    model.train(was_training)
    return (total / windows.size(0)).float()


def loss_metrics(losses: torch.Tensor) -> dict[str, float]:
    """Mean loss in nats, perplexity e^loss and bits per character loss / ln 2."""
    loss = float(losses.mean())
    return {"loss": loss, "ppl": math.exp(loss), "bpc": loss / LN2, "characters": int(losses.numel())}


def evaluation_ids(loaded: LoadedModel, data: Mapping, unknown: str = "error") -> tuple[torch.Tensor, str]:
    """The token ids to evaluate on and a description of them.

    Without `data.path`: the validation split of the corpus the checkpoint was trained on (the
    same last fraction as training, through `CharDataModule`). With `data.path`: the whole file,
    unless `data.split=val` asks for its last fraction.
    """
    trained = ((loaded.meta.get("run_config") or {}).get("data")) or {}
    own_file = bool(data.get("path"))
    split = data.get("split") or ("all" if own_file else "val")
    if split not in ("val", "all"):
        raise ConfigError(f"data.split={split!r} is unknown; choose val (the last fraction) or all")
    source = {
        "path": data.get("path") if own_file else trained.get("path"),
        "name": None if own_file else trained.get("name", "tinyshakespeare"),
        "cache_dir": trained.get("cache_dir", "data"),
        "url": None if own_file else trained.get("url"),
        "sha256": None if own_file else trained.get("sha256"),
    }
    val_fraction = data.get("val_fraction") or trained.get("val_fraction", 0.1)
    if split == "val":
        dm = CharDataModule(
            block_size=loaded.model.config.block_size, val_fraction=val_fraction, tokenizer=loaded.tokenizer, **source
        )
        dm.prepare_data()
        dm.setup()
        return dm.val_data, f"validation split (last {val_fraction:.0%}) of {dm.corpus_path()}"
    path = resolve_corpus(**source)
    ids = torch.tensor(loaded.tokenizer.encode(read_corpus(path), unknown=unknown), dtype=torch.long)
    return ids, f"all of {path}"


# --------------------------------------------------------------------------- generation quality


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over `texts`."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_perplexity(
    model: GPT, prompts: torch.Tensor, continuations: torch.Tensor, stride: int | None, context: int | None = None
) -> float:
    """The model's perplexity of continuations (B, R) given their prompts (B, P), in windows of
    `context` tokens (None: block_size)."""
    R = continuations.size(1)
    pairs = zip(prompts, continuations)
    losses = [token_losses(model, torch.cat([p, c]).cpu(), stride, context=context)[-R:] for p, c in pairs]
    return math.exp(float(torch.cat(losses).mean()))


def strategy_settings(settings: Mapping) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


# the keys of a strategy: the sampling options and beam search's, declared by generate's schema
STRATEGY_KEYS = (*(f.name for f in dataclasses.fields(SamplingConfig)), "num_beams", "length_penalty")


def parse_strategy(name: str, settings) -> tuple[int, float, SamplingConfig | None]:
    """(num_beams, length_penalty, None) for beam search (num_beams > 1), else (1, 1.0, the
    sampling config); one line naming `generation.strategies.<name>` when the settings are not valid."""
    where = f"generation.strategies.{name}"
    if not isinstance(settings, Mapping):
        raise ConfigError(
            f"{where} must be decoding options such as {{temperature: 0.8}}, got {settings!r}; "
            f"drop the strategy with ~{where}"
        )
    settings = dict(settings)
    unknown = [key for key in settings if key not in STRATEGY_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown decoding option {', '.join(unknown)}; the options are {', '.join(STRATEGY_KEYS)}"
        )
    check_values(GenerateSchema, settings, where)  # as generate's command line declares them
    num_beams = settings.pop("num_beams", 1)
    length_penalty = settings.pop("length_penalty", None)
    if num_beams > 1:
        return num_beams, _beam_length_penalty(where, num_beams, length_penalty, settings), None
    if length_penalty is not None:
        raise ConfigError(f"{where}: length_penalty is for beam search only; add num_beams > 1 or drop it")
    return 1, 1.0, _sampling_config(where, settings)


def _beam_length_penalty(where: str, num_beams: int, length_penalty, others: dict) -> float:
    """Beam search's length penalty (1.0 when unset); beam search takes no sampling options."""
    if others:
        raise ConfigError(
            f"{where}: beam search (num_beams={num_beams}) takes only num_beams and length_penalty, "
            f"not {', '.join(others)}; drop them or use num_beams=1 to sample"
        )
    return 1.0 if length_penalty is None else float(length_penalty)


def _sampling_config(where: str, settings: dict) -> SamplingConfig:
    """`SamplingConfig(**settings)`, its errors prefixed with the strategy's name."""
    try:
        return SamplingConfig(**settings)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


@torch.no_grad()
def decode(
    model: GPT,
    prompts: torch.Tensor,
    new_chars: int,
    settings: Mapping,
    seed: int | None,
    name: str = "?",
    context: int | None = None,
) -> torch.Tensor:
    """Continuations (B, new_chars) of prompts (B, P) by strategy `name`: beam search when
    `num_beams` > 1 (one prompt at a time), otherwise sampling with `SamplingConfig(**settings)`;
    the model reads at most `context` tokens (None: block_size)."""
    num_beams, length_penalty, cfg = parse_strategy(name, settings)
    if cfg is None:
        beams = [beam_search(model, p[None], new_chars, num_beams, length_penalty, context=context) for p in prompts]
        return torch.stack([b[0].ids for b in beams])
    out = generate(model, prompts, new_chars, cfg, generator=make_generator(seed, prompts.device), context=context)
    return out[:, prompts.size(1) :]


def check_strategies_memory(
    loaded: LoadedModel, strategies: Mapping[str, Mapping], prompts: int, prompt_chars: int, new_chars: int
) -> None:
    """Refuse a strategy whose sequences decoded at once (every prompt when sampling, `num_beams`
    beams of one prompt in beam search) cannot fit in the memory free on the model's device."""
    device = next(loaded.model.parameters()).device
    for name, settings in strategies.items():
        num_beams, _, _ = parse_strategy(name, settings)
        rows = num_beams if num_beams > 1 else prompts
        what = f"num_beams={num_beams} beams" if num_beams > 1 else f"generation.prompts={prompts} prompts"
        fix = f"lower {'its num_beams' if num_beams > 1 else 'generation.prompts'}"
        check_decoding_memory(
            loaded.model.config,
            rows,
            (prompt_chars, new_chars),
            device,
            f"generation.strategies.{name}: decoding {what}",
            fix,
        )


def generation_table(
    loaded: LoadedModel,
    ids: torch.Tensor,
    strategies: Mapping[str, Mapping],
    prompts: int = 20,
    prompt_chars: int = 32,
    new_chars: int = 100,
    seed: int | None = 1337,
    stride: int | None = None,
    context: int | None = None,
) -> tuple[list[dict], list[str], dict[str, list[str]]]:
    """Continue `prompts` evenly spaced snippets of `ids` with every strategy and score them
    against the text that really follows: BLEU over character 4-grams (word 4-grams of 100
    characters almost never match, which makes word BLEU 0 for every strategy) and chrF
    (character 6-grams), both x 100,
    distinct-1/2 and the model's perplexity of its own continuations. The first row, `reference`,
    scores the held-out continuations themselves (distinct-n and perplexity only). The model reads
    at most `context` tokens (None: block_size).

    Returns the rows, the prompts as text, and each strategy's continuations (one per prompt)."""
    model, tok = loaded.model, loaded.tokenizer
    check_generation_fits(ids.numel(), prompts, prompt_chars, new_chars, tok.kind)
    check_strategies_memory(loaded, strategies, prompts, prompt_chars, new_chars)
    span = prompt_chars + new_chars
    device = next(model.parameters()).device
    starts = torch.linspace(0, ids.numel() - span, prompts).long()
    snippets = ids[starts[:, None] + torch.arange(span)].long().to(device)  # (n, P + R)
    prompt_ids, reference_ids = snippets[:, :prompt_chars], snippets[:, prompt_chars:]
    references = [tok.decode(r.tolist()) for r in reference_ids]
    rows = [
        {
            "strategy": "reference",
            "settings": "held-out text",
            "bleu": math.nan,
            "chrf": math.nan,
            "distinct_1": distinct_n(references, 1),
            "distinct_2": distinct_n(references, 2),
            "self_ppl": self_perplexity(model, prompt_ids, reference_ids, stride, context),
        }
    ]
    samples = {"reference": references}
    for name, settings in strategies.items():
        out = decode(model, prompt_ids, new_chars, settings, seed, name, context)
        texts = [tok.decode(o.tolist()) for o in out]
        targets = [[r] for r in references]
        rows.append(
            {
                "strategy": name,
                "settings": strategy_settings(settings),
                "bleu": 100 * float(sacre_bleu_score(texts, targets, n_gram=4, tokenize="char")),
                "chrf": 100 * float(chrf_score(texts, targets, n_word_order=0)),
                "distinct_1": distinct_n(texts, 1),
                "distinct_2": distinct_n(texts, 2),
                "self_ppl": self_perplexity(model, prompt_ids, out, stride, context),
            }
        )
        samples[name] = texts
    return rows, [tok.decode(p.tolist()) for p in prompt_ids], samples


# --------------------------------------------------------------------------- output


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """Rows as a Markdown table (numbers to 3 decimals, NaN as a dash), printable and pasteable."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.3f}"
        return printable(v, None).replace("|", "\\|")  # a | would start another column

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    out_dir: Path, result: dict, prompts: list[str], samples: dict[str, list[str]], unit: str = "char"
) -> None:
    """metrics.json (everything), generation.csv (one row per strategy), generation.png (its
    figure) and samples.md (prompts and their continuations, and the figure).
    Files are created, never replaced ("x"): a file that appeared since `check_out_dir` is kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "metrics.json", "x") as f:
        f.write(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
    with open(out_dir / "generation.csv", "x", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=GENERATION_COLUMNS)
        writer.writeheader()
        for row in result["generation"]:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    with open(out_dir / FIGURE, "xb") as f:
        plot_generation(result, unit).savefig(f, format="png")
    with open(out_dir / "samples.md", "x") as f:
        f.write(samples_markdown(prompts, samples, result["generation"], FIGURE))


def samples_markdown(
    prompts: list[str], samples: dict[str, list[str]], rows: list[dict], figure: str | None = None, shown: int = 3
) -> str:
    """samples.md: the figure, then each of the first `shown` prompts followed by its continuation
    by every strategy (`reference` is the text that really follows it)."""
    settings = {row["strategy"]: row["settings"] for row in rows}
    lines = ["# Samples", ""]
    if figure:
        lines += [f"![generation quality per decoding strategy]({figure})", ""]
    lines += [
        f"The first {min(shown, len(prompts))} of {len(prompts)} prompts, each followed by its continuation "
        f"by every decoding strategy; `reference` is the text that really follows the prompt.",
        "",
    ]
    for i, prompt in enumerate(prompts[:shown]):
        lines += [f"## Prompt {i + 1}", "", markdown_code(prompt, block=True), ""]
        for name, texts in samples.items():
            lines += [f"### {name} ({settings.get(name, '')})", "", markdown_code(texts[i], block=True), ""]
    return "\n".join(lines)


def plot_generation(result: dict, unit: str = "char") -> Figure:
    """One bar chart per generation metric, a bar per decoding strategy (the held-out `reference`
    in grey where it has a value), under a title giving the loss and bits per character."""
    rows = result["generation"]
    colours = {row["strategy"]: "0.6" if i == 0 else f"C{(i - 1) % 10}" for i, row in enumerate(rows)}
    fig = Figure(figsize=(3.6 * len(METRIC_PANELS), 4.2), dpi=120, layout="constrained")
    for ax, (column, title, ylabel) in zip(fig.subplots(1, len(METRIC_PANELS)), METRIC_PANELS):
        shown = [row for row in rows if math.isfinite(row[column])]
        bars = ax.bar(range(len(shown)), [row[column] for row in shown], color=[colours[r["strategy"]] for r in shown])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(shown)), [row["strategy"] for row in shown], rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("decoding strategy")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    per = "character" if unit == "char" else "token"
    fig.suptitle(
        f"{result['text']}\nloss {result['loss']:.3f} nats, {result['bpc']:.3f} bits per {per}, "
        f"perplexity {result['ppl']:.2f}; generation quality per decoding strategy",
        fontsize=10,
    )
    return fig


def run(cfg: DictConfig) -> dict:
    """Evaluate `cfg.ckpt`: print the tables, write metrics.json, generation.csv, generation.png
    and samples.md."""
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/best.ckpt")
    strategies = check_options(cfg)
    out_dir = check_out_dir(cfg.out_dir)
    quantize = cfg.get("quantize")
    device = pick_device(device_for(quantize, cfg.get("device", "auto")))
    quantize = check_quantize(quantize, device)
    loaded = load_model(ckpt, device, tasks=("lm", "classify"))  # a classifier's trunk, on a text file
    data = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else {}
    if loaded.meta.get("task") == "classify" and not data.get("path"):
        raise ConfigError(
            f"checkpoint {ckpt} is a classifier (task=classify, labels {', '.join(loaded.meta.get('labels', []))}) "
            f"trained on labelled data; evaluate measures a language model on a text file: pass "
            f"data.path=<a text file>, or run python -m minigpt classify ckpt=... for its predictions"
        )
    loaded.model = quantize_model(loaded.model, quantize)
    ids, description = evaluation_ids(loaded, data, cfg.get("unknown", "error"))
    gen = cfg.generation
    check_generation_fits(ids.numel(), gen.prompts, gen.prompt_chars, gen.new_chars, loaded.tokenizer.kind)
    stride, context = cfg.get("stride"), cfg.get("context")
    window = window_length(loaded.model, context)  # a longer context with learned positions: one line, here
    batch, n_params, threads = cfg.get("batch_size", 64), loaded.model.num_params(), cfg.get("threads", "auto")
    with using_threads(threads, n_params, batch * window):  # scoring: large passes
        metrics = loss_metrics(token_losses(loaded.model, ids, stride, batch, context))
        by_position = loss_by_position(loaded.model, ids, context, batch) if ids.numel() > window else None
    result = {"checkpoint": str(ckpt), "text": description, "stride": stride or window, "context": window}
    result["quantize"] = quantize
    result.update(metrics)
    result["block_size"] = loaded.model.config.block_size
    result["loss_by_position"] = None if by_position is None else [round(float(v), 5) for v in by_position]
    beams = max((parse_strategy(name, s)[0] for name, s in strategies.items()), default=1)
    with using_threads(threads, n_params, gen.prompts * beams):  # decoding: one token per prompt a step
        rows, prompts, samples = generation_table(
            loaded, ids, strategies, gen.prompts, gen.prompt_chars, gen.new_chars, gen.seed, stride, context
        )
    result["generation"] = rows
    result["generation_settings"] = {k: gen[k] for k in ("prompts", "prompt_chars", "new_chars", "seed")}
    write_results(out_dir, result, prompts, samples, loaded.tokenizer.kind)
    unit = "characters" if loaded.tokenizer.kind == "char" else "tokens (loss, ppl and bpc are per token)"
    print(f"{description}: {metrics['characters']:,} {unit}, windows of {window}, stride {result['stride']}\n")
    print(markdown_table([result], ("loss", "ppl", "bpc")))
    print(
        f"\ngeneration: {gen.prompts} prompts of {gen.prompt_chars} characters, "
        f"{gen.new_chars} new characters each; BLEU and chrF x 100 against the real continuation\n"
    )
    print(markdown_table(rows, GENERATION_COLUMNS))
    print(f"\nwritten to {out_dir}/ (metrics.json, generation.csv, {FIGURE}, samples.md)")
    return result
