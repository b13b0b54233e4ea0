"""Look inside a trained model: figures of attention, residual stream, embeddings, logits and
per-character loss, plus samples at several temperatures.

`python -m minigpt diagnose ckpt=... text="..."` writes them as PNGs with an index.md; the
training callbacks and notebooks/diagnostics.ipynb draw the same figures with the same functions.
Figures are `matplotlib.figure.Figure` objects made without pyplot, so nothing keeps them alive.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, ListConfig, OmegaConf

from minigpt.analysis.metrics import token_losses
from minigpt.checkpoint.format import LoadedModel
from minigpt.checkpoint.load import load_model
from minigpt.cli import require
from minigpt.configs import DiagnoseOptions, check_composed
from minigpt.errors import ConfigError, MinigptError
from minigpt.figures import (
    plot_attention,
    plot_attention_mean,
    plot_char_loss,
    plot_embedding_pca,
    plot_logits,
    plot_residual_norms,
)
from minigpt.inference.generation import check_decoding_memory, pick_device
from minigpt.io import check_out_dir, markdown_code, printable, read_text_file
from minigpt.model import GPT
from minigpt.options import check_unknown
from minigpt.probes import (
    attention_entropy,
    attention_maps,
    model_device,
    next_token_logits,
    position_spread,
    residual_stream,
    sample_text,
)
from minigpt.schema import check_values, problem
from minigpt.tokenizer import Tokenizer

log = logging.getLogger("minigpt")
TEMPERATURES = (0.5, 0.8, 1.0, 1.2)
# what a recurrent model (model=lstm) lacks of the figures
RNN_SKIPS = (
    "a recurrent model has no attention and no residual stream, so the attention and residual_norm figures are "
    "skipped; the embeddings, logits, per-character loss and samples are drawn"
)


def encode(tokenizer: Tokenizer, text: str, unknown: str = "error") -> torch.Tensor:
    """Ids (T,) of `text`; one clear error when nothing of it is left."""
    ids = tokenizer.encode(text, unknown=unknown)
    if len(ids) < 2:
        raise MinigptError("the text needs at least 2 characters of the model's vocabulary; give a longer text")
    return torch.tensor(ids, dtype=torch.long)


# --------------------------------------------------------------------------- the report


def per_character(tokenizer: Tokenizer, ids: torch.Tensor, losses: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The text of `ids` and, for each of its characters after the first, the loss of the token
    holding it (with characters as tokens: the losses themselves; the first token has none)."""
    if tokenizer.kind == "char":
        return tokenizer.decode(ids.tolist()), losses
    pieces = [tokenizer.decode([i]) for i in ids.tolist()]
    per_token = [float("nan")] + losses.tolist()
    values = [loss for piece, loss in zip(pieces, per_token) for _ in piece]
    return "".join(pieces), torch.tensor(values[1:])


def check_temperatures(value) -> tuple[float, ...]:
    """The sampling temperatures: a list of numbers >= 0 (0 = greedy), or one number; null means
    the default four and an empty list no samples."""
    if value is None:
        return TEMPERATURES
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for t in items:
        if problem(t, float, {"low": 0}) is not None:
            raise ConfigError(f"temperatures must be numbers >= 0 (0 = greedy) such as [0.5,1.0], got {t!r}")
    return tuple(float(t) for t in items)


# the most characters of a text diagnose looks at: the per-character loss figure draws a shaded
# cell and a label for each (32 rows of 64 characters)
TEXT_CHARS = 2048


def check_sampling(max_new_tokens, seed) -> None:
    """The options of the samples, checked before anything is computed or written (as
    DiagnoseOptions declares them)."""
    check_values(DiagnoseOptions, {"max_new_tokens": max_new_tokens, "seed": seed})


def check_sample_memory(model: torch.nn.Module, prompt: int, max_new_tokens: int) -> None:
    """Refuse samples of `max_new_tokens` that cannot fit in memory, before anything is drawn."""
    check_decoding_memory(
        model.config,
        1,
        (prompt, max_new_tokens),
        model_device(model),
        "decoding the sample",
        f"lower max_new_tokens={max_new_tokens}",
    )


