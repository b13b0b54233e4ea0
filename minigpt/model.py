"""The transformer, written out by hand: attention, blocks, position encodings, GPT.

Shapes follow nanoGPT's names: B batch, T new positions, S positions attended to (cached + new),
C = n_embd, nh = n_head, hs = head size = C // nh, V = vocab_size. Plain PyTorch: no Lightning, no
Hydra. The budget recipes' levers (short convolutions, value embeddings, ...) are in
minigpt/levers.py, which extends `GPT` through the methods marked "lever hook".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.errors import ConfigError
from minigpt.schema import check_fields, from_mapping, option

POS_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "none")
ATTN_IMPLS = ("manual", "sdpa")
NORMS = ("layernorm", "rmsnorm", "none")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu2")
# the budget recipes' levers: minigpt/levers.py builds them (build_gpt), the textbook GPT refuses them
LEVERS = ("zero_init_proj", "logit_softcap", "value_embeds", "unet_skips", "short_conv")


@dataclass
class GPTConfig:
    """Everything that defines the network's shape; travels inside every checkpoint."""

    vocab_size: int = option(doc="tokens the model knows; set by the data's tokenizer, not by a config", low=1)
    block_size: int = option(64, doc="the longest context, in tokens", low=1)
    n_layer: int = option(4, doc="transformer blocks", low=1)
    n_head: int = option(4, doc="attention heads per block; n_embd must be divisible by it", low=1)
    n_embd: int = option(128, doc="width of the residual stream", low=1)
    dropout: float = option(0.0, doc="dropout probability (embeddings, attention, residual branches)", low=0, below=1)
    bias: bool = option(True, doc="biases in the linear layers and norms")
    pos_encoding: str = option("learned", doc="how positions enter the model", choices=POS_ENCODINGS)
    attn_impl: str = option("sdpa", doc="manual (the math below) or sdpa (torch's fused kernel)", choices=ATTN_IMPLS)
    norm: str = option("layernorm", doc="the normalisation before attention and MLP", choices=NORMS)
    residual: bool = option(True, doc="false removes both skip connections (an ablation)")
    scale_attn: bool = option(True, doc="false drops the 1/sqrt(hs) factor (an ablation)")
    tie_weights: bool = option(True, doc="lm_head shares its matrix with the token embedding")
    activation: str = option("gelu", doc="gelu, gelu_tanh (GPT-2's) or relu2 (ReLU squared)", choices=ACTIVATIONS)
    qk_norm: bool = option(False, doc="RMS-normalise queries and keys per head before the dot product")
    swap_qk: bool = option(False, doc="use the key projection as queries and the query one as keys (an ablation)")
    rope_base: float = option(10000.0, doc="RoPE's base wavelength", above=0)
    mlp_ratio: int = option(4, doc="the MLP's hidden width as a multiple of n_embd", low=1)
    init_std: float = option(0.02, doc="std of the initial weights; far larger saturates units", above=0, below=1e3)
    # the budget recipes' levers, built by minigpt/levers.py (docs/performance.md measures each); off by default
    zero_init_proj: bool = option(False, doc="residual branches' output projections start at zero")
    logit_softcap: float = option(0.0, doc="> 0: logits = cap * tanh(logits / cap)", low=0, hint="0 = off")
    value_embeds: bool = option(False, doc="each layer adds a learned per-token vector to its values")
    unet_skips: bool = option(False, doc="the first half's block outputs feed the second half, mirrored")
    short_conv: int = option(0, doc="> 0: a causal convolution this wide before each branch", low=0, hint="0 = off")

    def __post_init__(self) -> None:
        check_fields(self, "model")  # types, choices and ranges, as declared above
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Combinations of sizes that the layers cannot be built with."""
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}; "
                f"pick n_head from {[h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0][:8]}..."
            )
        if self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2 != 0:
            raise ConfigError(f"rope needs an even head size, but n_embd/n_head = {self.n_embd // self.n_head}")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2 != 0:
            raise ConfigError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def levers(self) -> list[str]:
        """The levers this config turns on, as `model.<name>`."""
        return [f"model.{name}" for name in LEVERS if getattr(self, name)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        return from_mapping(cls, d, "model")


# --------------------------------------------------------------------------- positions

# Vaswani et al. scale the token embeddings up to the table; here the table (RMS 1/sqrt(2)) is scaled
# down to the embeddings' init std of 0.02, so that neither drowns the other at the start of training
SINUSOIDAL_SCALE = 0.02 * math.sqrt(2)


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position table of Vaswani et al. (2017): (n_pos, dim)."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    # wavelengths grow geometrically from 2*pi to 10000*2*pi across the dimensions
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n_pos, dim)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table


def rope_cos_sin(positions: torch.Tensor, head_size: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles (Su et al. 2021) for integer positions: each (T, hs/2)."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device) / head_size)
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[2i], x[2i+1]) of every head by its position's angle. x: (B, nh, T, hs).

    Read as the complex number x[2i] + i*x[2i+1], a pair is rotated by angle a when it is
    multiplied by cos a + i*sin a; one complex product turns every pair of every head at once."""
    if torch.compiler.is_compiling():  # inductor generates no code for complex numbers: the same
        x1, x2 = x[..., 0::2], x[..., 1::2]  # rotation in real products, which it fuses into one kernel
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, nh, T, hs/2) complex
    rotated = pairs * torch.complex(cos.float(), sin.float())
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Per-head slopes of ALiBi (Press et al. 2022): a geometric sequence starting at 2^(-8/n)."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        return torch.tensor(power_of_two_slopes(n_head))
    # not a power of two: take the closest power's slopes, then every other slope of the next one
    closest = 2 ** math.floor(math.log2(n_head))
    extra = power_of_two_slopes(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(power_of_two_slopes(closest) + extra)


# --------------------------------------------------------------------------- KV cache


class KVCache:
    """Keys and values of positions already seen, per layer, so decoding one token costs O(S).

    Pre-allocated to `capacity` positions, (B, nh, capacity, hs): slot i holds position i. Each layer
    writes its new keys and values at slots `length`, ...; once every layer has, the model `advance`s."""

    def __init__(self, n_layer: int, capacity: int) -> None:
        self.capacity = capacity
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.length = 0  # filled slots

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's new keys/values (B, nh, T, hs) after the cached ones; return all (B, nh, S, hs)."""
        start, end = self.length, self.length + k.size(2)
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {start} + {k.size(2)} > {self.capacity}; reset() it first")
        if self.k[layer] is None:
            B, nh, _, hs = k.shape
            self.k[layer] = k.new_zeros(B, nh, self.capacity, hs)
            self.v[layer] = v.new_zeros(B, nh, self.capacity, hs)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, T: int) -> None:
        """Count T new positions as cached: every layer has written them."""
        self.length += T

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search keeps the cache of the beams it continues)."""
        for cache in (self.k, self.v):
            for layer, t in enumerate(cache):
                if t is not None:
                    cache[layer] = t.index_select(0, index)

    def reset(self) -> None:
        self.length = 0


@dataclass(frozen=True)
class Context:
    """What every block reads besides x, built once per forward by `GPT._run`: RoPE's cos and sin
    (T, hs/2) each, the attention bias (nh or 1, T, S; None: plain causal, which the fused kernel
    masks itself), the KV cache, whether to return attention weights, and the new token ids (B, T)."""

    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    bias: torch.Tensor | None = None
    cache: KVCache | None = None
    need_weights: bool = False
    idx: torch.Tensor | None = None


# --------------------------------------------------------------------------- layers


def causal_mask(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) booleans, True where query i may attend to key j.

    The T queries are the last T of the S positions, so query i sits at index S-T+i and sees
    keys j <= S-T+i: a lower-triangular matrix shifted right by the number of cached keys.
    Everything above that diagonal is the future, which a language model must not see.
    """
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def causal_bias(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(1, T, S) to add to attention scores: 0 where `causal_mask` allows, -inf on the future."""
    return torch.zeros(1, T, S, device=device).masked_fill(~causal_mask(T, S, device), float("-inf"))


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd)
    return nn.Identity()


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees only positions <= t."""

    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.head_size, self.n_embd = cfg.n_head, cfg.head_size, cfg.n_embd
        self.attn_impl, self.qk_norm, self.swap_qk = cfg.attn_impl, cfg.qk_norm, cfg.swap_qk
        # one matrix computes queries, keys and values of all heads at once
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        # dot products of two random hs-dim vectors have variance hs; 1/sqrt(hs) brings it back
        # to 1 so that softmax does not saturate at initialisation
        self.scale = 1.0 / math.sqrt(self.head_size) if cfg.scale_attn else 1.0

    def qkv(self, x: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (B, T, C) each, of all heads side by side."""
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        if self.swap_qk:  # both are learned linear maps, so this should change nothing
            q, k = k, q
        return q, k, v

    def forward(self, x: torch.Tensor, ctx: Context = Context()) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (B, T, C), and the attention weights (B, nh, T, S) when ctx asks for them."""
        q, k, v = self.qkv(x, ctx)  # (B, T, C) each
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # (B, nh, T, hs) each
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.head_size,)), F.rms_norm(k, (self.head_size,))
        if ctx.rope is not None:
            q, k = apply_rope(q, *ctx.rope), apply_rope(k, *ctx.rope)
        if ctx.cache is not None:
            k, v = ctx.cache.update(self.layer_idx, k, v)  # (B, nh, S, hs)
        y, weights = self.attend(q, k, v, ctx)  # (B, nh, T, hs)
        return self.resid_dropout(self.c_proj(self.merge_heads(y))), weights

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, nh, T, hs): each position's C numbers cut into nh heads of hs."""
        B, T, C = t.shape
        return t.view(B, T, self.n_head, self.head_size).transpose(1, 2)

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        """(B, nh, T, hs) -> (B, T, C): the heads' outputs side by side again."""
        B, nh, T, hs = y.shape
        return y.transpose(1, 2).contiguous().view(B, T, nh * hs)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """softmax(q k^T * scale + bias) v for every head: (B, nh, T, hs), and the weights
        (B, nh, T, S) when the manual path computed them."""
        if self.attn_impl == "sdpa" and not ctx.need_weights:  # torch's fused kernel, same math
            mask = None if ctx.bias is None else ctx.bias.to(q.dtype)
            p = self.attn_dropout.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, mask, p, is_causal=mask is None, scale=self.scale)
            return y, None
        bias = causal_bias(q.size(-2), k.size(-2), q.device) if ctx.bias is None else ctx.bias
        att = (q @ k.transpose(-2, -1)) * self.scale + bias  # (B, nh, T, S); -inf on the future
        weights = F.softmax(att, dim=-1)  # each row: a distribution over the positions it may see
        return self.attn_dropout(weights) @ v, weights  # (B, nh, T, S) x (B, nh, S, hs)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """ReLU(x)**2 (So et al. 2021, "Primer")."""
    return torch.relu(x).square()


