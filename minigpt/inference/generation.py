"""generate.py's work: load a checkpoint, read the prompt, decode, stream text to stdout.

The text goes to stdout; which checkpoint, device and speed go to stderr, so
`python generate.py ... > out.txt` captures only the text.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import torch
from omegaconf import DictConfig

from minigpt.checkpoint.format import LoadedModel
from minigpt.checkpoint.load import load_model
from minigpt.checkpoint.weights import decoding_bytes, memory_shortfall
from minigpt.cli import require
from minigpt.configs import check_composed
from minigpt.errors import ConfigError, MinigptError
from minigpt.inference.quantize import check_quantize, device_for, quantize_model
from minigpt.io import printable, read_text_file
from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig
from minigpt.options import check_unknown
from minigpt.sampling import SamplingConfig, beam_search, make_generator, stop_index, stream_tokens
from minigpt.threads import resolve_threads, using_threads
from minigpt.tokenizer import TextStream


def pick_device(name: object) -> torch.device:
    """The compute device `device=` names, if this machine has it: auto (CUDA when there is one,
    else the CPU), cpu, cuda or cuda:<index of one of its GPUs>, mps where PyTorch has it; one line
    for anything else (meta, an index past the last GPU, a device PyTorch was not built for)."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "cpu")
    options = "auto, cpu" + (f", cuda or cuda:0 ... cuda:{torch.cuda.device_count() - 1}" if cuda else "")
    try:
        device = torch.device(str(name))
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name!r} is not a device; use {options}") from None
    if device.type == "cuda" and not cuda:
        raise ConfigError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} GPU(s); use {options}")
    mps = device.type == "mps" and torch.backends.mps.is_available()
    if device.type not in ("cpu", "cuda") and not mps:
        raise ConfigError(f"device={name} is not a compute device on this machine; use {options}")
    return device


def prompt_bytes(block_size: int) -> int:
    """How much of a prompt file is read: the model sees only the last `block_size` tokens of the
    text, and no token is longer than 64 bytes (16 four-byte characters), nor a prompt file read
    beyond that (64 KiB at least)."""
    return max(64 * 1024, 64 * block_size)


def read_prompt(cfg: DictConfig, block_size: int | None = None) -> str:
    """The prompt: `prompt_file` (its end only, when the model cannot see more) or `prompt`."""
    if cfg.get("prompt_file"):
        limit = None if block_size is None else prompt_bytes(block_size)
        why = f"the model sees only the last {block_size} tokens of a prompt"
        return read_text_file(cfg.prompt_file, "prompt_file", "prompt=...", limit, from_end=True, why=why)
    prompt = cfg.get("prompt")
    return "" if prompt is None else str(prompt)


def encode_prompt(loaded: LoadedModel, prompt: str, unknown: str, device: torch.device) -> torch.Tensor:
    """Prompt ids (1, T). An empty prompt starts from a newline (or the first vocabulary entry)."""
    tok = loaded.tokenizer
    if prompt == "":
        prompt = "\n" if not tok.unknown_chars("\n") else tok.decode([0])
    ids = tok.encode(prompt, unknown=unknown)
    if not ids:
        raise MinigptError("nothing of the prompt is left after dropping unknown characters; give another prompt")
    return torch.tensor([ids], dtype=torch.long, device=device)


def sampling_config(cfg: DictConfig) -> SamplingConfig:
    return SamplingConfig(
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        min_p=cfg.min_p,
        typical_p=cfg.typical_p,
        repetition_penalty=cfg.repetition_penalty,
    )


def check_counts(cfg: DictConfig) -> None:
    """The options that are not sampling settings: counts, seed, the unknown-character policy,
    switches, beam search's."""
    check_composed(cfg, "generate")  # types, choices and ranges, as GenerateOptions declares them
    resolve_threads(cfg.get("threads", "auto"), 1, 1)
    check_unknown(cfg.get("unknown", "error"))
    if cfg.num_beams > 1:
        sampling = [k for k in ("top_k", "top_p", "min_p", "typical_p") if cfg.get(k) is not None]
        if cfg.get("repetition_penalty", 1.0) != 1.0:
            sampling.append("repetition_penalty")
        if sampling:
            raise ConfigError(
                f"num_beams={cfg.num_beams} is beam search, which does not sample, so {', '.join(sampling)} "
                f"would be ignored; drop them, or use num_beams=1 to sample"
            )
        if cfg.num_samples > cfg.num_beams:
            raise ConfigError(
                f"num_samples={cfg.num_samples} > num_beams={cfg.num_beams}: beam search keeps only "
                f"num_beams sequences; raise num_beams or lower num_samples"
            )


