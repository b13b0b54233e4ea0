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
# # 1. Attention, one head at a time
#
# A language model reads a text and, at every position, predicts the next character. To predict
# well, the vector at one position needs information from earlier positions: which character came
# just before, whether we are inside a word, who is speaking. **Attention** is the operation that
# moves that information. Every position asks a question (its *query*), every position advertises
# what it holds (its *key*), and each position takes a weighted average of the others' contents
# (their *values*), weighted by how well their keys answer its query.
#
# In this notebook you will:
#
# 1. build one attention head from three matrix products and a softmax;
# 2. add the causal mask, which keeps a position from reading the future;
# 3. check that your head computes exactly what `minigpt.model.CausalSelfAttention` computes;
# 4. measure why the scores are divided by √d;
# 5. build two heads by hand that look at the previous character and at earlier copies of the same
#    character, and draw them.
#
# About 20 minutes; every cell runs in a second or two on a laptop CPU.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

import math

import matplotlib.pyplot as plt
import torch

# %% [markdown]
# ## Queries, keys and values
#
# Take a toy sequence of `T = 6` positions, each holding a vector of `C = 8` numbers (in the model
# these come from the character embeddings). One head owns three matrices that map each vector to
# a query, a key and a value of `hs` numbers (the head size). The score of key `j` for query `i` is
# their dot product: large when the two point the same way.

# %%
T, C, hs = 6, 8, 4
x = torch.randn(T, C)  # one vector per position
W_q, W_k, W_v = (torch.randn(C, hs) / math.sqrt(C) for _ in range(3))
q, k, v = x @ W_q, x @ W_k, x @ W_v  # (T, hs) each
scores = q @ k.T / math.sqrt(hs)  # (T, T): scores[i, j] = how well key j answers query i
print(
    "q", tuple(q.shape), " k", tuple(k.shape), " v", tuple(v.shape), " scores", tuple(scores.shape)
)

# %% [markdown]
# ## The causal mask
#
# Position `i` is trained to predict character `i + 1`. If it could read position `i + 1`, it would
# copy the answer instead of learning to predict it. So every score above the diagonal (a key
# *after* the query) is set to −∞ before the softmax, which turns it into a weight of
# exactly 0. What remains is a lower-triangular matrix whose rows each sum to 1: row `i` is a
# probability distribution over positions `0..i`.

# %%
mask = torch.ones(T, T, dtype=torch.bool).tril()  # True where query i may look at key j <= i
weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
out = weights @ v  # (T, hs): row i is a weighted mean of the values of positions 0..i
print("row sums:", weights.sum(-1))

fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained")
panels = [
    (mask.float(), "mask (1 = may look)"),
    (scores, "scores q·k / √hs"),
    (weights, "weights (softmax of masked rows)"),
]
for ax, (m, title) in zip(axes, panels):
    im = ax.imshow(m, cmap="viridis")
    ax.set_title(title)
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()

# %% [markdown]
# minigpt builds the same mask in `minigpt.model.causal_mask`. It takes two lengths, because when
# the model generates text with a cache (notebook 5) a few new queries attend to many older keys:
# the triangle is then shifted right by the number of cached positions.

# %%
from minigpt.model import causal_mask

cpu = torch.device("cpu")
assert torch.equal(causal_mask(T, T, cpu), mask)
print(causal_mask(2, 5, cpu).int())  # 2 new queries after 3 cached keys


# %% [markdown]
# ## Your head is minigpt's head
#
# Here is the whole computation as one function. It works on any leading dimensions, so the same
# four lines will serve several heads at once in the next notebook.


# %%
def attend(q, k, v, mask=None, scale=True):
    """Scaled dot-product attention over the last two dimensions of q, k, v: (..., T, hs)."""
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


# %% [markdown]
# `CausalSelfAttention` keeps the three matrices in one `nn.Linear` called `c_attn` (one matrix
# product computes queries, keys and values together), adds a bias to each, and ends with an output
# projection `c_proj`. With `n_head=1` the head size is the full width `C`. Take its weights, run
# your function, and compare:

# %%
from minigpt.model import GPT, CausalSelfAttention, GPTConfig

