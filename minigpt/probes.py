"""What a model computes, read without changing it: attention weights, the residual stream,
logits and their entropy, and seeded samples. Plain PyTorch (forward hooks, no copies of the
model); the training callbacks, the analysis tools and the notebooks all call these.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from minigpt.model import GPT
from minigpt.sampling import SamplingConfig, generate, make_generator
from minigpt.tokenizer import Tokenizer


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Run the model without dropout or gradients, then give it back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def attention_maps(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every layer for one sequence (T,): a list of (nh, T, T), each row a
    probability distribution over the positions it may see."""
    with eval_mode(model):
        _, weights = model.forward_with_attention(ids[None].to(model_device(model)))
    return [w[0].float().cpu() for w in weights]


def attention_entropy(layers: list[torch.Tensor]) -> list[float]:
    """Mean entropy (nats) of the attention rows of each layer, over heads and positions: 0 when
    every query looks at a single position, log(t + 1) at position t when it looks everywhere."""
    return [float(-(w * w.clamp_min(1e-30).log()).sum(-1).mean()) for w in layers]


def residual_stream(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream (T, C) after the embeddings and after each block, read with forward
    hooks so the model needs no extra code path."""
    states: list[torch.Tensor] = []

    def keep(module, inputs, output):
        states.append((output[0] if isinstance(output, tuple) else output)[0].float().cpu())

    hooks = [model.transformer.drop.register_forward_hook(keep)]
    hooks += [block.register_forward_hook(keep) for block in model.transformer.h]
    try:
        with eval_mode(model):
            model(ids[None].to(model_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return states


def position_spread(states: list[torch.Tensor]) -> list[float]:
    """For each residual-stream state (T, C): how far the positions' vectors lie from their
    mean, relative to their size (mean over t of |x_t - mean x| / mean over t of |x_t|).
    Near 1 the positions carry different information; 0 means every position holds the same
    vector, so the model predicts the same next character everywhere (representation collapse,
    as in the no_residual ablation)."""
    spreads = []
    for x in states:
        x = x.float()
        size = x.norm(dim=-1).mean()
        spreads.append(float((x - x.mean(0)).norm(dim=-1).mean() / size) if size > 0 else 0.0)
    return spreads


def next_token_logits(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """Logits (..., T, V) for ids (..., T)."""
    with eval_mode(model):
        return model(ids.reshape(-1, ids.size(-1)).to(model_device(model))).float().cpu().reshape(*ids.shape, -1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the next-token distribution at every position: (..., V) -> (...)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def sample_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    seed: int | None = None,
) -> str:
    """The prompt and `max_new_tokens` sampled characters; the same seed gives the same text."""
    device = model_device(model)
    ids = tokenizer.encode(prompt or "\n", unknown="skip") or [0]
    with eval_mode(model):
        out = generate(
            model,
            torch.tensor([ids], device=device),
            max_new_tokens,
            SamplingConfig(temperature=temperature),
            generator=make_generator(seed, device),
        )
    return tokenizer.decode(out[0].tolist())


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


# --------------------------------------------------------------------------- what each head does

# the head scores, each a number per layer and head (see `score_sums` for their definitions)
HEAD_SCORES = ("previous", "current", "first", "newline", "space", "distance", "induction")
# the marks whose most recent occurrence a head may look back to: a line's or a word's start
MARKS = {"newline": "\n", "space": " "}


def batch_attention(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every layer for a batch of windows (B, T): a list of (B, nh, T, T)."""
    with eval_mode(model):
        _, weights = model.forward_with_attention(ids.to(model_device(model)))
    return [w.float().cpu() for w in weights]


def score_sums(maps: torch.Tensor, marks: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[torch.Tensor, int]]:
    """Sums (nh,) over the queries of a batch of one layer's attention maps (B, nh, T, T), and
    how many queries each sum covers; `pattern_scores` divides them. Per query t:

    - previous: the weight on t-1, and current: the weight on t itself (queries t >= 1);
    - first: the weight on position 0, the window's first, a common "attention sink" (t >= 2,
      so that it is neither the previous nor the current position);
    - newline, space (one per entry of `marks`, (B, T) booleans): the weight on the most recent
      marked position, over the queries whose last mark lies at t-2 or earlier (so again no
      overlap with the above): a head that finds the start of the line, or of the word;
    - distance: the mean distance t - j of the keys j attended to, a local window's width.
    """
    B, nh, T, _ = maps.shape
    t = torch.arange(T)
    sums = {
        "previous": (maps[..., t[1:], t[:-1]].sum((0, 2)), B * (T - 1)),
        "current": (maps[..., t[1:], t[1:]].sum((0, 2)), B * (T - 1)),
        "first": (maps[..., 2:, 0].sum((0, 2)), B * max(T - 2, 0)),
        "distance": ((maps * (t[:, None] - t).clamp(min=0)).sum(-1)[..., 1:].sum((0, 2)), B * (T - 1)),
    }
    for name, marked in (marks or {}).items():
        last = torch.where(marked.bool(), t, -1).cummax(-1).values  # (B, T): last mark at or before t
        valid = (last >= 0) & (last <= t - 2)
        on_last = maps.gather(-1, last.clamp(min=0)[:, None, :, None].expand(B, nh, T, 1))[..., 0]
        sums[name] = ((on_last * valid[:, None]).sum((0, 2)), int(valid.sum()))
    return sums


def pattern_scores(maps: torch.Tensor, marks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The head scores of `score_sums` for one layer's attention maps (B, nh, T, T): each (nh,),
    NaN where no query qualifies (no mark in the windows)."""
    sums = score_sums(maps, marks)
    return {name: s / c if c else torch.full_like(s, float("nan")) for name, (s, c) in sums.items()}


def repeated_random_ids(vocab_size: int, period: int, n: int, seed: int = 0) -> torch.Tensor:
    """`n` sequences (n, 2 * period) of `period` uniformly random tokens, each repeated twice."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(vocab_size, (n, period), generator=generator)
    return torch.cat([first, first], dim=1)


def induction_scores(maps: torch.Tensor, period: int) -> torch.Tensor:
    """Induction score (Olsson et al., 2022) per head (nh,) from attention maps (B, nh, 2P, 2P)
    of random sequences repeated twice: the weight each token of the second copy (query q)
    puts on the token that followed its earlier occurrence (key q - P + 1), averaged. A head that
    finds "what came after this last time" scores near 1; chance is about 1 / q."""
    q = torch.arange(period, 2 * period)
    return maps[..., q, q - period + 1].mean((0, -1))


def uniform_induction(period: int) -> float:
    """The induction score of a head that attends evenly to every position it may see: the mean
    over the queries q = P .. 2P - 1 of 1 / (q + 1). A score far above it is an induction head."""
    return float((1.0 / torch.arange(period + 1, 2 * period + 1, dtype=torch.float64)).mean())


def head_scores(
    model: GPT, windows: torch.Tensor, marks: dict[str, int] | None = None, n_random: int = 8, batch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Every `HEAD_SCORES` entry as a (n_layer, nh) tensor: the attention-pattern scores on
    `windows` (B, T) of real text (newline and space: attention to the last token of `marks`,
    `mark_ids`, NaN without one), and the induction score on `n_random` repeated random
    sequences of block_size // 2 tokens (seeded, so scores compare across checkpoints and steps)."""
    n_layer, nh = model.config.n_layer, model.config.n_head
    sums = {name: torch.zeros(n_layer, nh) for name in HEAD_SCORES[:-1]}
    counts = {name: torch.zeros(n_layer, 1) for name in HEAD_SCORES[:-1]}
    for chunk in windows.split(batch_size):
        marked = {name: chunk == i for name, i in (marks or {}).items()}
        for layer, maps in enumerate(batch_attention(model, chunk)):
            for name, (s, c) in score_sums(maps, marked).items():
                sums[name][layer] += s
                counts[name][layer] += c
    scores = {name: sums[name] / counts[name] for name in sums}  # 0 / 0 = NaN where no query qualified
    period = model.config.block_size // 2
    random_ids = repeated_random_ids(model.config.vocab_size, period, n_random)
    scores["induction"] = torch.stack([induction_scores(m, period) for m in batch_attention(model, random_ids)])
    return {name: scores[name] for name in HEAD_SCORES}


# --------------------------------------------------------------------------- in-context learning


def position_losses(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Mean cross-entropy (nats) at each position (T,) of predicting windows[:, 1:] from
    windows[:, :-1] (B, T + 1), over the windows: how the loss falls as the context grows."""
    total = torch.zeros(windows.size(1) - 1, dtype=torch.float64)
    with eval_mode(model):
        for chunk in windows.split(batch_size):
            chunk = chunk.to(model_device(model))
            logits = model(chunk[:, :-1]).float()
            total += F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none").sum(0).double().cpu()
    return (total / windows.size(0)).float()


def icl_positions(T: int) -> tuple[int, int]:
    """The early and late positions whose losses the in-context-learning score compares: Olsson
    et al. (2022) take the 50th and the 500th token of a 512-token context; here the same
    fractions of a context of T predictions (0-based indices, at least 0 and at most T - 1)."""
    return max(0, round(T * 50 / 512) - 1), max(0, round(T * 500 / 512) - 1)


def icl_score(losses: torch.Tensor) -> float:
    """The in-context-learning score (Olsson et al., 2022) of per-position losses (T,) from
    `position_losses`: the loss late in the context minus the loss early in it (`icl_positions`).
    Negative when the model predicts better with more context; an induction head makes it drop."""
    early, late = icl_positions(losses.numel())
    return float(losses[late] - losses[early])


def repeated_windows(windows: torch.Tensor, period: int) -> torch.Tensor:
    """The first `period` tokens of each window (B, >= P) written twice: (B, 2P) sequences whose
    second copy a model can predict only by copying from the first, as induction heads do."""
    first = windows[:, :period]
    return torch.cat([first, first], dim=1)


def repeat_losses(losses: torch.Tensor, period: int) -> tuple[float, float]:
    """From the per-position losses (2P - 1,) of sequences repeated twice with period P
    (`repeated_windows`, `repeated_random_ids`): the mean loss on the first copy (tokens 1 to
    P - 1) and on the repeated one (tokens P + 1 to 2P - 1; token P, where the repeat starts,
    cannot be known to repeat)."""
    return float(losses[: period - 1].mean()), float(losses[period:].mean())


# --------------------------------------------------------------------------- composition


def head_qk_ov(model: GPT, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The QK and OV circuits (C, C) of one head (Elhage et al., 2021), acting on the residual
    stream x before the layer's norm: score(x_q, x_k) = x_q^T W_QK x_k and output = W_OV x_v.
    The norm's scale is folded in; biases, the norm's centring and rotary angles are left out."""
    block = model.transformer.h[layer]
    C, hs = model.config.n_embd, model.config.head_size
    gain = getattr(block.ln_1, "weight", None)
    gain = torch.ones(C) if gain is None else gain.detach().float().cpu()
    w_q, w_k, w_v = block.attn.c_attn.weight.detach().float().cpu().split(C, dim=0)  # each (C, C): out x in
    rows = slice(head * hs, (head + 1) * hs)
    q, k, v = (w[rows] * gain for w in (w_q, w_k, w_v))  # (hs, C), reading the normed stream
    w_o = block.attn.c_proj.weight.detach().float().cpu()[:, rows]  # (C, hs)
    return q.T @ k, w_o @ v


def composition_scores(model: GPT, kind: str = "k") -> torch.Tensor:
    """How much each head reads what an earlier head wrote (Elhage et al., 2021), (n_layer, nh,
    n_layer, nh), [later layer, head, earlier layer, head], NaN unless the first is later:
    ||M||_F / (||W_QK||_F ||W_OV||_F) with M = W_QK W_OV (K-composition: the later head's keys
    read the earlier head's output), W_QK^T W_OV (Q: its queries) or W_OV W_OV (V: its values).
    An induction head's keys read a previous-token head's output: a high K-composition."""
    if kind not in ("q", "k", "v"):
        raise ValueError(f"kind must be q, k or v, got {kind!r}")
    n_layer, nh = model.config.n_layer, model.config.n_head
    circuits = [[head_qk_ov(model, i, h) for h in range(nh)] for i in range(n_layer)]
    scores = torch.full((n_layer, nh, n_layer, nh), float("nan"))
    for i in range(n_layer):
        for h in range(nh):
            qk, ov = circuits[i][h]
            reader = {"q": qk.T, "k": qk, "v": ov}[kind]
            for j in range(i):
                for g in range(nh):
                    written = circuits[j][g][1]
                    scores[i, h, j, g] = (reader @ written).norm() / (reader.norm() * written.norm())
    return scores


# --------------------------------------------------------------------------- the logit lens


def residual_states(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream (B, T, C) of windows `ids` (B, T) after the embeddings and after each
    block, on the model's device, read with forward hooks (no copy of the model)."""
    states: list[torch.Tensor] = []

    def keep(module, inputs, output):
        states.append(output[0] if isinstance(output, tuple) else output)

    hooks = [model.transformer.drop.register_forward_hook(keep)]
    hooks += [block.register_forward_hook(keep) for block in model.transformer.h]
    run_hooked(model, ids, hooks)
    return states


def lens_logits(model: GPT, state: torch.Tensor) -> torch.Tensor:
    """The logit lens (nostalgebraist, 2020): a residual-stream state (..., C) read out as if it
    were the last block's, through the final norm and the unembedding: logits (..., V)."""
    with eval_mode(model):
        return model.logits(model.transformer.ln_f(state))


def lens_losses(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> list[float]:
    """Cross-entropy (nats) of predicting windows[:, 1:] from windows[:, :-1] (B, T + 1) read out
    after the embeddings and after each block: n_layer + 1 values, the last the model's own loss."""
    total = torch.zeros(model.config.n_layer + 1, dtype=torch.float64)
    for chunk in windows.split(batch_size):
        targets = chunk[:, 1:].to(model_device(model))
        for i, state in enumerate(residual_states(model, chunk[:, :-1])):
            logits = lens_logits(model, state)
            total[i] += float(F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum"))
    return (total / (windows.size(0) * (windows.size(1) - 1))).tolist()


def text_windows(ids: torch.Tensor, block_size: int, n: int | None = None) -> torch.Tensor:
    """Consecutive windows (n, block_size + 1) of `ids`, inputs and next-token targets, each
    window's last token the next one's first (as validation scores every token once); at most
    `n` of them (None: as many as fit)."""
    count = (ids.numel() - 1) // block_size
    count = count if n is None else min(n, count)
    starts = torch.arange(count)[:, None] * block_size
    return ids.reshape(-1).long()[starts + torch.arange(block_size + 1)]


def lens_points(n_layer: int) -> list[str]:
    """Names of the places the logit lens reads: the embeddings, then the output of each block."""
    return ["embed"] + [f"block{i}" for i in range(n_layer)]


def mark_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The token of each of `MARKS` (newline, space) that the vocabulary has one token for."""
    ids = {name: tokenizer.encode(text, unknown="skip") for name, text in MARKS.items()}
    return {name: i[0] for name, i in ids.items() if len(i) == 1}


def lens_predictions(
    model: GPT, ids: torch.Tensor, batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logit lens of one text (T,) at every position and read-out point (`lens_points`):
    the top prediction's id and probability, and the probability of the token that really
    comes next (NaN at the last position, which has none): three (n_layer + 1, T) tensors.
    Past the context, each position is read in the window of block_size positions ending at it."""
    T, W = ids.numel(), min(ids.numel(), model.config.block_size)
    pieces = [(ids[None, :W], slice(None))]  # the first window, all of its positions
    for chunk in torch.arange(1, T - W + 1).split(batch_size):  # then one window per later position
        pieces.append((ids[chunk[:, None] + torch.arange(W)], slice(W - 1, W)))
    top_id, top_p, actual = [], [], []
    start = 0
    for windows, keep in pieces:
        states = residual_states(model, windows)
        probs = torch.stack([F.softmax(lens_logits(model, s[:, keep]).float(), -1) for s in states])
        probs = probs.flatten(1, 2).cpu()  # (n_layer + 1, positions, V)
        p, i = probs.max(-1)
        top_p.append(p)
        top_id.append(i)
        n = probs.size(1)
        following = ids[start + 1 : start + n + 1].cpu()  # one short at the end of the text
        on_next = torch.full((probs.size(0), n), float("nan"))
        on_next[:, : following.numel()] = probs[:, : following.numel()].gather(
            -1, following.expand(probs.size(0), -1)[..., None]
        )[..., 0]
        actual.append(on_next)
        start += n
    return torch.cat(top_id, 1), torch.cat(top_p, 1), torch.cat(actual, 1)


# --------------------------------------------------------------------------- the MLPs


def mlp_activations(model: GPT, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's MLP units on windows `ids` (B, T): what goes into the non-linearity (the
    output of c_fc) and what comes out of it (the input of c_proj), each (B * T, 4C), read with
    forward hooks so that the model's own activation function is the one measured."""
    pre: list[torch.Tensor] = []
    post: list[torch.Tensor] = []

    def keep_pre(module, inputs, output):
        pre.append(output.flatten(0, -2).float().cpu())

    def keep_post(module, inputs):
        post.append(inputs[0].flatten(0, -2).float().cpu())

    hooks = []
    for block in model.transformer.h:
        hooks.append(block.mlp.c_fc.register_forward_hook(keep_pre))
        hooks.append(block.mlp.c_proj.register_forward_pre_hook(keep_post))
    run_hooked(model, ids, hooks)
    return list(zip(pre, post))


def dead_fraction(pre: torch.Tensor) -> float:
    """The fraction of MLP units (columns of `pre`, (N, units)) whose input to the non-linearity
    is never positive on these N positions: ReLU² then always outputs 0 and GELU at most a small
    negative value (>= -0.17), so the unit passes on almost nothing."""
    return float((pre.max(0).values <= 0).float().mean())


def run_hooked(model: torch.nn.Module, ids: torch.Tensor, hooks: list) -> None:
    """One eval-mode forward of `ids` with forward hooks that record what they see, removed after."""
    try:
        with eval_mode(model):
            model(ids.to(model_device(model)))
    finally:
        for h in hooks:
            h.remove()