def context(cfg: DictConfig) -> int | None:
    """The `context` option: the most tokens the model reads (None: its block_size)."""
    return cfg.get("context")


def unescape_stops(stop) -> list[str]:
    """Stop strings from the command line, where a newline is typed as \\n and a tab as \\t."""
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else list(stop)
    return [str(s).replace("\\n", "\n").replace("\\t", "\t") for s in items if str(s)]


def prompt_seed(seed: int | None, index: int) -> int | None:
    """The seed for the `index`-th prompt (from 0): seed + index, so every prompt of an interactive
    session gets its own, still reproducible, samples; None (a random seed) stays None."""
    return None if seed is None else seed + index


@dataclass
class Continuation:
    """One sample's generated text, which ends after a stop string. Tokens go through the
    tokenizer's stream, since a BPE token may hold only part of a character."""

    stream: TextStream
    stops: list[str]
    text: str = ""
    ended: bool = False

    def push(self, token: int) -> str:
        """Add one token; return the text it completes ("" once a stop string has ended the sample)."""
        if self.ended:
            return ""
        piece = self.stream.push(token)
        self.text += piece
        # checked after every token, so a stop string always ends in the newest one
        self.ended = bool(self.stops) and stop_index(self.text, self.stops) is not None
        return piece

    def finish(self) -> str:
        """Add the bytes still held back when generation stopped, unless a stop string ended it."""
        rest = self.stream.flush()
        if self.ended:
            return ""
        self.text += rest
        return rest


def write_beams(loaded: LoadedModel, ids: torch.Tensor, cfg: DictConfig, stops: list[str], out) -> int:
    """Beam search: write the `num_samples` best beams after the prompt; return their token count."""
    tok = loaded.tokenizer
    done = (lambda new: stop_index(tok.decode(new.tolist()), stops) is not None) if stops else None
    model, new = loaded.model, cfg.max_new_tokens
    beams = beam_search(model, ids, new, cfg.num_beams, cfg.length_penalty, cfg.use_cache, done, context=context(cfg))
    shown_prompt = tok.decode(ids[0].tolist())
    for rank, beam in enumerate(beams[: cfg.num_samples]):
        if cfg.num_samples > 1:
            out.write(f"--- beam {rank + 1} (score {beam.score:.4f}) ---\n")
        out.write(shown_prompt + tok.decode(beam.ids.tolist()) + "\n")
    out.flush()
    return sum(len(b.ids) for b in beams[: cfg.num_samples])


def decode_samples(
    loaded: LoadedModel, ids: torch.Tensor, cfg: DictConfig, samples: list[Continuation], generator, echo=None
) -> int:
    """Sample into `samples` (one row each) until max_new_tokens or every one has stopped, writing
    the first one's text to `echo` as it comes when given; return the number of steps."""
    batch = ids.expand(len(samples), -1).contiguous()
    sampling, new = sampling_config(cfg), cfg.max_new_tokens
    steps = stream_tokens(loaded.model, batch, new, sampling, cfg.use_cache, generator, context=context(cfg))
    n = 0
    for step_ids in steps:
        n += 1
        pieces = [sample.push(t) for sample, t in zip(samples, step_ids.tolist())]
        if echo is not None:
            echo.write(pieces[0])
            echo.flush()
        if all(sample.ended for sample in samples):
            break
    rests = [sample.finish() for sample in samples]
    if echo is not None:
        echo.write(rests[0])
    return n


def write_samples(loaded: LoadedModel, ids: torch.Tensor, cfg: DictConfig, stops: list[str], generator, out) -> int:
    """Sample `num_samples` continuations: stream a single one as it is made, or write them all
    once done; return the number of tokens generated."""
    tok = loaded.tokenizer
    shown_prompt = tok.decode(ids[0].tolist())
    samples = [Continuation(tok.stream(), stops) for _ in range(cfg.num_samples)]
    if cfg.stream and cfg.num_samples == 1:
        out.write(shown_prompt)
        out.flush()
        n = decode_samples(loaded, ids, cfg, samples, generator, echo=out)
        out.write("\n")
    else:
        n = decode_samples(loaded, ids, cfg, samples, generator)
        for i, sample in enumerate(samples):
            if cfg.num_samples > 1:
                out.write(f"--- sample {i + 1} ---\n")
            out.write(shown_prompt + sample.text + "\n")
    out.flush()
    return n * cfg.num_samples


