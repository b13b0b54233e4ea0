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
# # 7. What the heads learned
#
# Each attention head of a trained model does one job you can name and measure. This notebook
# trains a model in which the most famous of them forms, the **induction head** (Olsson et al.,
# 2022, "In-context learning and induction heads"): a head that, at a token it has seen before,
# looks at what followed that token last time and predicts it again. It is built from two heads
# in two layers: a **previous-token head** in layer 0 writes "the token before me was X" into each
# position, and the induction head in layer 1 searches for the position whose previous token is
# the current one.
#
# You write the detectors that find such heads (previous-token, newline, induction), find the
# heads of the trained model, remove them with a forward hook to see what they were worth, read
# the model's guesses after each layer with the logit lens, and watch the phase change in which
# the induction head appears. `docs/heads.md` tells the same story on the full experiment.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

# %% [markdown]
# ## A model in which an induction head forms
#
# `python train.py experiment=induction` (conf/experiment/induction.yaml) trains two layers of two
# heads on Tiny Shakespeare cut into pieces of 4 to 16 characters, each written twice
# (`conf/data/repeats.yaml`): "To be, orTo be, or not to not to ...". The first copy of a piece
# is predicted as well as a small model knows English; the second copy can be predicted almost
# perfectly, but only by copying from the first. Here it runs for 2,000 of the experiment's
# 4,000 steps: about a minute on 2 CPU cores busy with other work.

# %%
import time

from minigpt.checkpoint.load import load_model

INDUCTION_RUN = [
    "experiment=induction",
    "trainer.max_steps=2000",
    "trainer.val_check_interval=200",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "sample.max_new_tokens=0",
]
start = time.perf_counter()
run = nb.train_run(INDUCTION_RUN, "07_heads")
print(f"{run['steps']} steps in {time.perf_counter() - start:.0f} s, written to {run['run_dir']}")
loaded = load_model(run["best_ckpt"])
model, tok = loaded.model, loaded.tokenizer
T = model.config.block_size

# %% [markdown]
# ## Detectors: what a head attends to
#
# A layer's attention weights for a batch of windows are a tensor `(B, nh, T, T)`: row `t` of head
# `h` is how query `t` spreads its attention over the keys `0 .. t`. A head's job shows as where
# that weight goes. `minigpt.probes.pattern_scores` measures a few kinds of heads; you write three.
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint (`not done yet` until you fill it in). The solutions are in
# `notebooks/solutions/07_heads.py`; try first.
#
# ### Exercise 1: the previous-token head
#
# The previous-token score of each head: the weight each query `t >= 1` puts on key `t - 1`,
# averaged over the batch and the queries, a tensor `(nh,)`. A head that always looks one back
# scores 1.


# %%
def previous_score_by_hand(maps):
    """Per head (nh,): the mean weight a query t >= 1 puts on t - 1, over the batch and queries."""
    raise NotImplementedError


# %%
nb.check(previous_score_by_hand, "previous_score_by_hand")

# %% [markdown]
# ### Exercise 2: the newline head
#
# Some heads find the start of the line: they attend to the most recent newline. For each query
# `t`, let `j` be the last position `<= t` whose token is marked (`marked`, `(B, T)` booleans). The
# score is the mean weight on `j` over the queries that have one at `t - 2` or earlier (so that it
# is neither the previous nor the current token), per head; NaN when no query has one.
# `torch.cummax` finds the last mark at every position at once.


# %%
def newline_score_by_hand(maps, marked):
    """Per head (nh,): the mean weight on the most recent marked position j, over the queries t
    whose j lies at t - 2 or earlier (NaN when no query has one)."""
    raise NotImplementedError


# %%
nb.check(newline_score_by_hand, "newline_score_by_hand")

# %% [markdown]
# ### Exercise 3: the induction head
#
# The induction score is measured on random tokens written twice, `P` of them then the same `P`
# again (`minigpt.probes.repeated_random_ids`), so that nothing but copying can predict the
# second copy. A token at position `q` of the second copy (`P <= q < 2P`) first appeared at
# `q - P`; an induction head looks at the token that followed it, `q - P + 1`. The score is the
# mean weight on that key over the batch and the queries of the second copy, per head.


# %%
def induction_score_by_hand(maps, period):
    """Per head (nh,): the mean weight a query q of the second copy puts on key q - P + 1."""
    raise NotImplementedError


# %%
nb.check(induction_score_by_hand, "induction_score_by_hand")

# %% [markdown]
# ## The heads of the trained model
#
# `minigpt.probes.head_scores` runs these detectors (and a few more) on validation text and, for
# the induction score, on random tokens written twice. A head that spread its attention evenly
# would score `uniform_induction` on induction: anything several times that is copying.

# %%
import torch
from IPython.display import display

from minigpt import figures, probes
from minigpt.analysis.metrics import evaluation_ids

