"""Solutions to the exercises of notebook 8 (08_debugging.py); tests/test_notebooks.py checks each."""

import math


def spike_ratio(losses, factor):
    """The newest loss over the lowest before it, when above `factor` (inf for a loss that is not finite); else None."""
    if len(losses) < 2:
        return None
    if not math.isfinite(losses[-1]):
        return math.inf
    ratio = losses[-1] / max(min(losses[:-1]), 1e-12)
    return ratio if ratio > factor else None


def saturation_by_hand(maps, min_pos, sharp):
    """Per layer, the share of rows (queries from `min_pos` on) whose largest weight exceeds `sharp`."""
    return [float((w[..., min_pos:, :].max(-1).values > sharp).float().mean()) for w in maps]


def repeated_tail_by_hand(text, max_period):
    """The share of `text` in the cycle it ends in (a piece of <= max_period characters, >= 3 times)."""
    best = 0
    for period in range(1, min(max_period, len(text) // 3) + 1):
        n = period
        while n < len(text) and text[-n - 1] == text[-n - 1 + period]:
            n += 1
        if n >= 3 * period:
            best = max(best, n)
    return best / max(len(text), 1)