cfg = GPTConfig(vocab_size=10, block_size=T, n_layer=1, n_head=1, n_embd=C, attn_impl="manual")
attn = CausalSelfAttention(cfg, layer_idx=0).eval()

Wq, Wk, Wv = attn.c_attn.weight.split(C)  # nn.Linear stores (out, in): three (C, C) blocks
bq, bk, bv = attn.c_attn.bias.split(C)
y, w_mine = attend(x @ Wq.T + bq, x @ Wk.T + bk, x @ Wv.T + bv, mask)
mine = attn.c_proj(y)

# GPT builds the mask once per forward as an additive bias (0 or -inf) and hands it to every layer
bias = GPT(cfg).attention_bias(T, 0, True, cpu)  # (1, T, T)
assert torch.equal(bias[0], torch.zeros(T, T).masked_fill(~mask, float("-inf")))

theirs, w_theirs = attn(
    x[None], bias=bias, need_weights=True
)  # the module takes a batch: (1, T, C)
assert torch.allclose(mine, theirs[0], atol=1e-6)
assert torch.allclose(w_mine, w_theirs[0, 0], atol=1e-6)
print(
    "your head and CausalSelfAttention agree; largest difference:",
    (mine - theirs[0]).abs().max().item(),
)

# %% [markdown]
# By default minigpt does not run these lines but PyTorch's fused kernel,
# `F.scaled_dot_product_attention` (`attn_impl="sdpa"`), which computes the same thing faster and
# applies the causal mask itself. Same weights, same answer:

# %%
fused = CausalSelfAttention(
    GPTConfig(vocab_size=10, block_size=T, n_layer=1, n_head=1, n_embd=C), 0
).eval()
fused.load_state_dict(attn.state_dict())
out_fused, _ = fused(x[None])  # no bias given: the kernel masks the future by itself
assert torch.allclose(out_fused[0], mine, atol=1e-5)
print("fused kernel agrees too")

# %% [markdown]
# ## Why divide by √d?
#
# Suppose the components of a query and a key are independent, with mean 0 and variance 1. Their
# dot product is a sum of `d` such products, so its variance is `d` and its standard deviation
# √d. Scores that spread over ±√d make the softmax **saturate**: one key takes almost all
# the weight, and the softmax's gradient, ∂p/∂s = diag(p) − p pᵀ,
# is then almost zero, so the head can no longer learn where to look. Dividing by √d brings
# the scores back to standard deviation 1 at every head size.
#
# Measure it: 500 queries against 64 keys each, at head sizes 4 to 256, with and without the scale.
# Three numbers per setting: the scores' standard deviation, the mean largest weight of a row
# (1/64 ≈ 0.016 would be uniform, 1 is one-hot), and the share of **saturated** rows, whose largest
# weight is above 0.99. A saturated row passes almost no gradient: for a one-hot `p` the Jacobian
# `diag(p) - p pᵀ` is exactly zero.

# %%
head_sizes = [4, 16, 64, 256]
rows = []
for d in head_sizes:
    q_ = torch.randn(500, 1, d)
    k_ = torch.randn(500, 64, d)
    raw = (q_ @ k_.transpose(-2, -1)).squeeze(1)  # (500 queries, 64 keys)
    for scaled in (False, True):
        s = raw / math.sqrt(d) if scaled else raw
        top = s.softmax(-1).max(-1).values  # the largest weight of each row
        saturated = (top > 0.99).float().mean().item()
        rows.append(
            {
                "d": d,
                "scaled": scaled,
                "std": s.std().item(),
                "top": top.mean().item(),
                "sat": saturated,
            }
        )

print(
    f"{'head size':>9}  {'scaled':>6}  {'score std':>9}  {'largest weight':>14}  {'saturated':>9}"
)
for r in rows:
    print(
        f"{r['d']:>9}  {str(r['scaled']):>6}  {r['std']:>9.2f}  {r['top']:>14.3f}  {r['sat']:>9.1%}"
    )

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), layout="constrained")
for ax, key, title in zip(
    axes,
    ["std", "top", "sat"],
    [
        "score standard deviation",
        "mean largest weight of a row",
        "share of saturated rows (> 0.99)",
    ],
):
    for scaled, style in ((False, "o--"), (True, "o-")):
        ys = [r[key] for r in rows if r["scaled"] == scaled]
        ax.plot(head_sizes, ys, style, label="q·k / √d" if scaled else "q·k")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("head size d")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()

