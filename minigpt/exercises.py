"""The notebooks' exercises: for each function a learner writes, minigpt's own code it must agree
with and the random inputs it is tried on.

`minigpt.notebook.check(fn, name)` runs one in a notebook; tests/test_notebooks.py runs every
solution in notebooks/solutions/ through the same `Exercise.run`, so an exercise cannot rot when
the package changes. Each entry's key is the name of the function the learner fills in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from minigpt import probes
from minigpt.analysis import report
from minigpt.analysis.ablation import Part, ablated
from minigpt.data.corpus import FixedWindows
from minigpt.model import GPT as _GPT
from minigpt.model import (
    MLP,
    Block,
    CausalSelfAttention,
    Context,
    GPTConfig,
    alibi_slopes,
    apply_rope,
    causal_mask,
    make_norm,
    rope_cos_sin,
)
from minigpt.sampling import ContextFeeder, apply_repetition_penalty, filter_min_p
from minigpt.training import symptoms
from minigpt.training.schedules import cosine

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Exercise:
    """A function to write (`name`), minigpt's `reference` with the same signature, and `inputs`,
    which draws one trial's arguments from a generator."""

    notebook: str
    reference: Callable
    reference_name: str
    inputs: Callable[[torch.Generator], tuple]
    hint: str
    trials: int = 5

    def run(self, fn: Callable) -> str | None:
        """None when `fn` agrees with the reference on every trial, else what differed first.
        NotImplementedError from an unfinished skeleton propagates to the caller."""
        gen = torch.Generator().manual_seed(0)
        for trial in range(self.trials):
            args = self.inputs(gen)
            expected = self.reference(*args)
            got = fn(*args)
            problem = differ(got, expected)
            if problem is not None:
                return f"trial {trial + 1} of {self.trials}: {problem}"
        return None


