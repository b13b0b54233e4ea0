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


def repeated_share_by_hand(text, n):
    """The share of the n-character windows of `text` that already appeared earlier in it."""
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0
