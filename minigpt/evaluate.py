"""evaluate.py's work: loss, perplexity and bits per character of a checkpoint on a text, and a
table of generation quality across decoding strategies.

The loss is a full sweep of the text, not random batches: windows of `block_size` characters
start every `stride` characters and each character is scored once, in the earliest window that
holds it (the one that gives it the most context). With the default stride = block_size the
windows do not overlap, exactly as training's validation does.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.text import chrf_score, sacre_bleu_score

from minigpt.checkpoint import LoadedModel, load_model
from minigpt.cli import require
from minigpt.data import CharDataModule, read_corpus, resolve_corpus
from minigpt.errors import ConfigError, DataError
from minigpt.generation import pick_device
from minigpt.model import GPT
from minigpt.quantize import check_quantize, device_for, quantize_model
from minigpt.sampling import SamplingConfig, beam_search, generate, make_generator

log = logging.getLogger("minigpt")
LN2 = math.log(2)
GENERATION_COLUMNS = ("strategy", "settings", "bleu", "chrf", "distinct_1", "distinct_2", "self_ppl")


# --------------------------------------------------------------------------- loss of a text


@torch.no_grad()
def token_losses(model: GPT, ids: torch.Tensor, stride: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """-log p(ids[t] | what precedes it in its window) for t = 1..N-1: a tensor of N-1 nats.

    Windows of `block_size` inputs start at 0, stride, 2*stride, ... and one last window ends
    at the final character, so every character after the first is scored exactly once.
    """
    T = model.config.block_size
    stride = T if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= T:
        raise ConfigError(f"stride must be an integer between 1 and block_size={T}, got {stride!r}")
    ids = ids.reshape(-1).long()  # corpora may be stored as uint8
    n_pred = ids.numel() - 1
    if n_pred < 1:
        raise DataError("the text has fewer than 2 characters; there is nothing to predict")
    width = min(T, n_pred)
    last = n_pred - width
    starts = list(range(0, last, stride)) + [last]
    offsets = torch.arange(width + 1)
    device = next(model.parameters()).device
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


def self_perplexity(model: GPT, prompts: torch.Tensor, continuations: torch.Tensor, stride: int | None) -> float:
    """The model's perplexity of continuations (B, R) given their prompts (B, P)."""
    R = continuations.size(1)
    losses = [token_losses(model, torch.cat([p, c]).cpu(), stride)[-R:] for p, c in zip(prompts, continuations)]
    return math.exp(float(torch.cat(losses).mean()))


def strategy_settings(settings: Mapping) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


@torch.no_grad()
def decode(model: GPT, prompts: torch.Tensor, new_chars: int, settings: Mapping, seed: int | None) -> torch.Tensor:
    """Continuations (B, new_chars) of prompts (B, P) by one strategy: beam search when
    `num_beams` > 1 (one prompt at a time), otherwise sampling with `SamplingConfig(**settings)`."""
    settings = dict(settings)
    num_beams = settings.pop("num_beams", 1)
    if num_beams > 1:
        length_penalty = settings.pop("length_penalty", 1.0)
        if settings:
            raise ConfigError(f"beam search takes only num_beams and length_penalty, not {', '.join(settings)}")
        return torch.stack([beam_search(model, p[None], new_chars, num_beams, length_penalty)[0].ids for p in prompts])
    try:
        cfg = SamplingConfig(**settings)
    except TypeError as e:
        raise ConfigError(f"unknown decoding option in {strategy_settings(settings)!r}: {e}") from None
    out = generate(model, prompts, new_chars, cfg, generator=make_generator(seed, prompts.device))
    return out[:, prompts.size(1) :]