ACTIVATION_FNS = {"gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh"), "relu2": relu_squared}


class MLP(nn.Module):
    """Position-wise feed-forward network: expand (mlp_ratio, 4 as in GPT-2), non-linearity, project back."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.activation = cfg.activation  # its name, for readers of the module
        self.act = ACTIVATION_FNS[cfg.activation]  # gelu_tanh: GPT-2's cheaper approximation of gelu
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.residual = cfg.residual  # False drops both additions (an ablation)
        self.ln_1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, ctx: Context = Context()) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.ln_1(x), ctx)
        x = x + a if self.residual else a
        m = self.mlp(self.ln_2(x))
        x = x + m if self.residual else m
        return x, weights


# --------------------------------------------------------------------------- GPT


def gpt2_init(module: nn.Module, std: float) -> None:
    """GPT-2's initialisation: weights from N(0, std^2) (std 0.02), biases at zero."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class GPT(nn.Module):
    """Decoder-only transformer language model; `forward` returns logits, never a loss."""

    takes_levers = False  # LeverGPT (minigpt/levers.py) builds the LEVERS; this class refuses them

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.levers and not self.takes_levers:
            raise ConfigError(
                f"{', '.join(cfg.levers)}: the textbook GPT does not build the recipes' levers; "
                "build the model with minigpt.levers.build_gpt(config)"
            )
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([self.make_block(cfg, i) for i in range(cfg.n_layer)]),
                ln_f=make_norm(cfg),
            )
        )
        if cfg.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.pos_encoding == "sinusoidal":
            # the rows of the training context; a longer one computes its own (sinusoidal_positions)
            table = sinusoidal_table(cfg.block_size, cfg.n_embd) * SINUSOIDAL_SCALE
            self.register_buffer("wpe_table", table, persistent=False)
        elif cfg.pos_encoding == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_head), persistent=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self.add_parameters(cfg)
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2's initialisation (lever hook), at `init_std`. Each residual branch adds to the
        stream, so the projections into it shrink by 1/sqrt(2 * n_layer): the stream's variance
        stays independent of depth."""
        std = self.config.init_std
        self.apply(lambda module: gpt2_init(module, std))
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    def make_block(self, cfg: GPTConfig, layer_idx: int) -> nn.Module:
        """Block `layer_idx` (lever hook)."""
        return Block(cfg, layer_idx)

    def add_parameters(self, cfg: GPTConfig) -> None:
        """Parameters beyond the transformer's, made before the weights are drawn (lever hook)."""

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (as nanoGPT reports it)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """An empty KV cache for `capacity` positions, block_size by default (lever hook)."""
        return KVCache(self.config.n_layer, capacity or self.config.block_size)

    def _run(self, idx: torch.Tensor, cache: KVCache | None, need_weights: bool, tokens: torch.Tensor | None = None):
        """The blocks' output after ln_f (B, T, C) and each layer's attention weights. `tokens`
        (B, T, C) replaces the token embeddings of `idx` (minigpt/vlm.py puts image patches there)."""
        cfg = self.config
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        self.check_length(past + T)
        positions = torch.arange(past, past + T, device=idx.device)  # positions of the new tokens
        x = self.transformer.wte(idx) if tokens is None else tokens  # (B, T, C)
        rope = None
        if cfg.pos_encoding == "learned":
            x = x + self.transformer.wpe(positions)
        elif cfg.pos_encoding == "sinusoidal":
            x = x + self.sinusoidal_positions(past, T)
        elif cfg.pos_encoding == "rope":
            rope = rope_cos_sin(positions, cfg.head_size, cfg.rope_base)
        bias = self.attention_bias(T, past, need_weights or cfg.attn_impl == "manual", idx.device)
        x, weights = self.blocks(self.transformer.drop(x), Context(rope, bias, cache, need_weights, idx))
        if cache is not None:
            cache.advance(T)  # every layer has written the new positions' keys and values
        return self.transformer.ln_f(x), weights  # (B, T, C)

    def check_length(self, n_positions: int) -> None:
        """Refuse more positions than learned positions have rows (block_size); sinusoidal, RoPE and
        ALiBi compute any position and `none` has none, so they run past it (docs/heads.md)."""
        block = self.config.block_size
        if n_positions > block and self.config.pos_encoding == "learned":
            raise ConfigError(
                f"a sequence of {n_positions} positions exceeds block_size={block}, the rows of the learned position "
                f"table (pos_encoding=learned); use a context of at most {block}, or train with "
                "pos_encoding=sinusoidal, rope, alibi or none, which run past their training length"
            )

    def sinusoidal_positions(self, past: int, T: int) -> torch.Tensor:
        """Rows past .. past+T-1 of the scaled sinusoidal table (T, C): the buffer's rows within the
        training context, computed afresh beyond it (each row depends on its position only)."""
        if past + T <= self.wpe_table.size(0):
            return self.wpe_table[past : past + T]
        table = sinusoidal_table(past + T, self.config.n_embd).to(self.wpe_table.device) * SINUSOIDAL_SCALE
        return table[past:].to(self.wpe_table.dtype)

    def blocks(self, x: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """x (B, T, C) through every block in order (lever hook); each layer's attention weights."""
        weights = []
        for block in self.transformer.h:
            x, w = block(x, ctx)
            weights.append(w)
        return x, weights

    def attention_bias(self, T: int, past: int, dense: bool, device: torch.device) -> torch.Tensor | None:
        """What every layer adds to its attention scores for T new positions after `past` cached
        ones: (nh or 1, T, S) with -inf on the future (the causal mask) and, with ALiBi, a penalty
        growing linearly with distance. None for plain causal attention over T == S positions
        when `dense` is not asked for: the fused kernel then masks by itself, fastest."""
        S = past + T
        alibi = self.config.pos_encoding == "alibi"
        if not dense and not alibi and past == 0:
            return None
        bias = causal_bias(T, S, device)
        if alibi:
            # key j sits (S-T+i) - j places before query i; only the distance matters
            distance = torch.arange(S - T, S, device=device)[:, None] - torch.arange(S, device=device)[None, :]
            bias = bias - self.alibi_slopes[:, None, None] * distance.clamp(min=0)  # (nh, T, S)
        return bias

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); with a cache, T new tokens follow the cached ones."""
        return self.logits(self._run(idx, cache, need_weights=False)[0])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """lm_head on final hidden states x (B, T, C) (lever hook)."""
        return self.lm_head(x)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """The last block's output after ln_f (B, T, C): what lm_head and other heads read."""
        return self._run(idx, None, need_weights=False)[0]

    def forward_with_attention(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and every layer's attention weights (B, nh, T, T), computed by the manual path."""
        x, weights = self._run(idx, None, need_weights=True)
        return self.logits(x), weights
