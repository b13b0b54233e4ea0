"""The budget recipes' levers: what exists only to train the best model in 90 s or 5 minutes on
a CPU (conf/experiment/cpu_90s.yaml, cpu_5min.yaml, gpu_90s.yaml), kept out of the textbook.

minigpt/model.py is the textbook; `LeverGPT` here is a subclass of its `GPT` and plugs in through
the methods `GPT` marks "lever hook": `make_block` (the lab's `LeverBlock`), `add_parameters`
(value embeddings, skip weights), `init_weights` (zero-initialised projections), `blocks` (the
U-net skips, the value embeddings handed to each layer), `logits` (soft-capping) and `new_cache`
(a cache that also keeps the short convolutions' inputs). `build_gpt(config)` picks `LeverGPT`
when the config asks for a lever (GPTConfig.levers) or for ReLU² (its hand-written backward), the
textbook `GPT` otherwise; both give the same values where both apply. Parameter names are the
textbook's plus `value_embeds.<i>.weight`, `skip_weights` and `transformer.h.<i>.conv_<j>.weight`.

Each lever's number is in its docstring; docs/performance.md has the runs. Plain PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.model import GPT, MLP, CausalSelfAttention, Context, GPTConfig, KVCache, make_norm


class ReLUSquared(torch.autograd.Function):
    """relu(x)**2, with its derivative 2*relu(x) written out.

    The same values as the textbook's `relu_squared`, whose autograd backward goes through pow
    and relu's own backward; here the backward is one product, so the (B, T, mlp_ratio*C)
    activations are read and written about half as often per step, the largest element-wise cost
    of a small model on a CPU. With RoPE's complex product it took a cpu_90s training step from
    228.7 to 204.9 ms (docs/performance.md, "Where a training step's time goes")."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return (grad * r).mul_(2)  # zero wherever x < 0, since r is


