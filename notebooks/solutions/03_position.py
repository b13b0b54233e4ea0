"""Solutions to the exercises of notebook 3 (03_position.py); tests/test_notebooks.py checks each."""

import math

import torch


def rope_complex(x, positions):
    """RoPE with complex numbers: pair (2i, 2i+1) is one complex number, turned by position * theta_i."""
    hs = x.size(-1)
    theta = 10000.0 ** (-torch.arange(0, hs, 2) / hs)
    angle = positions[:, None].float() * theta[None, :]  # (T, hs/2)
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], hs // 2, 2).contiguous())
    rotated = z * torch.polar(torch.ones_like(angle), angle)
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


def slopes_by_hand(n_head):
    """ALiBi's slopes for any number of heads."""

    def powers(n):
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_head))
    return torch.tensor(powers(closest) + powers(2 * closest)[0::2][: n_head - closest])


def alibi_bias(T, past, n_head):
    """ALiBi's bias (n_head, T, past + T) for T new queries after `past` cached keys."""
    i = torch.arange(past, past + T)[:, None]  # the queries' positions
    j = torch.arange(past + T)[None, :]
    distance = (i - j).float()
    bias = -slopes_by_hand(n_head)[:, None, None] * distance.clamp(min=0)
    return bias.masked_fill(j > i, float("-inf"))
