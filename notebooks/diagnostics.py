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
# # minigpt diagnostics
#
# The figures of `python -m minigpt diagnose`, drawn interactively with the same functions
# (`minigpt/probes.py` computes, `minigpt/figures.py` draws). Give a checkpoint in the environment
# variable `MINIGPT_CKPT` (or set `CKPT` below); without one, the notebook uses the model notebook 4
# trained, and trains that model first (about a minute) when notebook 4 has not run. Three
# exercises at the end rebuild the probes by hand.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
import os

from minigpt import notebook as nb

nb.setup()

# parameters: the checkpoint (None: notebook 4's model) and the text to look at
CKPT = os.environ.get("MINIGPT_CKPT") or nb.mini_checkpoint("diagnostics")
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak."

# %%
from IPython.display import display

from minigpt import figures, probes
from minigpt.analysis.diagnose import TEMPERATURES, encode
from minigpt.analysis.evaluate import token_losses
from minigpt.checkpoint.load import load_model

loaded = load_model(CKPT)
model, tok = loaded.model, loaded.tokenizer
ids = encode(tok, TEXT)
window = ids[: model.config.block_size]
chars = [tok.decode([i]) for i in window.tolist()]
print(
    f"{CKPT}: {model.config.n_layer} layers, {model.config.n_head} heads, {model.num_params():,} parameters"
)

# %% [markdown]
# ## Attention
# One panel per head and their mean, as many per row as fit the page (one for a 64-character
# window, so the characters stay legible); rows sum to 1 and the upper triangle (the future) is
# empty.

# %%
layers = probes.attention_maps(model, window)
for i, w in enumerate(layers):
    display(figures.plot_attention(w, chars, f"layer {i}"))
display(figures.plot_attention_mean(layers, chars))

# %% [markdown]
# ## Residual stream norm per layer

# %%
display(figures.plot_residual_norms(probes.residual_stream(model, window), chars))

# %% [markdown]
# ## Character embeddings (PCA)

# %%
display(figures.plot_embedding_pca(model.transformer.wte.weight, tok.token_texts()))

# %% [markdown]
# ## Logits and next-character entropy

# %%
display(figures.plot_logits(probes.next_token_logits(model, window), chars))

# %% [markdown]
# ## Per-character loss

# %%
losses = token_losses(model, ids)
display(figures.plot_char_loss(tok.decode(ids.tolist()), losses))

# %% [markdown]
# ## Samples at several temperatures

# %%
for t in TEMPERATURES:
    print(f"--- temperature {t}")
    print(probes.sample_text(model, tok, TEXT, 120, t, seed=1337))

# %% [markdown]
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint (`not done yet` until you fill it in). The solutions are in
# `notebooks/solutions/diagnostics.py`; try first.
#
# ### Exercise 1: next-character entropy
#
# The logits figure above shows the entropy of the next-character distribution at every position
# (`minigpt.probes.entropy`): in nats, 0 when the model is certain, log 65 ≈ 4.17 when it spreads
# evenly over 65 characters. Write it for logits of any shape `(..., V)`.


# %%
def entropy_by_hand(logits):
    """Entropy (nats) of the next-token distribution at every position: (..., V) -> (...)."""
    raise NotImplementedError


# %%
nb.check(entropy_by_hand, "entropy_by_hand")

# %% [markdown]
# ### Exercise 2: how focused is each layer's attention?
#
# `python -m minigpt diagnose` reports, per layer, the mean entropy of the attention rows
# (`minigpt.probes.attention_entropy`): for a list of layers of weights `(nh, T, T)`, the entropy of
# each row (a distribution over keys; masked keys have weight 0), averaged over heads and queries,
# as a float per layer. Then run it on `layers`: which layer looks most narrowly?


# %%
def attention_entropy_by_hand(layers):
    """Per layer (nh, T, T) of attention weights: the mean entropy of its rows, a float."""
    raise NotImplementedError


# %%
nb.check(attention_entropy_by_hand, "attention_entropy_by_hand")

# %% [markdown]
# ### Exercise 3: does each position hold something different?
#
# `minigpt.probes.position_spread` measures, for each residual-stream state `(T, C)`, how far the
# positions' vectors lie from their mean, relative to their size: the mean over positions of
# `|x_t - mean x|` divided by the mean over positions of `|x_t|` (0.0 when every vector is zero).
# 0 means every position holds the same vector (the collapse of notebook 2); near 1 they differ.
# Write it, then run it on `probes.residual_stream(model, window)`.


# %%
def position_spread_by_hand(states):
    """Per state (T, C): mean |x_t - mean x| over mean |x_t|; 0 when every vector is zero."""
    raise NotImplementedError


# %%
nb.check(position_spread_by_hand, "position_spread_by_hand")
