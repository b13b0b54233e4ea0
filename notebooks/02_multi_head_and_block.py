# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Many heads, the MLP, LayerNorm and the residual stream
#
# One attention head answers one question per position. A transformer block runs several heads side
# by side, then a small two-layer network (the MLP) at every position, with a normalisation before
# each, and, most importantly, adds each result to a running sum, the **residual stream**, instead of
# replacing it.
#
# In this notebook you will build each piece by hand, check it against minigpt's own module, and
# then measure what the residual connections are for: the gradient that reaches the first of 8
# blocks, with and without them.
#
# About 25 minutes; the cells run in under a minute on a laptop CPU.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from minigpt.model import GPT, MLP, Block, CausalSelfAttention, GPTConfig, make_norm


def attend(q, k, v, mask=None):
    """Scaled dot-product attention over the last two dimensions (notebook 1)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


# %% [markdown]
# ## Splitting into heads
#
# With `n_embd = C` and `n_head = nh`, each head gets `hs = C / nh` of the numbers. Splitting is
# only a reshape: the `C` columns of the queries (and keys, and values) are cut into `nh` groups of
# `hs` columns, and the head dimension is moved in front of the time dimension so that one batched
# matrix product runs every head at once. Merging is the reverse. No parameters are involved.

# %%
B, T, C, nh = 2, 8, 16, 4
hs = C // nh
x = torch.randn(B, T, C)


def split_heads(t):
    """(B, T, C) -> (B, nh, T, hs)"""
    return t.view(B, T, nh, hs).transpose(1, 2)


def merge_heads(t):
    """(B, nh, T, hs) -> (B, T, C): the heads' outputs side by side again"""
    return t.transpose(1, 2).reshape(B, T, C)


assert torch.equal(merge_heads(split_heads(x)), x)
assert torch.equal(split_heads(x)[:, 1], x[..., hs : 2 * hs])  # head 1 owns columns 4..7
print("x", tuple(x.shape), "-> heads", tuple(split_heads(x).shape))

# %% [markdown]
# ## Multi-head attention, by hand and in minigpt
#
# The attention function of notebook 1 already works over any leading dimensions, so running four
# heads is running it once on `(B, nh, T, hs)` tensors. Then `c_proj` mixes the heads' outputs back
# into the model's width. Compare with `CausalSelfAttention`, using its weights:

# %%
cfg = GPTConfig(vocab_size=10, block_size=T, n_layer=1, n_head=nh, n_embd=C, attn_impl="manual")
attn = CausalSelfAttention(cfg, 0).eval()
mask = torch.ones(T, T, dtype=torch.bool).tril()

q, k, v = attn.c_attn(x).split(C, dim=-1)  # one matrix product for all heads' q, k and v
y, w_mine = attend(split_heads(q), split_heads(k), split_heads(v), mask)  # (B, nh, T, hs)
mine = attn.c_proj(merge_heads(y))

bias = torch.zeros(T, T).masked_fill(~mask, float("-inf"))
theirs, w_theirs = attn(x, bias=bias, need_weights=True)
assert torch.allclose(mine, theirs, atol=1e-6) and torch.allclose(w_mine, w_theirs, atol=1e-6)
print("multi-head attention matches CausalSelfAttention; weights", tuple(w_theirs.shape))

# %% [markdown]
# Heads cost nothing extra: the parameters are the same four `C x C` matrices (plus biases)
# whatever `n_head` is. More heads means more, smaller questions per position.

# %%
for heads in (1, 2, 4, 8):
    layer = CausalSelfAttention(GPTConfig(vocab_size=10, n_head=heads, n_embd=C), 0)
    print(
        f"n_head={heads}: head size {layer.head_size:>2}, "
        f"{sum(p.numel() for p in layer.parameters())} parameters"
    )