class CausalShortConv(torch.autograd.Function):
    """y_t = x_t + sum over s < k of w[s] * x_(t-s), with nothing before the first position:
    x (B, T, C), w (k, C).

    Each shift s is one multiply-add of the sequence into y, and the backward is written out the
    same way: autograd through padded, shifted slices would compute the same values, but write
    each shift's gradient into a zero-filled buffer of its own first (docs/performance.md)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = torch.addcmul(x, x, w[0])  # s = 0: x_t + w[0] * x_t
        for s in range(1, w.size(0)):
            y[:, s:].addcmul_(x[:, :-s], w[s])  # position t >= s adds w[s] * x_(t-s)
        ctx.save_for_backward(x, w)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        grad_x = torch.addcmul(grad, grad, w[0])
        for s in range(1, w.size(0)):
            grad_x[:, :-s].addcmul_(grad[:, s:], w[s])  # x_t reached y_(t+s)
        T = x.size(1)
        grad_w = torch.stack([(grad[:, s:] * x[:, : T - s]).sum((0, 1)) for s in range(w.size(0))])
        return grad_x, grad_w


class ShortConv(nn.Module):
    """x_t + sum over s < k of w[s] * x_(t-s): each channel mixes in its own values at position t
    and the k-1 positions just before it, with its own weights (a causal depthwise convolution
    of width k, plus a skip). `model.short_conv=k` puts one before attention and one before the
    MLP of every block.

    Attention can look one or two characters back too, but a head has to learn where to look; here
    the recent past is at hand from the first step. Allen-Zhu (2025, "Physics of Language Models:
    Part 4.1") calls such layers Canon layers. The weights start at zero: the identity.
    Worth 0.020 in the 90 s recipe (median 1.5314 with k = 3 against 1.5565 without, 3 seeds),
    for a step 1.106 times as long (docs/performance.md)."""

    def __init__(self, channels: int, k: int, name: str) -> None:
        super().__init__()
        self.name = name  # its key in a LeverCache
        self.weight = nn.Parameter(torch.zeros(k, channels))  # weight[s] weighs x_(t-s)

    def forward(self, x: torch.Tensor, cache: LeverCache | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); with a cache, T new positions after the cached ones."""
        k = self.weight.size(0)
        if torch.compiler.is_compiling():  # torch.compile/export: the same sum over a padded copy,
            T = x.size(1)  # whose slices all have x's length, whatever T is
            padded = F.pad(x, (0, 0, k - 1, 0))
            return x + sum(self.weight[s] * padded[:, k - 1 - s : k - 1 - s + T] for s in range(k))
        if cache is None:
            return CausalShortConv.apply(x, self.weight)
        # the k-1 inputs just before x come from the cache: run over both, keep the new positions
        seen = cache.extend_conv_inputs(self.name, x, k - 1)
        return CausalShortConv.apply(seen, self.weight)[:, k - 1 :]


class LeverCache(KVCache):
    """The KV cache, plus the last inputs each short convolution has seen."""

    def __init__(self, n_layer: int, capacity: int) -> None:
        super().__init__(n_layer, capacity)
        self.conv_inputs: dict[str, torch.Tensor] = {}

    def extend_conv_inputs(self, name: str, x: torch.Tensor, n: int) -> torch.Tensor:
        """The new inputs x (B, T, C) of the short convolution `name` after the n that came just
        before them (zeros before the first position): (B, n + T, C). Keeps the last n."""
        before = self.conv_inputs.get(name)
        if before is None:
            before = x.new_zeros(x.size(0), n, x.size(2))
        seen = torch.cat([before, x], dim=1)
        self.conv_inputs[name] = seen[:, seen.size(1) - n :]
        return seen

    def reorder(self, index: torch.Tensor) -> None:
        super().reorder(index)
        self.conv_inputs = {name: t.index_select(0, index) for name, t in self.conv_inputs.items()}

    def reset(self) -> None:
        super().reset()
        self.conv_inputs.clear()


@dataclass(frozen=True)
class LeverContext(Context):
    """The textbook's Context plus each layer's value embedding (B, T, C)."""

    value_embeds: list[torch.Tensor] | None = None


class ValueEmbedAttention(CausalSelfAttention):
    """Attention whose values get a learned per-token vector (`model.value_embeds`): what a token
    offers to the positions that attend to it then depends on its identity directly, not only
    through x. At a fixed 500 steps it gained 0.011 for a step 1.027 times as long; with the short
    convolutions in, the 90 s recipe did better without it (median 1.5594 against 1.5672), and
    cpu_5min, measured with it, keeps it (docs/performance.md)."""

    def qkv(self, x: torch.Tensor, ctx: LeverContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = super().qkv(x, ctx)
        return q, k, v + ctx.value_embeds[self.layer_idx]


class LeverBlock(nn.Module):
    """The textbook's pre-LN Block with the levers that act inside a block: a ShortConv after
    each norm (`short_conv`), value embeddings in attention, ReLU² with its written-out backward.
    Its parts are made in the textbook's order, so a seed draws the same initial weights."""

    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.residual = cfg.residual
        self.ln_1 = make_norm(cfg)
        self.attn = (ValueEmbedAttention if cfg.value_embeds else CausalSelfAttention)(cfg, layer_idx)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        if cfg.activation == "relu2":
            self.mlp.act = ReLUSquared.apply
        k = cfg.short_conv
        self.conv_1 = ShortConv(cfg.n_embd, k, f"{layer_idx}.conv_1") if k else None
        self.conv_2 = ShortConv(cfg.n_embd, k, f"{layer_idx}.conv_2") if k else None

    def forward(self, x: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.ln_1(x)
        if self.conv_1 is not None:
            h = self.conv_1(h, ctx.cache)
        a, weights = self.attn(h, ctx)
        x = x + a if self.residual else a
        h = self.ln_2(x)
        if self.conv_2 is not None:
            h = self.conv_2(h, ctx.cache)
        m = self.mlp(h)
        x = x + m if self.residual else m
        return x, weights


class LeverGPT(GPT):
    """The textbook GPT with the recipes' levers, attached through GPT's lever hooks.

    - `zero_init_proj`: the output projections of attention and MLP start at zero, so every block
      starts as the identity. −0.008 at a fixed 500 steps; the 90 s recipe did better without
      (median 1.5314 against 1.5367), cpu_5min keeps them (1.4708 in 300 s).
    - `unet_skips`: block i's output, times a learned weight, joins block n-1-i's input.
      +0.005 at a fixed 500 steps: no recipe uses them.
    - `logit_softcap` > 0: logits = cap * tanh(logits / cap), so no token's score can run away.
      +0.004 at a fixed 500 steps (cap 15): no recipe uses it.
    Numbers: docs/performance.md, "Which levers earn their place"."""

    takes_levers = True

    def make_block(self, cfg: GPTConfig, layer_idx: int) -> nn.Module:
        return LeverBlock(cfg, layer_idx)

    def add_parameters(self, cfg: GPTConfig) -> None:
        if cfg.value_embeds:  # one table per layer, read by token id (ValueEmbedAttention)
            self.value_embeds = nn.ModuleList(nn.Embedding(cfg.vocab_size, cfg.n_embd) for _ in range(cfg.n_layer))
        if cfg.unet_skips:  # one learned weight per skip: block i's output into block n-1-i's input
            self.skip_weights = nn.Parameter(torch.ones(cfg.n_layer // 2))

    def init_weights(self) -> None:
        super().init_weights()
        if self.config.zero_init_proj:  # each block starts as the identity; the update fills it in
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.zeros_(p)

    def new_cache(self, capacity: int | None = None) -> LeverCache:
        return LeverCache(self.config.n_layer, capacity or self.config.block_size)

    def blocks(self, x: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        cfg = self.config
        if cfg.value_embeds:
            parts = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
            ctx = LeverContext(**parts, value_embeds=[table(ctx.idx) for table in self.value_embeds])
        weights, skips = [], []
        n = cfg.n_layer
        for i, block in enumerate(self.transformer.h):
            if cfg.unet_skips and i >= n - n // 2:  # second half: the mirrored block's output
                x = x + self.skip_weights[n - 1 - i] * skips.pop()
            x, w = block(x, ctx)
            if cfg.unet_skips and i < n // 2:
                skips.append(x)
            weights.append(w)
        return x, weights

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(x)
        cap = self.config.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits


def build_gpt(cfg: GPTConfig) -> GPT:
    """The network for `cfg`: `LeverGPT` when it turns a lever on or uses ReLU² (whose backward is
    written out here), the textbook `GPT` otherwise."""
    return LeverGPT(cfg) if cfg.levers or cfg.activation == "relu2" else GPT(cfg)