val, _ = evaluation_ids(loaded, {})
windows = probes.text_windows(val, T, 64)  # (64, T + 1): inputs and next-token targets
scores = probes.head_scores(model, windows[:, :-1], probes.mark_ids(tok))
print(f"uniform attention's induction score: {probes.uniform_induction(T // 2):.3f}")
for name in ("previous", "newline", "induction"):
    print(
        f"{name:>9}: "
        + "  ".join(
            f"L{i}H{h} {v:.3f}"
            for i, row in enumerate(scores[name].tolist())
            for h, v in enumerate(row)
        )
    )
display(figures.plot_head_scores(scores))

# %% [markdown]
# The induction head is the layer-1 head with the highest induction score; the previous-token
# head, the layer-0 head with the highest previous-token score. See them at work on a line
# written twice: in the second copy, the induction head's attention runs along a diagonal stripe
# one position after the first copy (each character looks at the one that followed it last time),
# while the previous-token head's hugs the diagonal.

# %%
induction_layer, previous_layer = 1, 0
induction_head = int(scores["induction"][1].argmax())
previous_head = int(scores["previous"][0].argmax())
print(f"induction head: L1H{induction_head}; previous-token head: L0H{previous_head}")

line = "thou art the sun"  # 16 characters, written twice: one context of 32
ids = torch.tensor(tok.encode(line + line))
maps = probes.attention_maps(model, ids)  # per layer (nh, T, T)
chars = [tok.decode([i]) for i in ids.tolist()]
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), layout="constrained")
shown = [
    (maps[0][previous_head], f"L0H{previous_head}"),
    (maps[1][induction_head], f"L1H{induction_head}"),
]
for ax, (weights, name) in zip(axes, shown):
    ax.imshow(weights, vmin=0, vmax=1)
    ax.set_title(f"{name}: rows are queries, columns keys", fontsize=9)
    ax.set_xticks(range(len(chars)), chars, fontsize=6)
    ax.set_yticks(range(len(chars)), chars, fontsize=6)
plt.show()

# %% [markdown]
# ## Ablation: what a head is worth
#
# Removing a head means setting its output to zero while the model runs. The heads' outputs sit
# side by side in the input of the layer's output projection `attn.c_proj` (`(B, T, C)`, head `h`
# in channels `h * head_size` to `(h + 1) * head_size`), so a **forward pre-hook** on `c_proj`,
# which may replace a module's input before it runs, removes a head without touching the model's
# code. `minigpt.analysis.ablation.ablated` does exactly this.
#
# ### Exercise 4: remove a head with a forward hook
#
# Register a pre-hook on `model.transformer.h[layer].attn.c_proj` that returns its input (a
# tuple) with the head's channels set to zero (on a copy), run the model on `ids` without
# gradients, and remove the hook afterwards (`handle.remove()`, in a `finally`), so that the model
# is left as it was.


# %%
def ablate_head_by_hand(model, ids, layer, head):
    """The logits (B, T, V) with the output of one head set to zero by a forward pre-hook."""
    raise NotImplementedError


# %%
nb.check(ablate_head_by_hand, "ablate_head_by_hand")

# %% [markdown]
# Now the evidence that these two heads are the copying circuit: on validation text written
# twice (the first half of each window, then the same again), removing either raises the loss on
# the repeated copy far more than on the first copy, which no copy in the context can help with.
# (`repeat_ablation` uses minigpt's hooks, so this runs before you finish the exercise.)

# %%
from minigpt.analysis.ablation import Part, repeat_ablation

