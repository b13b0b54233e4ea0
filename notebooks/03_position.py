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
# # 3. Where am I? Position encodings
#
# Attention compares queries with keys and averages values. Nothing in that computation says *where*
# a key sits: shuffle the keys and values together and the average is the same. A language model
# must know that in `dog bites man` the dog comes first. This notebook shows the blindness with a
# permutation test, then builds the four ways minigpt gives the model positions, side by side, and
# draws what each does to the attention scores:
#
# | `pos_encoding` | what it does | where, in `minigpt/model.py` |
# |---|---|---|
# | `learned` | a trained vector per position, added to the character embedding | `GPT._run` (`wpe`) |
# | `sinusoidal` | a fixed table of sines and cosines, added the same way | `sinusoidal_table` |
# | `rope` | rotates every query and key by an angle proportional to its position | `rope_cos_sin`, `apply_rope` |
# | `alibi` | subtracts a penalty growing with distance from the scores | `alibi_slopes`, `GPT.attention_bias` |
# | `none` | nothing | |
#
# About 20 minutes; the cells run in seconds.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

import math

import matplotlib.pyplot as plt
import torch

from minigpt.model import GPT, GPTConfig

cpu = torch.device("cpu")


def attend(q, k, v, mask=None):
    """Scaled dot-product attention over the last two dimensions (notebook 1)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


# %% [markdown]
# ## Attention alone is blind to order
#
# Without a mask, attention is *permutation-equivariant*: permute the input positions and the
# outputs come out permuted the same way, each one unchanged. Nothing in the output depends on the
# order, only on the set.

# %%
T, C = 7, 16
x = torch.randn(T, C)
W_q, W_k, W_v = (torch.randn(C, C) / math.sqrt(C) for _ in range(3))
perm = torch.randperm(T)

out, _ = attend(x @ W_q, x @ W_k, x @ W_v)
xp = x[perm]
out_p, _ = attend(xp @ W_q, xp @ W_k, xp @ W_v)
assert torch.allclose(out_p, out[perm], atol=1e-5)
print("permuting the input only permutes the output:", perm.tolist())

# %% [markdown]
# A whole minigpt model shows the same blindness. Take a GPT with `pos_encoding="none"` and one
# layer, and look at the last position of a text, the one that predicts what comes next. Shuffle
# every character before it: the last position still sees the same *set* of characters, and its
# final hidden state does not change at all. The check is repeated for a two-layer model, and for
# one layer with each position encoding.

# %%
from minigpt.tokenizer import CharTokenizer

text = "ROMEO: my lord, the dog bites the man"
tok = CharTokenizer.from_text(text)
ids = tok.encode_tensor(text)[None]  # (1, T)
order = torch.cat(
    [torch.randperm(ids.size(1) - 1), torch.tensor([ids.size(1) - 1])]
)  # keep the last
print("original:", repr(text))
print("shuffled:", repr(tok.decode(ids[0, order].tolist())))


def last_state_change(pos_encoding, n_layer):
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=tok.vocab_size, n_layer=n_layer, n_head=4, n_embd=64, pos_encoding=pos_encoding
    )
    model = GPT(cfg).eval()
    with torch.no_grad():
        a, b = model.hidden_states(ids)[0, -1], model.hidden_states(ids[:, order])[0, -1]
    return (a - b).abs().max().item()


changes = {(p, n): last_state_change(p, n) for p, n in [("none", 1), ("none", 2)]}
changes |= {(p, 1): last_state_change(p, 1) for p in ("learned", "sinusoidal", "rope", "alibi")}
for (p, n), change in changes.items():
    print(f"pos_encoding={p:<10} n_layer={n}: largest change of the last hidden state {change:.1e}")
assert changes[("none", 1)] < 1e-5 and all(
    c > 1e-4 for key, c in changes.items() if key != ("none", 1)
)

# %% [markdown]
# One layer without positions: the change is rounding error. Every encoding breaks the symmetry.
# So, interestingly, does a **second layer** without any encoding: the causal mask lets position `t`
# average over `t + 1` items, so each position of the first layer's output carries a different
# mixture, and the second layer can tell them apart. That is why `docs/experiments.md` finds that a
# model with no position encoding still learns a lot (much better than a bigram model), though less
# than with one.
#
# ## Learned positions
#
# The simplest answer: a table `wpe` of `block_size` vectors, one per position, learned like the
# character embeddings `wte`, and added to them before the first block.

# %%
from minigpt.probes import residual_stream

cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_embd=64, pos_encoding="learned")
model = GPT(cfg).eval()
T_ = ids.size(1)
by_hand = model.transformer.wte(ids[0]) + model.transformer.wpe(torch.arange(T_))
assert torch.allclose(by_hand, residual_stream(model, ids[0])[0], atol=1e-6)  # what enters block 0
print("learned: embeddings + wpe[position], table", tuple(model.transformer.wpe.weight.shape))

# %% [markdown]
# ## Sinusoidal positions
#
# Vaswani et al. (2017) used a fixed table instead: for position `p` and pair `i` of dimensions,
# sin(p·ωᵢ) and cos(p·ωᵢ) with frequencies ωᵢ = 10000^(−2i/d), from one turn every 2π
# positions down to one every 10000·2π. The dot product of two rows
# depends only on the distance between the positions, which attention can use.

# %%
from minigpt.model import sinusoidal_table

n_pos, dim = 64, 64
pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
omega = 10000 ** (-torch.arange(0, dim, 2) / dim)
table = torch.zeros(n_pos, dim)
table[:, 0::2] = torch.sin(pos * omega)
table[:, 1::2] = torch.cos(pos * omega)
assert torch.allclose(table, sinusoidal_table(n_pos, dim), atol=1e-5)

similarity = table @ table.T
assert torch.allclose(
    similarity[1:, 1:], similarity[:-1, :-1], atol=1e-3
)  # constant along diagonals

sin_model = GPT(
    GPTConfig(vocab_size=10, block_size=n_pos, n_head=4, n_embd=dim, pos_encoding="sinusoidal")
)
print(
    "minigpt adds the table scaled by",
    round((sin_model.wpe_table.norm() / table.norm()).item(), 4),
)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
axes[0].imshow(table.T, aspect="auto", cmap="RdBu")
axes[0].set_xlabel("position")
axes[0].set_ylabel("dimension")
axes[0].set_title("sinusoidal table")
im = axes[1].imshow(similarity, cmap="viridis")
axes[1].set_xlabel("position j")
axes[1].set_ylabel("position i")
axes[1].set_title("p_i · p_j: depends on i - j only")
fig.colorbar(im, ax=axes[1], shrink=0.8)
plt.show()

# %% [markdown]
# (The model scales the table down so that it is about as large as the character embeddings at
# initialisation; the comment in `GPT.__init__` says why.)
#
# ## RoPE: rotate queries and keys
#
# Rotary embeddings (Su et al., 2021) add nothing to the embeddings. Inside every layer they rotate
# each pair of dimensions `(2i, 2i+1)` of a query or key at position `p` by the angle p·θᵢ.
# A rotation preserves lengths, and the dot product of a query rotated by m·θ with a key
# rotated by n·θ equals the unrotated pair with one rotation by (n − m)·θ: the score
# depends on the two vectors and on their **distance**, never on where they sit.

# %%
from minigpt.model import apply_rope, rope_cos_sin


def rope_by_hand(x, positions, base=10000.0):
    """Rotate pair i of every vector at position p by the angle p * base^(-2i/hs)."""
    hs = x.size(-1)
    theta = base ** (-torch.arange(0, hs, 2) / hs)
    angle = positions[:, None] * theta[None, :]  # (T, hs/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * angle.cos() - x2 * angle.sin()
    out[..., 1::2] = x1 * angle.sin() + x2 * angle.cos()
    return out


hs, T = 32, 48
positions = torch.arange(T)
qk = torch.randn(1, 4, T, hs)  # (B, nh, T, hs), as inside CausalSelfAttention
assert torch.allclose(
    rope_by_hand(qk, positions), apply_rope(qk, *rope_cos_sin(positions, hs, 10000.0)), atol=1e-5
)
assert torch.allclose(
    rope_by_hand(qk, positions).norm(dim=-1), qk.norm(dim=-1), atol=1e-4
)  # a rotation

q1, k1 = torch.randn(hs), torch.randn(hs)  # one query vector and one key vector, at every position
scores_rope = (
    rope_by_hand(q1.expand(T, hs), positions) @ rope_by_hand(k1.expand(T, hs), positions).T
)
assert torch.allclose(scores_rope[1:, 1:], scores_rope[:-1, :-1], atol=1e-4)  # only i - j matters
print("RoPE matches apply_rope, keeps lengths, and makes the score a function of the distance")

# %% [markdown]
# ## ALiBi: a penalty on distance
#
# ALiBi (Press et al., 2022) does not touch the vectors either. It subtracts `m · (i - j)` from the
# score of query `i` for key `j`: the further back a key, the lower its score. Each head gets its
# own slope `m`, from a geometric sequence, so some heads look far back and some only nearby.
# minigpt adds this penalty to the causal mask's bias in `GPT.attention_bias`, once per forward.

# %%
from minigpt.model import alibi_slopes

nh = 4
slopes = torch.tensor([2 ** (-8 * (h + 1) / nh) for h in range(nh)])  # 1/4, 1/16, 1/64, 1/256
assert torch.allclose(slopes, alibi_slopes(nh))

T = 12
i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
bias_by_hand = (-slopes[:, None, None] * (i - j)).masked_fill(j > i, float("-inf"))  # (nh, T, T)
alibi_model = GPT(
    GPTConfig(vocab_size=10, block_size=T, n_head=nh, n_embd=64, pos_encoding="alibi")
)
assert torch.allclose(bias_by_hand, alibi_model.attention_bias(T, 0, True, cpu))
print(
    "ALiBi slopes:",
    [f"1/{round(1 / s)}" for s in slopes.tolist()],
    "and bias match GPT.attention_bias",
)

# %% [markdown]
# ## What each encoding does to the scores
#
# To see position alone at work, give every position the **same character**. Then the attention
# scores of a head can differ between positions only because of the position encoding. Each panel
# is one head's score matrix, query down, key across, the future left blank:
#
# * `none`: every score is the same;
# * `learned`, at initialisation: random, until training gives the table a meaning;
# * `sinusoidal`: the position part of the scores, `p_i · p_j`, a pattern along the diagonals;
# * `rope`: a pattern along the diagonals too, because only the distance matters;
# * `alibi`: a straight ramp, steeper for the heads with larger slopes (head 0 shown).

# %%
T, C, hs = 32, 64, 32
torch.manual_seed(1)
char = torch.randn(C) * 0.02  # one character embedding, the size minigpt initialises them to
W_q, W_k = torch.randn(C, hs), torch.randn(C, hs)
future = torch.ones(T, T, dtype=torch.bool).triu(1)


def head_scores(x, rotate=False, bias=None):
    """Scores of one head (T, T) for inputs x (T, C), optionally with RoPE or an added bias."""
    q, k = x @ W_q, x @ W_k
    if rotate:
        q, k = rope_by_hand(q, torch.arange(T)), rope_by_hand(k, torch.arange(T))
    s = q @ k.T / math.sqrt(hs)
    return s if bias is None else s + bias


same = char.expand(T, C)
wpe = torch.randn(T, C) * 0.02  # a learned table as it starts
sin_table = sinusoidal_table(T, C)
i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
panels = {
    "none": head_scores(same),
    "learned (at init)": head_scores(same + wpe),
    "sinusoidal: p_i · p_j": sin_table @ sin_table.T,
    "rope": head_scores(torch.randn(C).expand(T, C), rotate=True),
    "alibi, head 0": head_scores(same, bias=-alibi_slopes(4)[0] * (i - j)),
}
fig, axes = plt.subplots(1, 5, figsize=(16, 3.6), layout="constrained")
for ax, (name, s) in zip(axes, panels.items()):
    ax.imshow(s.masked_fill(future, float("nan")), cmap="viridis")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("key")
axes[0].set_ylabel("query")
plt.show()

# %% [markdown]
# The last query's row, as a function of how far back the key is, makes the difference plain: RoPE
# and the sinusoidal table give a score that depends on distance in an oscillating way that
# training can shape; ALiBi gives every head a fixed, straight penalty with its own slope.

# %%
distance = torch.arange(T)  # how many places back the key is, for the last query
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), layout="constrained")
axes[0].plot(distance, (sin_table[-1] @ sin_table.T).flip(0))
axes[0].set_title("sinusoidal: p_last · p_(last - d)")
axes[1].plot(distance, panels["rope"][-1].flip(0))
axes[1].set_title("rope: score of the last query")
for h, m in enumerate(alibi_slopes(4).tolist()):
    axes[2].plot(distance, -m * distance, label=f"head {h}: m = 1/{round(1 / m)}")
axes[2].set_title("alibi: penalty added to the score")
axes[2].legend(fontsize=8)
for ax in axes:
    ax.set_xlabel("distance d (characters back)")
    ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Which works best?
#
# `docs/experiments.md` trains the `small` model with each encoding for 1,000 steps on Tiny
# Shakespeare. The two that act on the scores, RoPE and ALiBi, lead from the first validation on;
# learned and sinusoidal end level; no encoding is clearly worst. Notebook 6 reruns that comparison
# at a small scale, from Python. To train with one yourself:
# `python train.py model.pos_encoding=rope`.
#
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint (`not done yet` until you fill it in). The solutions are in
# `notebooks/solutions/03_position.py`; try first.
#
# ### Exercise 1: RoPE with complex numbers
#
# Read each pair of dimensions `(2i, 2i + 1)` of a query or key as one complex number. Rotating
# the pair by an angle is then multiplying it by `e^(i·angle)`. Write RoPE that way
# (`torch.view_as_complex`, `torch.polar`, `torch.view_as_real`) for `x` of shape `(..., T, hs)` and
# the positions `(T,)` of its rows (they need not start at 0: with a cache they continue), with
# base 10000, and check it against minigpt's `apply_rope`.


# %%
def rope_complex(x, positions):
    """RoPE with complex numbers: pair (2i, 2i+1) is one complex number, turned by position * theta_i."""
    raise NotImplementedError


# %%
nb.check(rope_complex, "rope_complex")

# %% [markdown]
# ### Exercise 2: ALiBi's slopes for any number of heads
#
# Above you wrote the slopes for 4 heads. ALiBi's paper also says what to do when the number of
# heads is not a power of two: take the slopes of the closest power of two below it, then every
# other slope of twice that power until there are enough. Write it for any `n_head`.


# %%
def slopes_by_hand(n_head):
    """ALiBi's slopes, a tensor of n_head numbers, for any number of heads."""
    raise NotImplementedError