def read_text(cfg: DictConfig) -> str:
    """The text to look at: `text_file` when given (UTF-8), else `text`; one line when it is
    missing, not text, or empty."""
    if not cfg.get("text_file"):
        text = cfg.get("text")
        if text is None or str(text) == "":
            raise ConfigError('text is empty; pass text="some text" or text_file=PATH')
        return str(text)
    why = f"diagnose looks at its first {TEXT_CHARS:,} characters"
    text = read_text_file(cfg.text_file, "text_file", "text=...", 4 * TEXT_CHARS, why=why)
    if not text:
        raise MinigptError(f"text_file {cfg.text_file} is empty; pass a file with some text, or text=...")
    if Path(cfg.text_file).expanduser().stat().st_size > 4 * TEXT_CHARS:
        return text[:TEXT_CHARS]  # cut already, and said so
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
    `block_size` characters; the per-character loss covers the text's first TEXT_CHARS characters
    (a longer text is cut, saying so on stderr). Every option is checked
    and everything computed before the first file is written; `out_dir` must be new or empty."""
    model, tok = loaded.model, loaded.tokenizer
    temperatures = check_temperatures(temperatures)
    check_sampling(max_new_tokens, seed)
    out_dir = check_out_dir(out_dir)
    if len(text) > TEXT_CHARS:  # one shape and label per character: more would take minutes and GBs to draw
        print(
            f"note: the text has {len(text):,} characters; diagnose looks at its first {TEXT_CHARS:,} "
            f"(what the per-character loss figure can show)",
            file=sys.stderr,
        )
        text = text[:TEXT_CHARS]
    ids = encode(tok, text, check_unknown(unknown))
    check_sample_memory(model, len(ids), max_new_tokens)
    text = tok.decode(ids.tolist())  # what the model sees, after unknown=skip or a replacement
    window = ids[: model.config.block_size]
    figures = model_figures(loaded, ids, window)
    if isinstance(model, GPT):
        figures = {**attention_figures(loaded, window), **residual_figures(loaded, window), **figures}
    lines = [
        "# minigpt diagnostics",
        "",
        f"- checkpoint: {markdown_code(loaded.path)}",
        f"- model: {describe_model(model)}",
        f"- text ({len(text)} characters; figures of attention, residual stream and logits use the first "
        f"{len(window)}):",
        "",
        markdown_code(text, block=True),
        "",
    ]
    for name, (_, caption) in figures.items():
        lines += [f"## {name}", "", caption, "", f"![{name}]({name}.png)", ""]
    lines += ["## samples", "", f"Prompt: the text above; {max_new_tokens} new characters, seed {seed}.", ""]
    for t in temperatures:
        sample = sample_text(model, tok, text, max_new_tokens, t, seed)
        lines += [f"### temperature {t}", "", markdown_code(sample, block=True), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (fig, _) in figures.items():
        fig.savefig(out_dir / f"{name}.png")
    index = out_dir / "index.md"
    index.write_text("\n".join(lines))
    return index


def window_chars(loaded: LoadedModel, window: torch.Tensor) -> list[str]:
    """The text of each position of `window`: a character, or a BPE token."""
    return [loaded.tokenizer.decode([i]) for i in window.tolist()]


def attention_figures(loaded: LoadedModel, window: torch.Tensor) -> dict[str, tuple[Figure, str]]:
    """Each layer's attention (one panel per head) and the attention averaged over heads, captioned."""
    chars = window_chars(loaded, window)
    layers = attention_maps(loaded.model, window)
    figures = {
        f"attention_layer{i}": (
            plot_attention(w, chars, f"layer {i}: attention of each head"),
            f"Attention of layer {i}, one panel per head and their mean. Row = the position predicting "
            "the next character, column = a position it looks at; rows sum to 1, the upper triangle "
            "(the future) is empty.",
        )
        for i, w in enumerate(layers)
    }
    uniform = float(torch.log(torch.arange(1, len(window) + 1.0)).mean())
    figures["attention_mean"] = (
        plot_attention_mean(layers, chars),
        "Attention averaged over the heads of each layer, and over all layers. Mean entropy of "
        f"the attention rows per layer (nats; lower = sharper, uniform over this window = {uniform:.3f}): "
        + ", ".join(f"{v:.3f}" for v in attention_entropy(layers))
        + ".",
    )
    return figures


