"""Solutions to the exercises of notebooks/diagnostics.py; tests/test_notebooks.py checks each."""


def entropy_by_hand(logits):
    """Entropy (nats) of the next-token distribution at every position: (..., V) -> (...)."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def attention_entropy_by_hand(layers):
    """Per layer (nh, T, T) of attention weights: the mean entropy of its rows, a float."""
    return [float(-(w * w.clamp_min(1e-30).log()).sum(-1).mean()) for w in layers]


def position_spread_by_hand(states):
    """Per state (T, C): mean |x_t - mean x| over mean |x_t|; 0 when every vector is zero."""
    spreads = []
    for x in states:
        size = x.norm(dim=-1).mean()
        spreads.append(float((x - x.mean(0)).norm(dim=-1).mean() / size) if size > 0 else 0.0)
    return spreads