def complete(
    loaded: LoadedModel, prompt: str, cfg: DictConfig, device: torch.device, out=sys.stdout, prompt_index: int = 0
) -> int:
    """Write the prompt and its continuation(s) to `out`; return the number of tokens generated.
    Sampling is seeded with `prompt_seed(cfg.seed, prompt_index)`."""
    ids = encode_prompt(loaded, prompt, cfg.unknown, device)
    key = "num_beams" if cfg.num_beams > 1 else "num_samples"
    check_decoding_memory(
        loaded.model.config,
        cfg[key],
        (ids.size(1), cfg.max_new_tokens),
        device,
        f"decoding {key}={cfg[key]} sequences",
        f"lower {key} or max_new_tokens",
        cfg.use_cache,
        "use_cache=false",
    )
    stops = unescape_stops(cfg.get("stop"))
    if cfg.num_beams > 1:
        return write_beams(loaded, ids, cfg, stops, out)
    generator = make_generator(prompt_seed(cfg.seed, prompt_index), device)
    return write_samples(loaded, ids, cfg, stops, generator, out)


def check_decoding_memory(
    config: GPTConfig | LSTMConfig,
    rows: int,
    tokens: tuple[int, int],
    device: torch.device | None,
    what: str,
    fix: str,
    use_cache: bool = True,
    uncached_option: str | None = None,
) -> None:
    """Refuse, before the first step, decoding `rows` sequences at once of `tokens` = (prompt,
    new) tokens whose KV cache and logits cannot fit in the memory free on `device`: one line
    naming them (`what`, e.g. "decoding num_samples=8 sequences") and what to lower (`fix`);
    `uncached_option` names the setting that turns the cache off, offered when that would fit."""
    prompt, new = tokens
    short = memory_shortfall(decoding_bytes(config, rows, prompt, new, use_cache), device)
    if short is None:
        return
    uncached = (
        uncached_option and use_cache and not memory_shortfall(decoding_bytes(config, rows, prompt, new, False), device)
    )
    hint = f" (or pass {uncached_option}: no KV cache, but every step recomputes)" if uncached else ""
    raise ConfigError(f"{what} at once, {prompt} + {new} tokens long, {short}; {fix}{hint}")


def read_prompts(cfg: DictConfig, block_size: int | None = None) -> Iterator[str]:
    """The prompt (prompt or prompt_file), or in interactive mode each line of stdin until an empty
    one, asked for with `> ` on stderr when stdin is a terminal (stdout keeps only the text)."""
    if not cfg.interactive:
        yield read_prompt(cfg, block_size)
        return
    ask = sys.stdin.isatty()
    while True:
        if ask:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if ask and not line:  # end of input (Ctrl-D): end the prompt's line
            print(file=sys.stderr)
        prompt = line.rstrip("\n")
        if not prompt:
            return
        yield prompt


class PrintableText:
    """A text stream that writes everything as `printable` makes it (newlines and tabs kept), so
    that a control character or an escape sequence from a checkpoint's vocabulary, or from a
    prompt file, is shown as its escape instead of acting on the terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text, None, keep="\n\t"))

    def flush(self) -> None:
        self.stream.flush()


def run(cfg: DictConfig) -> None:
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/last.ckpt")
    check_counts(cfg)
    sampling_config(cfg)  # validate before the (slower) checkpoint load
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    quantize = cfg.get("quantize")
    device = pick_device(device_for(quantize, cfg.device))
    quantize = check_quantize(quantize, device)
    loaded = load_model(ckpt, device)
    if context(cfg) is not None and hasattr(loaded.model, "check_length"):
        loaded.model.check_length(context(cfg))  # learned positions refuse a longer window before any output
    n_params = loaded.model.num_params()  # counted before quantizing, which hides weights in packed buffers
    loaded.model = quantize_model(loaded.model, quantize)
    with using_threads(cfg.get("threads", "auto"), n_params, max(cfg.num_samples, cfg.num_beams)) as threads:
        print(
            f"[minigpt] checkpoint {printable(loaded.path)} | {n_params:,} parameters{' (int8)' if quantize else ''} | "
            f"block {loaded.model.config.block_size}{f' | context {context(cfg)}' if context(cfg) else ''} | "
            f"{getattr(loaded.model.config, 'pos_encoding', 'lstm')} | "
            f"device {device}{f' | {threads} thread' + 's' * (threads > 1) if device.type == 'cpu' else ''}",
            file=sys.stderr,
        )
        out = PrintableText(sys.stdout)  # the vocabulary comes from a file: no character of it acts on the terminal
        window = context(cfg) or loaded.model.config.block_size
        for index, prompt in enumerate(read_prompts(cfg, window)):
            start = time.perf_counter()
            try:
                n = complete(loaded, prompt, cfg, device, out, prompt_index=index)
            except MinigptError as e:
                if not cfg.interactive:
                    raise
                print(f"error: {e}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - start
            rate = n / seconds if seconds > 0 else float("inf")
            print(f"[minigpt] {n} tokens in {seconds:.2f} s ({rate:,.0f} tokens/s)", file=sys.stderr)