def generation_table(
    loaded: LoadedModel,
    ids: torch.Tensor,
    strategies: Mapping[str, Mapping],
    prompts: int = 20,
    prompt_chars: int = 32,
    new_chars: int = 100,
    seed: int | None = 1337,
    stride: int | None = None,
) -> tuple[list[dict], dict[str, list[str]]]:
    """Continue `prompts` evenly spaced snippets of `ids` with every strategy and score them
    against the text that really follows: BLEU over character 4-grams (word 4-grams of 100
    characters almost never match, which makes word BLEU 0 for every strategy) and chrF
    (character 6-grams), both x 100,
    distinct-1/2 and the model's perplexity of its own continuations. The first row, `reference`,
    scores the held-out continuations themselves (distinct-n and perplexity only)."""
    model, tok = loaded.model, loaded.tokenizer
    if prompt_chars < 1 or new_chars < 1 or prompts < 1:
        raise ConfigError("generation.prompts, prompt_chars and new_chars must all be >= 1")
    span = prompt_chars + new_chars
    if ids.numel() < span:
        raise DataError(f"the text has {ids.numel()} characters, fewer than prompt_chars + new_chars = {span}")
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
            "self_ppl": self_perplexity(model, prompt_ids, reference_ids, stride),
        }
    ]
    samples = {"reference": references}
    for name, settings in strategies.items():
        out = decode(model, prompt_ids, new_chars, settings, seed)
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
                "self_ppl": self_perplexity(model, prompt_ids, out, stride),
            }
        )
        samples[name] = texts
    return rows, samples


# --------------------------------------------------------------------------- output


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """Rows as a Markdown table (numbers to 3 decimals, NaN as a dash), printable and pasteable."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _no_nan(value):
    """JSON has no NaN: write null instead."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def write_results(out_dir: Path, result: dict, samples: dict[str, list[str]]) -> None:
    """metrics.json (everything), generation.csv (one row per strategy), samples.md (examples)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(_no_nan(result), indent=2) + "\n")
    with open(out_dir / "generation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=GENERATION_COLUMNS)
        writer.writeheader()
        for row in result["generation"]:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    lines = ["# Samples", ""]
    for name, texts in samples.items():
        lines += [f"## {name}", ""]
        for text in texts[:3]:
            lines += ["```", text, "```", ""]
    (out_dir / "samples.md").write_text("\n".join(lines))


def run(cfg: DictConfig) -> dict:
    """Evaluate `cfg.ckpt`: print the tables, write metrics.json, generation.csv and samples.md."""
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/best.ckpt")
    quantize = cfg.get("quantize")
    device = pick_device(device_for(quantize, cfg.get("device", "auto")))
    quantize = check_quantize(quantize, device)
    loaded = load_model(ckpt, device)
    loaded.model = quantize_model(loaded.model, quantize)
    data = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else {}
    ids, description = evaluation_ids(loaded, data, cfg.get("unknown", "error"))
    stride = cfg.get("stride")
    metrics = loss_metrics(token_losses(loaded.model, ids, stride, cfg.get("batch_size", 64)))
    result = {"checkpoint": str(ckpt), "text": description, "stride": stride or loaded.model.config.block_size}
    result["quantize"] = quantize
    result.update(metrics)
    gen = cfg.generation
    strategies = OmegaConf.to_container(gen.strategies, resolve=True)
    rows, samples = generation_table(
        loaded, ids, strategies, gen.prompts, gen.prompt_chars, gen.new_chars, gen.seed, stride
    )
    result["generation"] = rows
    result["generation_settings"] = {k: gen[k] for k in ("prompts", "prompt_chars", "new_chars", "seed")}
    out_dir = Path(cfg.out_dir)
    write_results(out_dir, result, samples)
    unit = "characters" if loaded.tokenizer.kind == "char" else "tokens (loss, ppl and bpc are per token)"
    print(f"{description}: {metrics['characters']:,} {unit}, stride {result['stride']}\n")
    print(markdown_table([result], ("loss", "ppl", "bpc")))
    print(
        f"\ngeneration: {gen.prompts} prompts of {gen.prompt_chars} characters, "
        f"{gen.new_chars} new characters each; BLEU and chrF x 100 against the real continuation\n"
    )
    print(markdown_table(rows, GENERATION_COLUMNS))
    print(f"\nwritten to {out_dir}/ (metrics.json, generation.csv, samples.md)")
    return result
