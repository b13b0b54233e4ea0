"""Solutions to the exercises of notebook 2 (02_multi_head_and_block.py); tests/test_notebooks.py
checks each."""

import math

import torch
import torch.nn.functional as F


def multi_head_attention(x, attn):
    """CausalSelfAttention's output for x (B, T, C), its heads split, attended and merged by hand."""
    B, T, C = x.shape
    nh = attn.n_head
    q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in attn.c_attn(x).split(C, dim=-1))
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // nh)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    y = scores.masked_fill(future, float("-inf")).softmax(-1) @ v  # (B, nh, T, hs)
    return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))


def mlp_by_hand(x, mlp):
    """minigpt's MLP on x, with whichever of its three non-linearities `mlp.activation` names."""
    h = x @ mlp.c_fc.weight.T + mlp.c_fc.bias
    if mlp.activation == "gelu":
        h = F.gelu(h)
    elif mlp.activation == "gelu_tanh":
        h = F.gelu(h, approximate="tanh")
    else:
        h = F.relu(h) ** 2
    return h @ mlp.c_proj.weight.T + mlp.c_proj.bias


def norm_by_hand(x, norm):
    """nn.LayerNorm or nn.RMSNorm over the last dimension of x, with the module's gain (and bias)."""
    if isinstance(norm, torch.nn.LayerNorm):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight


def block_by_hand(x, block):
    """A pre-LN Block: normalise, transform, add (or replace, when block.residual is False)."""
    a = block.attn(block.ln_1(x))[0]
    x = x + a if block.residual else a
    m = block.mlp(block.ln_2(x))
    return x + m if block.residual else m
