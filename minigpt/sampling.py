"""Decoding: greedy, temperature, top-k, top-p, min-p, typical, repetition penalty, beam search.

Every strategy runs on the same `ContextFeeder`, which hands the model either the whole context
(full recompute, as nanoGPT samples) or only the new token with a KV cache. Both follow one
window policy once the text outgrows the context (`context`, default `block_size`): the context
restarts from the most recent `keep` tokens (default `context // 2`), which are prefilled once, and
then grows again. A context longer than `block_size` works for the position encodings that compute
any position (sinusoidal, RoPE, ALiBi, none; `GPT.check_length` refuses learned positions).

Why not slide the cache by one token? Cached keys of layer 2 and up were computed from hidden
states that attended to the tokens now dropped, so a rolled cache is not the model's output on
the shorter window (it drifts for every position encoding, relative ones included). Restarting
keeps cached decoding exact and costs one prefill per `context - keep` tokens. `keep = context`
gives nanoGPT's sliding window exactly, at the price of a prefill for every token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from minigpt.errors import ConfigError
from minigpt.model import GPT
from minigpt.schema import check_fields, option, problem, shown


@dataclass
class SamplingConfig:
    """How to pick the next token from the logits. temperature=0 means greedy."""

    temperature: float = option(1.0, doc="sampling temperature", low=0, hint="0 = greedy")
    top_k: int | None = option(None, doc="keep the k most likely tokens", low=1, hint="null = off")
    top_p: float | None = option(
        None, doc="nucleus: keep the most likely tokens up to this probability mass", above=0, high=1, hint="null = off"
    )
    min_p: float | None = option(
        None, doc="keep tokens at least this times as likely as the most likely", above=0, high=1, hint="null = off"
    )
    typical_p: float | None = option(
        None,
        doc="typical sampling: keep this mass of the most typical tokens",
        above=0,
        high=1,
        hint="null = off",
    )
    repetition_penalty: float = option(
        1.0, doc="make tokens already in the text less likely (CTRL's penalty)", above=0, hint="1 = off"
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# --------------------------------------------------------------------------- logit processors


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): make every token already in `seen` (B, n) less likely,
    dividing a positive logit by `penalty` and multiplying a negative one."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row."""
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
    probabilities sum to at least p."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = F.softmax(sorted_logits, dim=-1)
    # mass of the tokens strictly before each one; a token is needed while that is still < p
    before = probs.cumsum(dim=-1) - probs
    drop_sorted = before >= p
    drop_sorted[..., 0] = False  # the most likely token always stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Min-p: keep tokens whose probability is at least p times that of the most likely one."""
    probs = F.softmax(logits, dim=-1)
    threshold = p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, float("-inf"))


def filter_typical(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2023): keep the tokens whose surprisal is closest
    to the distribution's entropy, up to a mass of p; ties with the last one kept all stay."""
    log_probs = F.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * torch.nan_to_num(log_probs, neginf=0.0)).sum(-1, keepdim=True)
    deviation = (-log_probs - entropy).abs()
    sorted_dev, order = torch.sort(deviation, dim=-1)
    sorted_probs = probs.gather(-1, order)
    # a token is needed while the mass before it is still < p (the most typical one always is);
    # every token as typical as the last needed one stays too, so a tie is never split by index
    needed = (sorted_probs.cumsum(-1) - sorted_probs < p).sum(-1, keepdim=True).clamp(min=1)
    threshold = sorted_dev.gather(-1, needed - 1)
    return logits.masked_fill(deviation > threshold, float("-inf"))