unscaled, scaled = ({r["d"]: r for r in rows if r["scaled"] == flag} for flag in (False, True))
print(
    f"head size 256 without the scale: {unscaled[256]['top']:.0%} of a row's weight on one key, "
    f"{unscaled[256]['sat']:.0%} of the rows saturated; "
    f"with it {scaled[256]['top']:.0%} and {scaled[256]['sat']:.0%}"
)

# %% [markdown]
# Without the scale the standard deviation grows like √d, and the wider the head, the more rows
# turn one-hot and stop learning; with it all three numbers stay put at every head size. In
# minigpt the scale is `CausalSelfAttention.scale`, and `GPTConfig(scale_attn=False)` removes it
# (the `no_scale` ablation of `docs/experiments.md`, which question 1 at the end comes back to).

# %%
for flag in (True, False):
    layer = CausalSelfAttention(GPTConfig(vocab_size=10, n_head=4, n_embd=128, scale_attn=flag), 0)
    print(
        f"scale_attn={flag}: scores multiplied by {layer.scale:.4f} (head size {layer.head_size})"
    )

# %% [markdown]
# ## Two heads you can read
#
# Random weights make dull pictures, so build two heads whose weights you choose, on the text
# `to be or not to be`:
#
# * a **previous-character head**. Give every position a one-hot *position* vector. Let the query
#   matrix be the identity and the key matrix shift by one, so that the key of position `j` equals
#   the query of position `j + 1`: each query then matches exactly the key just before it.
# * a **same-character head**. Give every position a one-hot *character* vector and use it as both
#   query and key: a query matches every earlier copy of its own character.
#
# The values are the input vectors themselves; only the weights matter for the picture. Both heads
# go through your `attend` (without the 1/√d, with the strength set by the factor 4), and
# `minigpt.figures.plot_attention` draws them, the same function that draws a trained model's heads
# in `notebooks/diagnostics.py`.

# %%
from IPython.display import display

from minigpt.figures import plot_attention

text = "to be or not to be"
n = len(text)
causal = torch.ones(n, n, dtype=torch.bool).tril()

position = torch.eye(n)  # one-hot position of each character
shift = torch.eye(n).roll(1, dims=1)  # key of position j points at position j + 1
_, w_prev = attend(4 * position, 4 * position @ shift, position, causal, scale=False)

letters = sorted(set(text))
onehot = torch.eye(len(letters))[[letters.index(c) for c in text]]  # one-hot character
_, w_same = attend(4 * onehot, 4 * onehot, onehot, causal, scale=False)

display(plot_attention(torch.stack([w_prev, w_same]), list(text), "two hand-built heads"))

# %% [markdown]
# Head 0 is a bright line just below the diagonal: every position reads the one before it (the
# first has nobody else to read). Head 1 lights up wherever a character occurred before: the second
# `to be` looks back at the first. A trained model learns heads like these from data; notebook 4
# trains one, and `notebooks/diagnostics.py` draws what its heads learned.
#
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint. Until you fill it in, it prints `not done yet`. The
# solutions are in `notebooks/solutions/01_attention.py`; try first.
#
# ### Exercise 1: the mask with a cache
#
# When the model generates with a KV cache (notebook 5), `T` new queries attend to `S` keys, the
# first `S - T` of which were cached earlier: query `i` sits at position `S - T + i`. Write the
# `(T, S)` boolean mask that `minigpt.model.causal_mask(T, S, device)` returns: `True` where query
# `i` may look at key `j`.


# %%
def mask_by_hand(T, S):
    """(T, S) booleans: True where query i (at position S - T + i) may look at key j."""
    raise NotImplementedError


# %%
nb.check(mask_by_hand, "mask_by_hand")