def differ(got: Any, expected: Any, where: str = "the result") -> str | None:
    """What differs between `got` and `expected` (tensors within float tolerance), or None."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where} is a {type(got).__name__}, expected a tensor"
        if got.shape != expected.shape:
            return f"{where} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if not torch.allclose(got.float(), expected.float(), atol=1e-5, rtol=1e-4, equal_nan=True):
            gap = (got.float() - expected.float()).abs().nan_to_num(float("inf")).max().item()
            return f"{where} differs from minigpt's by up to {gap:.3g}"
        return None
    if isinstance(expected, tuple | list):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            return f"{where} should be a sequence of {len(expected)} items, got {got!r:.80}"
        for i, (g, e) in enumerate(zip(got, expected)):
            if (problem := differ(g, e, f"item {i} of {where}")) is not None:
                return problem
        return None
    if isinstance(expected, float):
        ok = isinstance(got, int | float) and (got == expected or abs(got - expected) <= 1e-5 + 1e-4 * abs(expected))
        return None if ok else f"{where} is {got!r}, expected {expected:.6g}"
    return None if got == expected else f"{where} is {got!r:.80}, expected {expected!r:.80}"


def _int(gen: torch.Generator, low: int, high: int) -> int:
    """A random integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def _randomised(module: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    """`module` in eval mode with every parameter redrawn from `gen` (so each trial differs)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


def _config(gen: torch.Generator, n_head: int, T: int, **kw: Any) -> GPTConfig:
    return GPTConfig(vocab_size=10, block_size=T, n_layer=1, n_head=n_head, n_embd=n_head * _int(gen, 2, 6), **kw)


# --------------------------------------------------------------------------- 01_attention


def _one_head(gen: torch.Generator) -> tuple:
    T = _int(gen, 2, 9)
    attn = _randomised(CausalSelfAttention(_config(gen, 1, T, attn_impl="manual"), 0), gen)
    return torch.randn(2, T, attn.n_embd, generator=gen), attn


def _nothing_masked(x: torch.Tensor, attn: CausalSelfAttention) -> torch.Tensor:
    T = x.size(1)
    return attn(x, Context(bias=torch.zeros(1, T, T)))[0]  # a bias of zeros hides nothing: every key is seen


# --------------------------------------------------------------------------- 02_multi_head_and_block


def _heads(gen: torch.Generator) -> tuple:
    T = _int(gen, 2, 9)
    attn = _randomised(CausalSelfAttention(_config(gen, [1, 2, 4][_int(gen, 0, 2)], T), 0), gen)
    return torch.randn(2, T, attn.n_embd, generator=gen), attn


def _mlp(gen: torch.Generator) -> tuple:
    activation = ["gelu", "gelu_tanh", "relu2"][_int(gen, 0, 2)]
    mlp = _randomised(MLP(_config(gen, 2, 4, activation=activation)), gen)
    return torch.randn(2, 5, mlp.c_fc.in_features, generator=gen), mlp


def _block(gen: torch.Generator) -> tuple:
    residual, norm = bool(_int(gen, 0, 1)), ["layernorm", "rmsnorm", "none"][_int(gen, 0, 2)]
    T = _int(gen, 2, 9)
    block = _randomised(Block(_config(gen, 2, T, residual=residual, norm=norm), 0), gen)
    return torch.randn(2, T, block.attn.n_embd, generator=gen), block


def _norm(gen: torch.Generator) -> tuple:
    norm = make_norm(_config(gen, 2, 4, norm=["layernorm", "rmsnorm"][_int(gen, 0, 1)]))
    return torch.randn(3, 5, norm.weight.numel(), generator=gen) * 3 + 1, _randomised(norm, gen)


# --------------------------------------------------------------------------- 03_position


def _rope_inputs(gen: torch.Generator) -> tuple:
    T, hs = _int(gen, 1, 12), 2 * _int(gen, 1, 8)
    start = _int(gen, 0, 20)  # positions after a cache of `start` tokens
    return torch.randn(2, 3, T, hs, generator=gen), torch.arange(start, start + T)


def _rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return apply_rope(x, *rope_cos_sin(positions, x.size(-1), 10000.0))


def _alibi_inputs(gen: torch.Generator) -> tuple:
    return _int(gen, 1, 6), _int(gen, 0, 6), _int(gen, 1, 12)


def _alibi_bias(T: int, past: int, n_head: int) -> torch.Tensor:
    model = _GPT(
        GPTConfig(vocab_size=10, block_size=T + past, n_layer=1, n_head=n_head, n_embd=4 * n_head, pos_encoding="alibi")
    )
    return model.attention_bias(T, past, True, CPU)


# --------------------------------------------------------------------------- 04_training


def _logits_targets(gen: torch.Generator) -> tuple:
    B, T, V = _int(gen, 1, 4), _int(gen, 1, 8), _int(gen, 2, 30)
    return torch.randn(B, T, V, generator=gen) * 3, torch.randint(V, (B, T), generator=gen)


def _project_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))  # as LitGPT._step


def _schedule_inputs(gen: torch.Generator) -> tuple:
    total, warmup = _int(gen, 20, 200), _int(gen, 1, 19)
    return _int(gen, 0, total), total, warmup, [0.0, 0.1, 0.5][_int(gen, 0, 2)]


def _cosine_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return float(cosine(optimizer, total_steps, warmup_steps, min_lr_ratio).lr_lambdas[0](step))


def _windows_inputs(gen: torch.Generator) -> tuple:
    return torch.randint(65, (_int(gen, 10, 60),), generator=gen), _int(gen, 1, 9)


def _fixed_windows(data: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows = FixedWindows(data, block_size)
    xs, ys = zip(*(windows[i] for i in range(len(windows))))
    return torch.stack(xs), torch.stack(ys)


# --------------------------------------------------------------------------- 05_generation


def _probs_inputs(gen: torch.Generator) -> tuple:
    return torch.randn(_int(gen, 1, 3), 40, generator=gen) * 2, [0.05, 0.1, 0.3][_int(gen, 0, 2)]


def _penalty_inputs(gen: torch.Generator) -> tuple:
    logits = torch.randn(2, 20, generator=gen) * 2
    return logits, torch.randint(20, (2, _int(gen, 1, 8)), generator=gen), [1.0, 1.3, 2.0][_int(gen, 0, 2)]


def _window_inputs(gen: torch.Generator) -> tuple:
    block_size = _int(gen, 4, 16)
    return _int(gen, 1, block_size + 3), _int(gen, 1, 3 * block_size), block_size, _int(gen, 1, block_size)


class _ZeroLogits(torch.nn.Module):
    """A language model of `block_size` whose every logit is 0: ContextFeeder's window depends on
    block_size only, and a real GPT would make this check hundreds of forward passes slower."""

    def __init__(self, block_size: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(ids.size(0), ids.size(1), 1)


def _context_starts(prompt_len: int, n_new: int, block_size: int, keep: int) -> list[int]:
    """Where sampling's context begins for each new token, as minigpt's ContextFeeder moves it."""
    feeder = ContextFeeder(_ZeroLogits(block_size), torch.zeros(1, prompt_len, dtype=torch.long), False, keep)
    starts = []
    for _ in range(n_new):
        feeder.logits()
        starts.append(feeder.ctx_start)
        feeder.append(torch.zeros(1, dtype=torch.long))
    return starts


# --------------------------------------------------------------------------- 06_experiments


def _jobs(gen: torch.Generator) -> tuple:
    keys = ["model.pos_encoding", "seed", "optim.lr", "trainer.max_steps"]
    fixed = {k: str(_int(gen, 0, 2)) for k in keys if _int(gen, 0, 1)}
    jobs = []
    for j in range(_int(gen, 1, 4)):
        overrides = dict(fixed)
        overrides["seed"] = str(_int(gen, 0, 1))
        overrides["optim.lr"] = ["1e-3", "3e-3"][_int(gen, 0, 1)]
        jobs.append({"job": str(j), "overrides": overrides})
    return (jobs,)


def _label_inputs(gen: torch.Generator) -> tuple:
    (jobs,) = _jobs(gen)
    keys = report.swept_keys(jobs) + (["absent.key"] if _int(gen, 0, 1) else [])
    return jobs[0], keys if _int(gen, 0, 3) else []


def _curve_inputs(gen: torch.Generator) -> tuple:
    losses = (4.0 - torch.rand(_int(gen, 1, 12), generator=gen).cumsum(0) * 0.4).tolist()
    return [(100 * (i + 1), v) for i, v in enumerate(losses)], 2.0 + float(torch.rand(1, generator=gen)) * 2


def _first_step_below(curve: list[tuple[int, float]], value: float) -> int | None:
    return next((step for step, v in curve if v < value), None)


# --------------------------------------------------------------------------- diagnostics


def _maps(gen: torch.Generator) -> tuple:
    T = _int(gen, 2, 10)
    scores = torch.randn(_int(gen, 1, 4), _int(gen, 1, 4), T, T, generator=gen) * 2
    layers = scores.masked_fill(~causal_mask(T, T, CPU), float("-inf")).softmax(-1)
    return (list(layers),)


def _states(gen: torch.Generator) -> tuple:
    T, C = _int(gen, 2, 10), _int(gen, 2, 16)
    states = [torch.randn(T, C, generator=gen) * _int(gen, 1, 4) for _ in range(_int(gen, 1, 4))]
    if _int(gen, 0, 1):  # a collapsed state: the same vector at every position
        states.append(torch.randn(1, C, generator=gen).expand(T, C).clone())
    return (states,)


def _logits(gen: torch.Generator) -> tuple:
    return (torch.randn(_int(gen, 1, 3), _int(gen, 1, 6), 30, generator=gen) * _int(gen, 1, 5),)


# --------------------------------------------------------------------------- 07_heads


def _one_layer_maps(gen: torch.Generator, T: int | None = None) -> torch.Tensor:
    """Attention weights (B, nh, T, T) of one layer: causal rows that sum to 1."""
    T = T or _int(gen, 3, 10)
    scores = torch.randn(_int(gen, 1, 3), _int(gen, 1, 4), T, T, generator=gen) * 2
    return scores.masked_fill(~causal_mask(T, T, CPU), float("-inf")).softmax(-1)


def _newline_inputs(gen: torch.Generator) -> tuple:
    maps = _one_layer_maps(gen)
    B, _, T, _ = maps.shape
    return maps, torch.rand(B, T, generator=gen) < 0.3


def _induction_inputs(gen: torch.Generator) -> tuple:
    period = _int(gen, 2, 6)
    return _one_layer_maps(gen, 2 * period), period


def _small_gpt(gen: torch.Generator) -> _GPT:
    n_head = _int(gen, 1, 3)
    cfg = GPTConfig(vocab_size=12, block_size=8, n_layer=2, n_head=n_head, n_embd=n_head * _int(gen, 2, 4))
    return _randomised(_GPT(cfg), gen)


def _ablation_inputs(gen: torch.Generator) -> tuple:
    model = _small_gpt(gen)
    c = model.config
    ids = torch.randint(c.vocab_size, (2, _int(gen, 2, c.block_size)), generator=gen)
    return model, ids, _int(gen, 0, c.n_layer - 1), _int(gen, 0, c.n_head - 1)


def _ablated_logits(model: _GPT, ids: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """The logits with one head's output zeroed, through minigpt's ablation hooks."""
    with ablated(model, [Part("head", layer, head)]), torch.no_grad():
        return model(ids)


def _lens_inputs(gen: torch.Generator) -> tuple:
    model = _small_gpt(gen)
    return model, torch.randn(2, _int(gen, 1, 8), model.config.n_embd, generator=gen)


def _icl_inputs(gen: torch.Generator) -> tuple:
    return (torch.rand(_int(gen, 2, 600), generator=gen) * 4,)


# --------------------------------------------------------------------------- 08_debugging


def _losses(gen: torch.Generator) -> tuple:
    """A noisy falling loss curve, sometimes ending in a jump (or a NaN), and a spike factor."""
    n = _int(gen, 1, 30)
    curve = (4.0 * torch.exp(-torch.arange(n) / 10.0) + 0.1 * torch.rand(n, generator=gen) + 1.5).tolist()
    end = _int(gen, 0, 3)
    if end == 1:
        curve[-1] *= 1 + 2 * float(torch.rand(1, generator=gen))
    elif end == 2:
        curve[-1] = float("nan")
    return curve, 1.2 + float(torch.rand(1, generator=gen))


def _sharp_maps(gen: torch.Generator) -> tuple:
    """Attention maps of a few layers, some rows near one-hot, with a min_pos and a threshold."""
    T, layers = _int(gen, 4, 12), _int(gen, 1, 3)
    scores = torch.randn(layers, 2, 2, T, T, generator=gen) * (1 + 20 * torch.rand(layers, 1, 1, 1, 1, generator=gen))
    causal = torch.ones(T, T).tril().bool()
    maps = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    return list(maps), _int(gen, 0, T - 1), 0.9 + 0.09 * float(torch.rand(1, generator=gen))


def _looping_text(gen: torch.Generator) -> tuple:
    """Text that may end in a loop: a random prefix and a random piece repeated 0 to 8 times."""
    letters = "abc de"
    prefix = "".join(letters[_int(gen, 0, 5)] for _ in range(_int(gen, 0, 20)))
    piece = "".join(letters[_int(gen, 0, 5)] for _ in range(_int(gen, 1, 5)))
    return prefix + piece * _int(gen, 0, 8), _int(gen, 1, 8)


EXERCISES: dict[str, Exercise] = {
    # 01_attention
    "mask_by_hand": Exercise(
        "01_attention",
        lambda T, S: causal_mask(T, S, CPU),
        "minigpt.model.causal_mask",
        lambda g: (lambda T: (T, T + _int(g, 0, 4)))(_int(g, 1, 8)),
        "T new queries follow S - T cached keys: query i is at position S - T + i and may see keys 0 .. S - T + i",
    ),
    "head_weights": Exercise(
        "01_attention",
        lambda x, attn: attn(x, Context(need_weights=True))[1],
        "CausalSelfAttention(x, Context(need_weights=True))",
        _one_head,
        "q, k, v = attn.c_attn(x).split(C, dim=-1); multiply the scores by attn.scale, mask the future with "
        "-inf, softmax over the last dimension; return (B, 1, T, T)",
    ),
    "attend_everywhere": Exercise(
        "01_attention",
        _nothing_masked,
        "CausalSelfAttention given an all-zero bias (no mask)",
        _one_head,
        "the same as the causal head, without masked_fill, and through attn.c_proj at the end",
    ),
    # 02_multi_head_and_block
    "multi_head_attention": Exercise(
        "02_multi_head_and_block",
        lambda x, attn: attn(x)[0],
        "CausalSelfAttention",
        _heads,
        "split each of q, k, v with .view(B, T, nh, hs).transpose(1, 2), attend with the causal mask, merge "
        "with .transpose(1, 2).reshape(B, T, C), then attn.c_proj",
    ),
    "mlp_by_hand": Exercise(
        "02_multi_head_and_block",
        lambda x, mlp: mlp(x),
        "minigpt.model.MLP",
        _mlp,
        "mlp.activation is 'gelu', 'gelu_tanh' (F.gelu(..., approximate='tanh')) or 'relu2' (relu(x) ** 2)",
    ),
    "norm_by_hand": Exercise(
        "02_multi_head_and_block",
        lambda x, norm: norm(x),
        "make_norm(cfg): nn.LayerNorm or nn.RMSNorm",
        _norm,
        "LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias, var without Bessel's correction; "
        "RMSNorm: x / sqrt(mean(x**2) + eps) * weight, with eps = torch.finfo(x.dtype).eps when norm.eps is None",
    ),
    "block_by_hand": Exercise(
        "02_multi_head_and_block",
        lambda x, block: block(x)[0],
        "minigpt.model.Block",
        _block,
        "x = x + block.attn(block.ln_1(x))[0], then x + block.mlp(block.ln_2(x)); "
        "when block.residual is False the additions go",
    ),
    # 03_position
    "rope_complex": Exercise(
        "03_position",
        _rope,
        "apply_rope with rope_cos_sin(positions, hs, 10000.0)",
        _rope_inputs,
        "torch.view_as_complex(x.reshape(..., hs // 2, 2)) pairs dimensions (0, 1), (2, 3), ...; multiply by "
        "torch.polar(ones, angle) with angle = position * 10000 ** (-2i / hs), then view_as_real and flatten",
    ),
    "slopes_by_hand": Exercise(
        "03_position",
        alibi_slopes,
        "minigpt.model.alibi_slopes",
        lambda g: (_int(g, 1, 12),),
        "for n heads not a power of two: the slopes of the closest power of two below n, then every "
        "other slope of twice that power, as many as are missing",
    ),
    "alibi_bias": Exercise(
        "03_position",
        _alibi_bias,
        "GPT.attention_bias(T, past, True, cpu) with pos_encoding='alibi'",
        _alibi_inputs,
        "query i sits at position past + i, key j at j; the penalty is slope * (past + i - j), and keys "
        "after the query get -inf; the result is (n_head, T, past + T)",
    ),
    # 04_training
    "loss_by_hand": Exercise(
        "04_training",
        _project_loss,
        "F.cross_entropy over every position, as LitGPT._step computes the loss",
        _logits_targets,
        "log_softmax over the vocabulary, pick each target's log-probability with gather, average the "
        "negatives over batch and time",
    ),
    "cosine_factor": Exercise(
        "04_training",
        _cosine_factor,
        "minigpt.training.schedules.cosine",
        _schedule_inputs,
        "warmup: (step + 1) / warmup_steps; then progress = (step - warmup) / (total - warmup), capped at 1, "
        "and min_ratio + (1 - min_ratio) * (1 + cos(pi * progress)) / 2",
        trials=20,
    ),
    "windows_by_hand": Exercise(
        "04_training",
        _fixed_windows,
        "minigpt.data.corpus.FixedWindows",
        _windows_inputs,
        "(len(data) - 1) // block_size windows start at 0, block_size, 2 * block_size, ...; y is x shifted by one",
    ),
    # 05_generation
    "min_p_logits": Exercise(
        "05_generation",
        filter_min_p,
        "minigpt.sampling.filter_min_p",
        _probs_inputs,
        "keep a logit where its probability is at least p times the row's largest probability; the others become -inf",
    ),
    "penalise_repeats": Exercise(
        "05_generation",
        apply_repetition_penalty,
        "minigpt.sampling.apply_repetition_penalty",
        _penalty_inputs,
        "for every id in seen: a positive logit is divided by the penalty, a negative one multiplied; "
        "logits.gather and logits.scatter work row by row",
    ),
    "context_starts": Exercise(
        "05_generation",
        _context_starts,
        "minigpt.sampling.ContextFeeder",
        _window_inputs,
        "the context starts at max(0, prompt_len - block_size); before each token, when the text is longer than "
        "block_size past that start, it restarts at len(text) - keep",
        trials=20,
    ),
    # 06_experiments
    "swept_keys_by_hand": Exercise(
        "06_experiments",
        report.swept_keys,
        "minigpt.analysis.report.swept_keys",
        _jobs,
        "the keys, in order of first appearance, whose values differ between jobs (a missing key counts as "
        "a value); when none differ, all the keys",
        trials=20,
    ),
    "job_label": Exercise(
        "06_experiments",
        report.label,
        "minigpt.analysis.report.label",
        _label_inputs,
        "'key=value' joined by ', ', '-' for a key the job lacks, and the job's name when keys is empty",
        trials=20,
    ),
    "first_step_below": Exercise(
        "06_experiments",
        _first_step_below,
        "the step notebook 4 reads off val/loss (the first point below the value)",
        _curve_inputs,
        "walk the (step, value) points in order; None when no value is below",
        trials=20,
    ),
    # diagnostics
    "entropy_by_hand": Exercise(
        "diagnostics",
        probes.entropy,
        "minigpt.probes.entropy",
        _logits,
        "p = softmax(logits), entropy = -(p * log p).sum(-1); log_softmax avoids log(0)",
    ),
    "attention_entropy_by_hand": Exercise(
        "diagnostics",
        probes.attention_entropy,
        "minigpt.probes.attention_entropy",
        _maps,
        "per layer, -(w * log w) summed over keys, then the mean over heads and queries, as a float; "
        "w = 0 contributes 0 (clamp before the log)",
    ),
    "position_spread_by_hand": Exercise(
        "diagnostics",
        probes.position_spread,
        "minigpt.probes.position_spread",
        _states,
        "mean over positions of |x_t - mean_t x| divided by the mean over positions of |x_t|; 0.0 when "
        "the vectors are all zero",
    ),
    # 07_heads
    "previous_score_by_hand": Exercise(
        "07_heads",
        lambda maps: probes.pattern_scores(maps)["previous"],
        "minigpt.probes.pattern_scores(maps)['previous']",
        lambda gen: (_one_layer_maps(gen),),
        "maps[..., t, t - 1] for t = 1 .. T - 1, then the mean over the batch and the queries, per head",
    ),
    "newline_score_by_hand": Exercise(
        "07_heads",
        lambda maps, marked: probes.pattern_scores(maps, {"newline": marked})["newline"],
        "minigpt.probes.pattern_scores(maps, {'newline': marked})['newline']",
        _newline_inputs,
        "per query t, the last marked position j <= t (cummax of where(marked, t, -1)); only queries "
        "with 0 <= j <= t - 2 count; the mean of the weight on j over them, per head (NaN when none)",
    ),
    "induction_score_by_hand": Exercise(
        "07_heads",
        probes.induction_scores,
        "minigpt.probes.induction_scores",
        _induction_inputs,
        "for each query q of the second copy (P .. 2P - 1), the weight on key q - P + 1; the mean over "
        "the batch and those queries, per head",
    ),
    "ablate_head_by_hand": Exercise(
        "07_heads",
        _ablated_logits,
        "minigpt.analysis.ablation.ablated",
        _ablation_inputs,
        "a forward pre-hook on model.transformer.h[layer].attn.c_proj returning its input with the "
        "columns head * head_size .. (head + 1) * head_size set to 0; remove the hook afterwards",
    ),
    "lens_by_hand": Exercise(
        "07_heads",
        probes.lens_logits,
        "minigpt.probes.lens_logits",
        _lens_inputs,
        "the final norm (model.transformer.ln_f), then the unembedding (model.logits); in eval mode",
    ),
    "icl_score_by_hand": Exercise(
        "07_heads",
        probes.icl_score,
        "minigpt.probes.icl_score",
        _icl_inputs,
        "positions round(T * 50 / 512) - 1 and round(T * 500 / 512) - 1 (at least 0), the late loss "
        "minus the early one, as a float",
    ),
    # 08_debugging
    "spike_ratio": Exercise(
        "08_debugging",
        symptoms.loss_spike,
        "minigpt.training.symptoms.loss_spike",
        _losses,
        "fewer than two losses: None; a newest loss that is not finite (math.isfinite): math.inf; else "
        "ratio = losses[-1] / min(losses[:-1]), returned when it is above factor, else None",
        trials=30,
    ),
    "saturation_by_hand": Exercise(
        "08_debugging",
        symptoms.saturation,
        "minigpt.training.symptoms.saturation",
        _sharp_maps,
        "for each map keep the rows w[..., min_pos:, :], take each row's max over the keys, compare with sharp, "
        "and average the booleans as a float",
        trials=20,
    ),
    "repeated_share_by_hand": Exercise(
        "08_debugging",
        symptoms.repeated_share,
        "minigpt.training.symptoms.repeated_share",
        _looping_text,
        "the windows text[i : i + n] for i in range(len(text) - n + 1); 1 - (distinct windows) / (all "
        "windows), as a float; 0.0 when the text is shorter than n",
        trials=40,
    ),
}