def process_logits(logits: torch.Tensor, cfg: SamplingConfig, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the penalty, temperature and truncations of `cfg` to next-token logits (B, V)."""
    logits = logits.float()
    if seen is not None and cfg.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
    if cfg.greedy:
        return logits
    # shift the maximum to 0 before dividing: softmax is unchanged, and a tiny temperature
    # (even one that rounds to 0 in float32) then sends the other logits to -inf instead of
    # overflowing the largest one to inf; the maxima stay 0 rather than 0/0
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    logits = torch.where(shifted == 0, 0.0, shifted / cfg.temperature)
    if cfg.top_k is not None:
        logits = filter_top_k(logits, cfg.top_k)
    if cfg.top_p is not None and cfg.top_p < 1.0:
        logits = filter_top_p(logits, cfg.top_p)
    if cfg.min_p is not None:
        logits = filter_min_p(logits, cfg.min_p)
    if cfg.typical_p is not None and cfg.typical_p < 1.0:
        logits = filter_typical(logits, cfg.typical_p)
    return logits


def pick_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose one token id per row from processed logits (B, V) -> (B,)."""
    if cfg.greedy:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --------------------------------------------------------------------------- the context


class ContextFeeder:
    """Holds the growing sequences (B, n) and returns the model's next-token logits for them,
    by full recompute (`use_cache=False`) or incrementally with a KV cache, over a window of at
    most `context` tokens (None: the model's block_size)."""

    def __init__(
        self, model: GPT, ids: torch.Tensor, use_cache: bool = True, keep: int | None = None, context: int | None = None
    ) -> None:
        self.model = model
        self.context = model.config.block_size if context is None else context  # the window's length
        if words := problem(self.context, int, {"low": 1}):  # what generate's `context` option declares
            raise ConfigError(f"context must be {words} (or null), got {shown(context)}; null = block_size")
        if hasattr(model, "check_length"):  # a learned position table refuses a longer window here, at once
            model.check_length(self.context)
        self.keep = self.context // 2 if keep is None else keep
        if not 1 <= self.keep <= self.context:
            raise ConfigError(f"window_keep must be between 1 and the context of {self.context}, got {keep}")
        self.seq = ids
        self.ctx_start = max(0, ids.size(1) - self.context)  # first token of the window
        # a model without a KV cache (the LSTM baseline) is always run by full recompute
        self.cache = model.new_cache(self.context) if use_cache and hasattr(model, "new_cache") else None
        self.cache_start = self.cache_end = self.ctx_start  # seq[cache_start:cache_end] is cached

    def _advance_window(self) -> None:
        n = self.seq.size(1)
        if n - self.ctx_start > self.context:
            self.ctx_start = n - self.keep

    @torch.inference_mode()  # cheaper than no_grad per call; what it returns is used read-only
    def logits(self) -> torch.Tensor:
        """Next-token logits (B, V) given everything in `seq`."""
        self._advance_window()
        n = self.seq.size(1)
        if self.cache is None:
            return self.model(self.seq[:, self.ctx_start : n])[:, -1]
        if self.ctx_start > self.cache_start:  # the window moved: prefill it afresh
            self.cache.reset()
            self.cache_start = self.cache_end = self.ctx_start
        new = self.seq[:, self.cache_end : n]
        self.cache_end = n
        return self.model(new, cache=self.cache)[:, -1]

    def append(self, next_ids: torch.Tensor) -> None:
        self.seq = torch.cat([self.seq, next_ids[:, None]], dim=1)

    def reorder(self, index: torch.Tensor) -> None:
        self.seq = self.seq.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)


# --------------------------------------------------------------------------- decoding loops