# %% [markdown]
# ## The MLP
#
# Attention moves information *between* positions; the MLP then processes each position on its
# own: expand to `4C` numbers, apply a non-linearity, project back to `C`. minigpt offers three
# non-linearities (`GPTConfig.activation`): GELU (the default), GPT-2's tanh approximation of it,
# and ReLU squared.

# %%
mlp = MLP(cfg)
mine = F.gelu(x @ mlp.c_fc.weight.T + mlp.c_fc.bias) @ mlp.c_proj.weight.T + mlp.c_proj.bias
assert torch.allclose(mine, mlp(x), atol=1e-6)
print("MLP matches; hidden width", mlp.c_fc.out_features, "=", mlp.c_fc.out_features // C, "x C")

z = torch.linspace(-3, 3, 200)
plt.figure(figsize=(5, 3.2))
plt.plot(z, F.gelu(z), label="gelu")
plt.plot(z, F.gelu(z, approximate="tanh"), "--", label="gelu_tanh")
plt.plot(z, F.relu(z).square(), label="relu2")
plt.ylim(-0.5, 3)
plt.grid(alpha=0.3)
plt.legend()
plt.title("the MLP's non-linearities")
plt.show()

# %% [markdown]
# ## LayerNorm
#
# Before attention and before the MLP, each position's vector is normalised: subtract its mean,
# divide by its standard deviation, then scale and shift by learned per-component gains and
# biases. Whatever size the residual stream has grown to, each layer reads vectors of a standard
# size. `norm="rmsnorm"` skips the mean and divides by the root mean square.

# %%
ln = make_norm(cfg)  # nn.LayerNorm(C)
with torch.no_grad():  # give the learned gain and bias some values, so the check covers them
    ln.weight.uniform_(0.5, 1.5)
    ln.bias.uniform_(-0.5, 0.5)
mean = x.mean(-1, keepdim=True)
var = x.var(-1, keepdim=True, unbiased=False)
assert torch.allclose((x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias, ln(x), atol=1e-5)

rms = make_norm(GPTConfig(vocab_size=10, n_head=nh, n_embd=C, norm="rmsnorm"))  # nn.RMSNorm(C)
eps = torch.finfo(x.dtype).eps  # nn.RMSNorm's default
assert torch.allclose(
    x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * rms.weight, rms(x), atol=1e-5
)
print("LayerNorm and RMSNorm match")

# %%
vectors = (
    torch.randn(300, C) * (torch.rand(300, 1) * 5 + 0.5) + torch.randn(300, 1) * 2
)  # all sizes and offsets
normed = F.layer_norm(vectors, (C,))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained", sharex=True, sharey=True)
for ax, v_, title in (
    (axes[0], vectors, "before"),
    (axes[1], normed, "after LayerNorm (no gain)"),
):
    ax.scatter(v_.mean(-1), v_.std(-1, unbiased=False), s=6, alpha=0.5)
    ax.set_xlabel("mean of the vector")
    ax.set_title(title)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("standard deviation")
plt.show()

# %% [markdown]
# After the norm every vector has mean 0 and standard deviation 1: all 300 points land on one.
#
# ## The block
#
# minigpt's `Block` is a *pre-LN* block, as in GPT-2: normalise, transform, **add**.
#
# ```
# x = x + attn(ln_1(x))
# x = x + mlp(ln_2(x))
# ```

# %%
block = Block(GPTConfig(vocab_size=10, block_size=T, n_layer=1, n_head=nh, n_embd=C), 0).eval()
h = x + block.attn(block.ln_1(x))[0]
mine = h + block.mlp(block.ln_2(h))
theirs, _ = block(x)
assert torch.allclose(mine, theirs, atol=1e-5)
print("Block matches: two additions onto the residual stream")

# %% [markdown]
# The vector that flows from block to block is never replaced, only added to: after `L` blocks it
# is the embedding plus the sum of everything each block wrote. That sum is the **residual stream**,
# and its derivative with respect to an early block's output contains the identity: however many
# blocks follow, the gradient has a path back that multiplies by nothing. `GPTConfig(residual=False)`
# removes both additions (`x = attn(...)`, then `x = mlp(...)`); the rest of this notebook measures
# what that costs.
#
# ## Gradient flow through 8 blocks
#
# Measurements on real text: the first 200,000 characters of Tiny Shakespeare, found the way every
# minigpt run finds the corpus (`data/tinyshakespeare/input.txt` in the clone, downloaded there once
# if it is missing; `MINIGPT_SHAKESPEARE` may name a local copy).

# %%
from minigpt.tokenizer import CharTokenizer

text = nb.shakespeare(200_000)
tok = CharTokenizer.from_text(text)
data = tok.encode_tensor(text)


def batch(gen, size=16, T=64):
    """`size` random windows of T characters, and the same windows shifted by one: the targets."""
    starts = torch.randint(len(data) - T - 1, (size,), generator=gen)
    w = data[starts[:, None] + torch.arange(T + 1)]
    return w[:, :-1], w[:, 1:]


def deep_model(residual, norm="layernorm"):
    torch.manual_seed(0)  # the same initial weights for every variant
    cfg = GPTConfig(
        vocab_size=tok.vocab_size, n_layer=8, n_head=4, n_embd=64, residual=residual, norm=norm
    )
    return GPT(cfg)


def block_grad_norms(model):
    """The gradient norm of each block's parameters, all of a block's tensors taken together."""
    return [
        torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item()
        for b in model.transformer.h
    ]


print(f"{len(text):,} characters, {tok.vocab_size} distinct")

# %% [markdown]
# **At initialisation.** One batch, one backward pass, four variants: with or without residuals,
# with or without LayerNorm. The figure shows the gradient norm of every block's parameters, block
# 0 being the first (the farthest from the loss).

# %%
x_b, y_b = batch(torch.Generator().manual_seed(0))
at_init = {}
for residual in (True, False):
    for norm in ("layernorm", "none"):
        model = deep_model(residual, norm)
        F.cross_entropy(model(x_b).flatten(0, 1), y_b.flatten()).backward()
        at_init[f"residual={residual}, norm={norm}"] = block_grad_norms(model)

plt.figure(figsize=(7, 3.8))
for name, norms in at_init.items():
    plt.semilogy(range(8), [max(g, 1e-30) for g in norms], "o-", label=name)
plt.xlabel("block")
plt.ylabel("gradient norm (log scale)")
plt.title("gradient reaching each of 8 blocks, at initialisation")
plt.grid(alpha=0.3)
plt.legend(fontsize=8)
plt.show()
for name, norms in at_init.items():
    print(f"{name:<32} block 0: {norms[0]:.2e}   block 7: {norms[7]:.2e}")


# %% [markdown]
# Without residuals *and* without LayerNorm, the gradient is multiplied by each block's small
# Jacobian on the way down and has all but vanished by block 0 (a value of 0 is printed when it
# underflowed; the plot shows it at 1e-30). LayerNorm rescues it at initialisation: it scales up
# whatever small vector it receives, and the gradient with it. But that rescue does not survive
# training, as the next measurement shows.
#
# **During training.** Train the residual and the non-residual model (both with LayerNorm) for 40
# steps with the optimizer every minigpt run uses, built the way a run builds it: `conf/optim/adamw.yaml`
# (AdamW, learning rate 1e-3, betas 0.9 and 0.99, weight decay 0.1) handed the parameter groups of
# `LitGPT.param_groups`, which exempt biases and norm gains from the decay; gradients are clipped at
# 1.0 as `conf/trainer/default.yaml` does. Record block 0's gradient norm and the loss at every step.

# %%
from omegaconf import OmegaConf

from minigpt.training.module import LitGPT

OPTIM = OmegaConf.to_container(nb.compose_train().optim)  # conf/optim/adamw.yaml, the default
print(OPTIM)


def train_and_watch(residual, steps=40):
    torch.manual_seed(0)  # the same initial weights as deep_model(residual)
    lit = LitGPT(
        model=dict(n_layer=8, n_head=4, n_embd=64, residual=residual),
        vocab=tok.serialize(),
        optim=OPTIM,
    )
    model, opt = lit.model, lit.configure_optimizers()["optimizer"]
    gen = torch.Generator().manual_seed(0)  # the same batches for both
    grads, losses = [], []
    for _ in range(steps):
        xb, yb = batch(gen)
        loss = F.cross_entropy(model(xb).flatten(0, 1), yb.flatten())
        opt.zero_grad()
        loss.backward()
        grads.append(block_grad_norms(model)[0])
        losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, grads, losses


runs = {residual: train_and_watch(residual) for residual in (True, False)}

# %%
counts = torch.bincount(data, minlength=tok.vocab_size).float()
unigram = -(counts / counts.sum() * (counts / counts.sum()).clamp_min(1e-12).log()).sum().item()

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
for residual, (_, grads, losses) in runs.items():
    label = "with residuals" if residual else "without residuals"
    axes[0].semilogy([max(g, 1e-30) for g in grads], label=label)
    axes[1].plot(losses, label=label)
axes[0].set_title("gradient norm of block 0 (log scale)")
axes[1].axhline(unigram, color="gray", ls=":", label=f"unigram entropy {unigram:.2f}")
axes[1].set_title("training loss (nats/char)")
for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.show()

with_res, without_res = runs[True][1], runs[False][1]
for step in (0, 10, 20, 39):
    print(
        f"step {step:>2}: block 0 gradient with residuals {with_res[step]:.1e}, "
        f"without {without_res[step]:.1e}"
    )
print(
    f"after 40 steps: loss {runs[True][2][-1]:.2f} with residuals, {runs[False][2][-1]:.2f} without"
)

# %% [markdown]
# Without residuals, the first block's gradient collapses by many orders of magnitude within a few
# steps, and the loss stalls near the **unigram entropy**: the loss of a model that knows only how
# often each character occurs. The later blocks quickly learn to output almost the same vector at
# every position (that alone takes the loss from ln 65 ≈ 4.17 down to the unigram value); a block
# whose output no longer depends on its input has a Jacobian near zero, so nothing reaches the
# blocks before it, and they stop learning. With residuals the gradient of block 0 settles at a
# steady size, and the loss keeps falling.
#
# `docs/experiments.md` shows the same collapse in a full 1,000-step run of the 4-block `small` model
# (`ablation=no_residual`), ending at exactly the unigram loss.
#
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint (`not done yet` until you fill it in). The solutions are in
# `notebooks/solutions/02_multi_head_and_block.py`; try first.
#
# ### Exercise 1: multi-head attention for any number of heads
#
# Write the output of a `CausalSelfAttention` called `attn` on `x` of shape `(B, T, C)`, for
# whatever `attn.n_head` is: queries, keys and values from `attn.c_attn`, split into heads, the
# causal attention of notebook 1 on all heads at once, heads merged, then `attn.c_proj`.


# %%
def multi_head_attention(x, attn):
    """CausalSelfAttention's output for x (B, T, C), its heads split, attended and merged by hand."""
    raise NotImplementedError


# %%
nb.check(multi_head_attention, "multi_head_attention")

# %% [markdown]
# ### Exercise 2: the MLP with each of its non-linearities
#
# Write minigpt's `MLP` from its two linear layers' weights and biases, for each of the three
# values `mlp.activation` may take: `"gelu"`, `"gelu_tanh"` and `"relu2"` (ReLU squared).


# %%
def mlp_by_hand(x, mlp):
    """minigpt's MLP on x, with whichever of its three non-linearities `mlp.activation` names."""
    raise NotImplementedError


# %%
nb.check(mlp_by_hand, "mlp_by_hand")

# %% [markdown]
# ### Exercise 3: LayerNorm and RMSNorm
#
# `make_norm` returns an `nn.LayerNorm` or an `nn.RMSNorm`. Write both from their definitions, using
# the module's `weight` (and `bias`, for LayerNorm) and `eps`.


# %%
def norm_by_hand(x, norm):
    """nn.LayerNorm or nn.RMSNorm over the last dimension of x, with the module's gain (and bias)."""
    raise NotImplementedError


# %%
nb.check(norm_by_hand, "norm_by_hand")

# %% [markdown]
# ### Exercise 4: the block, with and without its residual connections
#
# Write `Block`'s forward pass from its parts (`block.ln_1`, `block.attn`, `block.ln_2`, `block.mlp`;
# the attention returns a pair, of which you need the first), also when `block.residual` is False, as
# in the experiment above, and whatever norm the block was built with.


# %%
def block_by_hand(x, block):
    """A pre-LN Block: normalise, transform, add (or replace, when block.residual is False)."""
    raise NotImplementedError


# %%
nb.check(block_by_hand, "block_by_hand")

# %% [markdown]
# ## Questions
#
# **1. Count a block.** Show that a block of width `C` (with biases and LayerNorm) has
# `12 C² + 13 C` parameters, and check it for `C = 128`.
#
# <details>
# <summary>Solution</summary>
#
# `c_attn` has `3C² + 3C`, attention's `c_proj` `C² + C`, the MLP's `c_fc` `4C² + 4C` and its
# `c_proj` `4C² + C`; the two LayerNorms have a gain and a bias of `C` each, `4C` in all. Sum:
# `12C² + 13C`.
#
# ```python
# C_ = 128
# blk = Block(GPTConfig(vocab_size=10, n_head=4, n_embd=C_), 0)
# assert sum(p.numel() for p in blk.parameters()) == 12 * C_**2 + 13 * C_
# ```
# </details>
#
# **2. The collapsed model.** Check that the model trained above without residuals predicts the
# same next-character distribution at every position, whatever the text. Which characters does it
# favour?
#
# <details>
# <summary>Solution</summary>
#
# ```python
# collapsed = runs[False][0].eval()
# with torch.no_grad():
#     probs = collapsed(x_b).softmax(-1)  # (16 windows, 64 positions, V)
# spread = probs.std(dim=(0, 1)).max().item()
# print("largest spread of a probability across positions and windows:", spread)
# favourites = probs[0, 0].argsort(descending=True)[:8].tolist()
# freqs = counts / counts.sum()
# print("model:", [(tok.decode([i]), round(probs[0, 0, i].item(), 3)) for i in favourites])
# print("text: ", [(tok.decode([i]), round(freqs[i].item(), 3)) for i in favourites])
# ```
#
# The spread is rounding error: the model ignores its input entirely. What it outputs everywhere
# is a guess at the characters' frequencies (space, `e`, `t`, `o`, ... first), which is the best a
# model can do when it cannot see the text: its loss is then the unigram entropy.
# `minigpt.probes.position_spread` measures the same collapse on the residual stream, and
# `python -m minigpt diagnose` reports it per layer.
# </details>
#
# **3. Where does the gradient go without LayerNorm, with residuals?** In the first figure, the
# variant `residual=True, norm=none` has the same gradient norm at every block. Why?
#
# <details>
# <summary>Solution</summary>
#
# With residuals, the derivative of the final stream with respect to any block's output is the
# identity plus small terms, so every block receives about the same gradient from the loss. Without
# LayerNorm the whole gradient is much smaller than with it, because the logits start tiny: the
# embeddings have standard deviation 0.02 and nothing rescales them before `lm_head`.
#
# ```python
# with_norm = at_init["residual=True, norm=layernorm"]
# without_norm = at_init["residual=True, norm=none"]
# print(f"block 0: {with_norm[0]:.2e} with LayerNorm, {without_norm[0]:.2e} without")
# print(f"{with_norm[0] / without_norm[0]:.0f} times smaller without")
# ```
#
# `docs/experiments.md` measures the same slow start for its `no_norm` ablation.
# </details>
