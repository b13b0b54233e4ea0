"""Solutions to the exercises of notebook 5 (05_generation.py); tests/test_notebooks.py checks each."""

import torch


def min_p_logits(logits, p):
    """Min-p on logits (B, V): -inf where a probability is below p times the row's largest."""
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < p * probs.max(-1, keepdim=True).values, float("-inf"))


def penalise_repeats(logits, seen, penalty):
    """CTRL's repetition penalty on logits (B, V) for the ids in seen (B, n)."""
    picked = logits.gather(1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def context_starts(prompt_len, n_new, block_size, keep):
    """For each of n_new tokens, the first position of the context the model reads to pick it."""
    start, n, starts = max(0, prompt_len - block_size), prompt_len, []
    for _ in range(n_new):
        if n - start > block_size:
            start = n - keep
        starts.append(start)
        n += 1
    return starts