# %% [markdown]
# ### Exercise 2: the weights of a one-head layer
#
# Given a one-head `CausalSelfAttention` called `attn` and a batch `x` of shape `(B, T, C)`,
# return its attention weights `(B, 1, T, T)`, as `attn(x, need_weights=True)[1]` does. The queries,
# keys and values come from `attn.c_attn(x)` (split it in three along the last dimension), and the
# scale is `attn.scale`.


# %%
def head_weights(x, attn):
    """The attention weights (B, 1, T, T) of a one-head CausalSelfAttention on x (B, T, C)."""
    raise NotImplementedError


# %%
nb.check(head_weights, "head_weights")

# %% [markdown]
# ### Exercise 3: attention that sees the whole window
#
# minigpt's model has no switch that removes the causal mask, but its attention layer adds whatever
# `bias` it is given to the scores, and a bias of zeros hides nothing. Write the output (after
# `attn.c_proj`) of a one-head layer **without** the mask; the check compares it with
# `attn(x, bias=torch.zeros(1, T, T))`. Then see what the mask was protecting: with your function,
# does the output at position 2 change when you change the input at position 5? And with the mask
# (`attn(x)`)?


# %%
def attend_everywhere(x, attn):
    """A one-head CausalSelfAttention's output (B, T, C) with no mask: every key is seen."""
    raise NotImplementedError


# %%
nb.check(attend_everywhere, "attend_everywhere")

# %% [markdown]
# <details>
# <summary>What the mask protects</summary>
#
# ```python
# from minigpt.model import CausalSelfAttention, GPTConfig
#
# layer = CausalSelfAttention(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8), 0).eval()
# x1 = torch.randn(1, 8, 8)
# x2 = x1.clone()
# x2[0, 5] += 1.0  # change position 5 only
# for name, f in (("causal", lambda x: layer(x)[0]), ("no mask", lambda x: attend_everywhere(x, layer))):
#     print(name, "output at position 2 changed:", not torch.allclose(f(x1)[0, 2], f(x2)[0, 2]))
# ```
#
# With the mask position 2 is untouched; without it, it changes. Position `i` is trained to
# predict character `i + 1`; without the mask it can read that very character from position
# `i + 1` and copy it, so a model trained that way learns to copy rather than to predict, and has
# nothing to copy when it generates text, where the next character does not exist yet.
# </details>
#
# ## Questions
#
# **1. The scale at initialisation.** minigpt initialises its weights with standard deviation 0.02.
# Measure the standard deviation of the scores of a freshly built `GPT`'s first layer (queries and
# keys after `ln_1`) with and without 1/√hs. `docs/experiments.md` found that the `no_scale`
# ablation *helped* in a 1,000-step run of the small model. Can you explain why from your numbers?
#
# <details>
# <summary>Solution</summary>
#
# ```python
# model = GPT(GPTConfig(vocab_size=65))  # the small model's shape: 4 heads of 32
# idx = torch.randint(65, (1, 64))
# emb = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(64))
# block = model.transformer.h[0]
# qs, ks, _ = block.attn.c_attn(block.ln_1(emb)).split(128, dim=-1)
# qs = qs.view(1, 64, 4, 32).transpose(1, 2)
# ks = ks.view(1, 64, 4, 32).transpose(1, 2)
# raw = qs @ ks.transpose(-2, -1)
# print(f"score std without the scale {raw.std():.3f}, with it {(raw / math.sqrt(32)).std():.3f}")
# ```
#
# Both are far below 1: at initialisation queries and keys are small, so attention starts almost
# uniform either way, and the scale makes it about 5.7 times flatter still. Without it, gradients
# make a head selective sooner, which pays off in a short run. The scale protects against the
# saturation you measured above, which appears once training has made queries and keys large and in
# wider heads; a 1,000-step run of 32-wide heads never gets there.
# </details>
#
# **2. Two back.** Change the previous-character head so that every position looks two characters
# back instead of one.
#
# <details>
# <summary>Solution</summary>
#
# Shift the keys by two positions instead of one:
#
# ```python
# shift2 = torch.eye(n).roll(2, dims=1)
# _, w_two = attend(4 * position, 4 * position @ shift2, position, causal, scale=False)
# display(plot_attention(w_two[None], list(text), "two characters back"))
# ```
#
# The first two positions have no character two places back; their weights spread over what they
# can see.
# </details>
