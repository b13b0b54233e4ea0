"""Solutions to the exercises of notebooks/07_heads.py; tests/test_notebooks.py checks each."""

import torch


def previous_score_by_hand(maps):
    """Per head (nh,): the mean weight a query t >= 1 puts on t - 1, over the batch and queries."""
    t = torch.arange(1, maps.size(-1))
    return maps[..., t, t - 1].mean((0, 2))


def newline_score_by_hand(maps, marked):
    """Per head (nh,): the mean weight on the most recent marked position j, over the queries t
    whose j lies at t - 2 or earlier (NaN when no query has one)."""
    B, nh, T, _ = maps.shape
    t = torch.arange(T)
    last = torch.where(marked, t, -1).cummax(-1).values  # (B, T)
    valid = (last >= 0) & (last <= t - 2)
    on_last = maps.gather(-1, last.clamp(min=0)[:, None, :, None].expand(B, nh, T, 1))[..., 0]
    return (on_last * valid[:, None]).sum((0, 2)) / valid.sum()


def induction_score_by_hand(maps, period):
    """Per head (nh,): the mean weight a query q of the second copy puts on key q - P + 1."""
    q = torch.arange(period, 2 * period)
    return maps[..., q, q - period + 1].mean((0, 2))


def ablate_head_by_hand(model, ids, layer, head):
    """The logits (B, T, V) with the output of one head set to zero by a forward pre-hook."""
    hs = model.config.head_size

    def zero_head(module, args):
        y = args[0].clone()  # (B, T, C): the heads' outputs side by side, before the projection
        y[..., head * hs : (head + 1) * hs] = 0.0
        return (y,)

    handle = model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            return model(ids)
    finally:
        handle.remove()


def lens_by_hand(model, state):
    """A residual-stream state (..., C) read out as the last block's: final norm, unembedding."""
    model.eval()
    with torch.no_grad():
        return model.logits(model.transformer.ln_f(state))


def icl_score_by_hand(losses):
    """The loss at 500/512 of the context minus the loss at 50/512 of it (Olsson et al., 2022)."""
    T = losses.numel()
    early, late = max(0, round(T * 50 / 512) - 1), max(0, round(T * 500 / 512) - 1)
    return float(losses[late] - losses[early])
