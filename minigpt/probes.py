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