def describe_model(model: torch.nn.Module) -> str:
    """The sizes that shape the figures: `2 layers, 4 heads, 64 wide, block 32` (an LSTM has no heads)."""
    c = model.config
    if not isinstance(model, GPT):
        return f"{type(model).__name__}: {c.n_layer} layers, {c.n_embd} wide, block {c.block_size}; {RNN_SKIPS}"
    return f"{c.n_layer} layers, {c.n_head} heads, {c.n_embd} wide, block {c.block_size}"


def residual_figures(loaded: LoadedModel, window: torch.Tensor) -> dict[str, tuple[Figure, str]]:
    """The norm of the residual stream after each block, captioned."""
    states = residual_stream(loaded.model, window)
    spread = ", ".join(f"{v:.4f}" for v in position_spread(states))
    return {
        "residual_norm": (
            plot_residual_norms(states, window_chars(loaded, window)),
            "Norm of the residual stream after the embeddings and after each block. Its spread over "
            f"positions (0 = every position holds the same vector, see `position_spread`): {spread}.",
        ),
    }


def model_figures(loaded: LoadedModel, ids: torch.Tensor, window: torch.Tensor) -> dict[str, tuple[Figure, str]]:
    """Embeddings, logits and per-character loss, captioned: what any language model has."""
    model, tok = loaded.model, loaded.tokenizer
    chars = window_chars(loaded, window)
    losses = token_losses(model, ids)
    embedding = model.transformer.wte.weight if isinstance(model, GPT) else model.wte.weight
    return {
        "embedding_pca": (
            # at most 1,000 labels: GPT-2's 50,257 would cover the plot
            plot_embedding_pca(embedding, [tok.decode([i]) for i in range(min(tok.vocab_size, 1000))]),
            "Character embeddings on their first two principal components.",
        ),
        "logits": (
            plot_logits(next_token_logits(model, window), chars),
            "Histogram of the logits and the entropy of the next-character distribution per position.",
        ),
        "char_loss": (
            plot_char_loss(*per_character(tok, ids, losses)),
            f"Loss of predicting each character (mean {float(losses.mean()):.3f} nats); darker = more surprising.",
        ),
    }


def run(cfg: DictConfig) -> Path:
    """What `python -m minigpt diagnose` does: load the checkpoint, write the figures and index."""
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/best.ckpt")
    # everything that needs no checkpoint is checked before it is loaded; diagnose checks it again
    check_composed(cfg, "diagnose")  # types, choices and ranges, as DiagnoseOptions declares them
    text = read_text(cfg)
    temperatures = check_temperatures(cfg.get("temperatures"))
    max_new_tokens, seed, unknown = cfg.get("max_new_tokens", 200), cfg.get("seed"), cfg.get("unknown", "error")
    check_sampling(max_new_tokens, seed)
    check_unknown(unknown)
    out_dir = check_out_dir(cfg.out_dir)
    loaded = load_model(ckpt, pick_device(cfg.get("device", "auto")))
    if not isinstance(loaded.model, GPT):
        print(f"note: {type(loaded.model).__name__} checkpoint: {RNN_SKIPS}", file=sys.stderr)
    index = diagnose(loaded, text, out_dir, temperatures, max_new_tokens, seed, unknown)
    print(f"wrote {len(list(index.parent.glob('*.png')))} figures and {printable(index, None)}")
    return index