@torch.no_grad()
def stream_tokens(
    model: GPT,
    ids: torch.Tensor,
    max_new_tokens: int,
    cfg: SamplingConfig,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    keep: int | None = None,
    context: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row (B,), one step at a time, for `max_new_tokens` steps,
    each conditioned on at most `context` tokens (None: block_size)."""
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if ids.size(1) == 0:
        raise ConfigError("the prompt is empty; give at least one character")
    feeder = ContextFeeder(model, ids, use_cache, keep, context)
    for _ in range(max_new_tokens):
        logits = process_logits(feeder.logits(), cfg, feeder.seq)
        nxt = pick_next(logits, cfg, generator)
        feeder.append(nxt)
        yield nxt


@torch.no_grad()
def generate(
    model: GPT,
    ids: torch.Tensor,
    max_new_tokens: int,
    cfg: SamplingConfig | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    keep: int | None = None,
    context: int | None = None,
) -> torch.Tensor:
    """Prompt ids (B, T0) -> ids (B, T0 + max_new_tokens)."""
    cfg = cfg or SamplingConfig()
    new = list(stream_tokens(model, ids, max_new_tokens, cfg, use_cache, generator, keep, context))
    return torch.cat([ids, torch.stack(new, dim=1)], dim=1) if new else ids


@dataclass
class Beam:
    """A finished or surviving hypothesis of beam search."""

    ids: torch.Tensor  # (T,) new tokens only
    logprob: float
    score: float = field(default=0.0)


def check_beam_search(ids: torch.Tensor, max_new_tokens: int, num_beams: int) -> None:
    """Refuse what beam search cannot do, with one clear line."""
    if num_beams < 1:
        raise ConfigError(f"num_beams must be >= 1, got {num_beams}")
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if ids.size(0) != 1:
        raise ConfigError("beam search takes one prompt at a time")


@torch.no_grad()
def beam_search(
    model: GPT,
    ids: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    length_penalty: float = 1.0,
    use_cache: bool = True,
    is_finished: Callable[[torch.Tensor], bool] | None = None,
    keep: int | None = None,
    context: int | None = None,
) -> list[Beam]:
    """Keep the `num_beams` continuations of highest total log-probability; return them best first.

    Scores are normalised by length ** length_penalty (Wu et al. 2016 use a similar term), which
    matters when hypotheses stop early through `is_finished` (e.g. at a stop string).
    """
    check_beam_search(ids, max_new_tokens, num_beams)
    prompt_len = ids.size(1)
    feeder = ContextFeeder(model, ids, use_cache, keep, context)
    scores = torch.zeros(1, device=ids.device)  # total log-prob of each live beam
    finished: list[Beam] = []

    def normalised(logprob: float, length: int) -> float:
        return logprob / (max(length, 1) ** length_penalty)

    for _ in range(max_new_tokens):
        logp = F.log_softmax(feeder.logits().float(), dim=-1)  # (beams, V)
        V = logp.size(-1)
        candidates = (scores[:, None] + logp).view(-1)
        top = torch.topk(candidates, min(2 * num_beams, candidates.numel()))
        keep_rows, keep_tokens, keep_scores = [], [], []
        for value, flat in zip(top.values.tolist(), top.indices.tolist()):
            row, token = divmod(flat, V)
            new_ids = torch.cat([feeder.seq[row, prompt_len:], torch.tensor([token], device=ids.device)])
            if is_finished is not None and is_finished(new_ids):
                finished.append(Beam(new_ids, value, normalised(value, len(new_ids))))
            else:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(value)
            if len(keep_rows) == num_beams:
                break
        if len(finished) >= num_beams or not keep_rows:
            break
        index = torch.tensor(keep_rows, device=ids.device)
        feeder.reorder(index)
        feeder.append(torch.tensor(keep_tokens, device=ids.device))
        scores = torch.tensor(keep_scores, device=ids.device)
    if len(finished) < num_beams:  # the live beams compete with the finished ones
        length = feeder.seq.size(1) - prompt_len
        finished += [Beam(feeder.seq[i, prompt_len:], s, normalised(s, length)) for i, s in enumerate(scores.tolist())]
    return sorted(finished, key=lambda b: b.score, reverse=True)[:num_beams]


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A seeded generator for reproducible sampling, or None to use the global RNG."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def stop_index(text: str, stops: list[str]) -> int | None:
    """Index just past the earliest complete stop string in `text`, or None."""
    ends = [text.find(s) + len(s) for s in stops if s and s in text]
    return min(ends) if ends else None


def tokens_per_second(n_tokens: int, seconds: float) -> float:
    return n_tokens / seconds if seconds > 0 else math.inf