repeated = probes.repeated_windows(windows[:, :-1], T // 2)  # (64, T): each half-window twice
parts = [Part("head", 1, induction_head), Part("head", 0, previous_head)]
for row in repeat_ablation(model, parts, repeated):
    print(
        f"removed {row['removed']:>12}: first copy {row['first_copy']:.3f}, "
        f"repeated copy {row['repeated_copy']:.3f} nats"
    )

# %% [markdown]
# How does the induction head find the right position? Its keys must read what the
# previous-token head wrote. The K-composition score (Elhage et al., 2021) measures it from the
# weights alone: `||W_QK W_OV||_F / (||W_QK||_F ||W_OV||_F)`, where `W_OV` is the map from what the
# earlier head reads to what it writes and `W_QK` the later head's bilinear form between queries
# and keys. It is largest for the earlier head whose output the keys read most.

# %%
k_comp = probes.composition_scores(model, "k")[1, induction_head, 0]
for h, value in enumerate(k_comp.tolist()):
    print(f"K-composition of L1H{induction_head} with L0H{h}: {value:.3f}")

# %% [markdown]
# The same question asked of the loss: remove the previous-token head's output from what layer
# 1's keys read, and from nothing else (`keys_without` recomputes the keys with forward hooks).
# If the induction head finds its position through those keys, the repeated copy suffers.

# %%
from minigpt.analysis.circuit import key_path_row

row = key_path_row(model, Part("head", 0, previous_head), 1, repeated)
first, again = row["first_copy"], row["repeated_copy"]
print(f"removed {row['removed']}: first copy {first:.3f}, repeated copy {again:.3f} nats")

# %% [markdown]
# ## The logit lens: where the answer appears
#
# The logit lens (nostalgebraist, 2020) reads the residual stream after any block as if it were
# the last: through the final LayerNorm and the unembedding. It shows in which layer the model's
# guess takes shape.
#
# ### Exercise 5: the logit lens by hand
#
# For a residual-stream state `(..., C)`, apply the model's final norm (its module `transformer.ln_f`),
# then the model's `logits` method, in eval mode and without gradients.


# %%
def lens_by_hand(model, state):
    """A residual-stream state (..., C) read out as the last block's: final norm, unembedding."""
    raise NotImplementedError


# %%
nb.check(lens_by_hand, "lens_by_hand")

# %% [markdown]
# On the text written twice, the probability the lens gives the true next character in the
# repeated copy, read after the embeddings, after block 0 and after block 1: the copy is only
# there after block 1, where the induction head works.

# %%
states = probes.residual_states(model, repeated[:, :-1])  # after the embeddings, block 0, block 1
targets = repeated[:, 1:]
P = T // 2
for point, state in zip(probes.lens_points(model.config.n_layer), states):
    p = probes.lens_logits(model, state).softmax(-1).gather(-1, targets[..., None])[..., 0]
    first, again = p[:, : P - 1].mean(), p[:, P:].mean()
    print(f"after {point:>6}: p(next) on the first copy {first:.3f}, on the repeat {again:.3f}")

# %% [markdown]
# ## The phase change
#
# The HeadScores callback logged every head's scores during training, with the loss on text
# written twice and the in-context-learning score: the loss late in the context minus the loss
# early in it (Olsson et al. take the 500th and the 50th token of 512; here the same fractions of
# 32). The previous-token head forms first; then, within a few hundred steps, the induction head
# appears, the loss on the repeated copy falls away from the first copy's, and the ICL score
# drops. TensorBoard shows the same curves: `tensorboard --logdir` the run folder printed above,
# CUSTOM SCALARS tab, section "induction".

# %%
from minigpt.analysis.circuit import INDUCTION_FACTOR, phase_change_step

scalars = figures.read_scalars(f"{run['run_dir']}/tensorboard")
uniform = probes.uniform_induction(T // 2)
step = phase_change_step(scalars, INDUCTION_FACTOR * uniform)
threshold = INDUCTION_FACTOR * uniform
print(
    f"first step with an induction score of {INDUCTION_FACTOR:g} x uniform ({threshold:.3f}): {step}"
)
display(figures.plot_induction_story(scalars, uniform, step))

# %% [markdown]
# ### Exercise 6: the in-context-learning score
#
# From the loss at each position of the context, `(T,)` (`minigpt.probes.position_losses`), the
# ICL score is the loss at position `round(T * 500 / 512) - 1` minus the loss at position
# `round(T * 50 / 512) - 1` (0-based, at least 0), as a float. Negative means the model predicts
# better the more context it has.


# %%
def icl_score_by_hand(losses):
    """The loss at 500/512 of the context minus the loss at 50/512 of it (Olsson et al., 2022)."""
    raise NotImplementedError


# %%
nb.check(icl_score_by_hand, "icl_score_by_hand")

# %% [markdown]
# The trained model's ICL score on plain validation text and on text written twice, 64 windows
# each: late in a window of text written twice the repeat has begun, and the copy is predicted.

# %%
for name, data in (("validation text", windows), ("text written twice", repeated)):
    losses = probes.position_losses(model, data)
    print(
        f"{name:>18}: ICL score {probes.icl_score(losses):+.3f} nats (first loss {losses[0]:.3f})"
    )

# %% [markdown]
# ## Questions
#
# 1. Why does the induction score use random tokens rather than Shakespeare?
#
# <details><summary>Answer</summary>
#
# In real text the token after an earlier occurrence is often predictable without copying (after
# "th" comes "e" anyway), so attention there would not tell an induction head from a bigram
# guess. In random tokens only copying predicts the second copy.
# </details>
#
# 2. Removing the previous-token head costs loss on the first copy too, and the induction head
# almost none there. Why?
#
# <details><summary>Answer</summary>
#
# The previous-token head is useful by itself: knowing the previous character helps to predict
# the next one in any text, which is also why it forms first, long before the induction head
# that builds on it. The induction head only pays off when the context holds a copy.
# </details>
#
# 3. Why does the data cut the text into pieces of varying length rather than repeating each
# window's first half?
#
# <details><summary>Answer</summary>
#
# With a fixed period P, a head could attend to position t - P + 1 by position alone, using the
# position embeddings, without looking at the tokens: it would score as an induction head on
# sequences of period P and fail on any other. Varying lengths leave content as the only way.
# </details>