# %%
nb.check(slopes_by_hand, "slopes_by_hand")

# %% [markdown]
# ### Exercise 3: ALiBi's bias after a cache
#
# When generating with a cache, `T` new queries follow `past` cached keys. Write the bias
# `(n_head, T, past + T)` that `GPT.attention_bias(T, past, True, cpu)` returns for an ALiBi model:
# minus the slope times the distance from each query back to each key, and `-inf` on the future.
# (Use your `slopes_by_hand`, or `alibi_slopes`.)


# %%
def alibi_bias(T, past, n_head):
    """ALiBi's bias (n_head, T, past + T) for T new queries after `past` cached keys."""
    raise NotImplementedError


# %%
nb.check(alibi_bias, "alibi_bias")

# %% [markdown]
# ## Questions
#
# **1. Odd heads.** Try `GPTConfig(vocab_size=10, n_embd=12, n_head=4, pos_encoding="rope")`. What
# does minigpt say, and why must RoPE's head size be even?
#
# <details>
# <summary>Solution</summary>
#
# ```python
# from minigpt.errors import ConfigError
#
# try:
#     GPTConfig(vocab_size=10, n_embd=12, n_head=4, pos_encoding="rope")
# except ConfigError as e:
#     print(e)
# ```
#
# The head size is 3. RoPE rotates *pairs* of dimensions, `(0, 1)`, `(2, 3)`, ...; an odd head
# size leaves one dimension without a partner. `GPTConfig._check_shapes` refuses it before any layer
# is built.
# </details>
#
# **2. A rotation cannot grow a vector.** Why is it useful that RoPE preserves the length of queries
# and keys, where the learned and sinusoidal encodings add to the embeddings?
#
# <details>
# <summary>Solution</summary>
#
# An added position vector changes the content: the token's embedding and its position share the
# same numbers, and attention has to learn to separate them again. A rotation leaves each
# vector's length, and so the content's "strength", intact, and it acts on queries and keys only:
# the values, which carry the information that attention moves, are not touched. You checked
# the length part above (`rope_by_hand(qk, positions).norm(dim=-1)` equals `qk.norm(dim=-1)`);
# to see that values are untouched, read `CausalSelfAttention.forward`: `apply_rope` is applied to
# `q` and `k` only.
# </details>
#
# **3. How far does each ALiBi head see?** A score lowered by 4 gets about `e⁻⁴ ≈ 2 %` of the
# weight it would otherwise get. At what distance does each of the 4 heads' penalty reach 4, and
# which heads can look across the whole 64-character window of the `small` model?
#
# <details>
# <summary>Solution</summary>
#
# ```python
# for h, m in enumerate(alibi_slopes(4).tolist()):
#     print(f"head {h}: penalty 4 at distance {4 / m:.0f}")
# ```
#
# 16, 64, 256 and 1,024 characters. Head 0 is local (about two words); heads 1 to 3 reach across
# the whole window, head 3 almost without penalty. Training decides what each head looks for, but
# not how far: the slopes are fixed.
# </details>
