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
# # 4. Training a small GPT
#
# The pieces of notebooks 1 to 3 make a model. This notebook trains one on Tiny Shakespeare
# (1,115,394 characters of plays). You will:
#
# 1. turn text into numbers with the character tokenizer, and cut it into training windows;
# 2. measure the loss of an untrained model, and learn to read it as a perplexity and as bits per
#    character;
# 3. train a small model for under a minute through the project's own `train()`, the function
#    behind `python train.py`;
# 4. draw the loss curve, and compare samples before and after training.
#
# About 25 minutes, including about a minute of computing.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

import math
import time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

# Tiny Shakespeare, found as every run finds it: data/tinyshakespeare/input.txt in the clone,
# downloaded there once if it is missing (MINIGPT_SHAKESPEARE may name a local copy instead)
text = nb.shakespeare()
print(f"{nb.corpus()}: {len(text):,} characters")
print(text[:250])

# %% [markdown]
# ## Characters to numbers
#
# A model computes with numbers, so each character gets an id: sort the distinct characters and
# number them. That is the whole character tokenizer. minigpt's `CharTokenizer` does exactly this
# (and refuses, or skips, characters it has never seen).

# %%
from minigpt.tokenizer import CharTokenizer

chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}


def encode(s):
    return [stoi[c] for c in s]


def decode(ids):
    return "".join(chars[i] for i in ids)


tok = CharTokenizer.from_text(text)
assert tok.chars == chars and tok.encode("ROMEO:") == encode("ROMEO:") == [
    stoi[c] for c in "ROMEO:"
]
assert decode(tok.encode(text[:1000])) == text[:1000]
print(f"{len(chars)} characters:", "".join(chars).replace("\n", "\\n"))
print("ROMEO: ->", encode("ROMEO:"))

counts = Counter(text)
by_frequency = sorted(chars, key=counts.__getitem__, reverse=True)
plt.figure(figsize=(12, 3))
plt.bar(range(len(chars)), [counts[c] / len(text) for c in by_frequency])
plt.xticks(
    range(len(chars)), [repr(c)[1:-1] if c != " " else "␣" for c in by_frequency], fontsize=7
)
plt.ylabel("share of the text")
plt.title("how often each character occurs")
plt.show()

# %% [markdown]
# ## Windows
#
# Training never sees the whole text at once. `CharDataModule` encodes the corpus, keeps the first
# 90 % of it for training and the last 10 % for validation, and serves batches of random
# *windows*: `block_size` characters of input `x`, and the same window shifted by one character as
# the target `y`. Every position of a window is one prediction: from `x[:t+1]`, predict `y[t]`.
# One window of 64 characters holds 64 training examples.

# %%
from minigpt.data.corpus import CharDataModule

block_size, batch_size = 64, 32
dm = CharDataModule(
    block_size=block_size,
    batch_size=batch_size,
    path=str(nb.corpus()),
    cache_dir=str(nb.ROOT / "data"),
)
dm.setup()

ids = torch.tensor(encode(text))
n_train = int(len(ids) * 0.9)
assert torch.equal(dm.train_data.long(), ids[:n_train]) and torch.equal(
    dm.val_data.long(), ids[n_train:]
)
print(f"train {len(dm.train_data):,} characters, validation {len(dm.val_data):,}")

x, y = next(iter(dm.train_dataloader()))
assert torch.equal(x[:, 1:], y[:, :-1])  # the target is the input shifted by one

# batch number i is drawn from a generator seeded with (seed, i), so a resumed run replays the
# same batches; the same draw by hand:
g = torch.Generator().manual_seed(dm.seed * 1_000_003 + 0)
starts = torch.randint(len(dm.train_data) - block_size, (batch_size,), generator=g)
window = dm.train_data[starts[:, None] + torch.arange(block_size + 1)].long()
assert torch.equal(x, window[:, :-1]) and torch.equal(y, window[:, 1:])

print("x[0]:", repr(decode(x[0].tolist())))
print("y[0]:", repr(decode(y[0].tolist())))

# %% [markdown]
# ## The loss, and two ways to read it
#
# The model outputs, at every position, a score (logit) for each of the 65 characters; softmax
# turns them into probabilities. The loss is the **cross-entropy**: the average over positions of
# −ln p(the character that actually came next), in nats. Build a model of the `mini` shape
# (2 layers, 4 heads, 64 wide) and measure its loss before any training:

# %%
from minigpt.model import GPT, GPTConfig

torch.manual_seed(0)
model = GPT(
    GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=2, n_head=4, n_embd=64)
)
with torch.no_grad():
    logits = model(x)  # (B, T, 65)
loss_by_hand = -logits.log_softmax(-1).gather(-1, y[..., None]).mean()
loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())  # what minigpt's LitGPT computes
assert torch.allclose(loss_by_hand, loss)
print(f"untrained loss {loss:.3f} nats; ln(65) = {math.log(65):.3f}")

# %% [markdown]
# An untrained model spreads its bets evenly, so its loss is ln 65. Two rescalings make a loss
# easier to read, and minigpt logs both beside it (`train/ppl`, `train/bpc`):
#
# * **perplexity** = e^loss: the number of equally likely characters the model is, on
#   average, hesitating between. 65 for the untrained model; 1 for a perfect one.
# * **bits per character** = loss / ln 2: how many bits a compressor driven by the model
#   would need per character. Plain ASCII spends 8.
#
# Two simple models give the scale: one that knows only how often each character occurs
# (*unigram*) and one that also knows the previous character (*bigram*), both estimated on the
# training split and measured on the validation split (the snippet of `docs/experiments.md`).

# %%
train_text, val_text = text[:n_train], text[n_train:]
uni = Counter(train_text)
unigram = -sum(math.log(uni[c] / n_train) for c in val_text) / len(val_text)
pairs, prev = Counter(zip(train_text, train_text[1:])), Counter(train_text[:-1])
V = len(uni)  # add-one smoothing for pairs never seen in training
bigram = -sum(
    math.log((pairs[a, b] + 1) / (prev[a] + V)) for a, b in zip(val_text, val_text[1:])
) / (len(val_text) - 1)
references = {"uniform (untrained)": math.log(65), "unigram": unigram, "bigram": bigram}
print(f"{'model':<20} {'loss':>6} {'perplexity':>10} {'bits/char':>9}")
for name, value in references.items():
    print(f"{name:<20} {value:>6.3f} {math.exp(value):>10.1f} {value / math.log(2):>9.2f}")

# %% [markdown]
# And what the untrained model writes, sampled one character at a time from its output
# (`minigpt.probes.sample_text`, which notebook 5 opens up):

# %%
from minigpt.probes import sample_text

before = sample_text(model, tok, "ROMEO:", 200, temperature=1.0, seed=0)
print(before)

# %% [markdown]
# ## Training through `train()`
#
# `python train.py` composes a configuration from the YAML files in `conf/` with Hydra and calls
# `minigpt.training.run.train(cfg)`. The notebook does the same from Python, with overrides you
# would type on the command line:
#
# * `model=mini`: `conf/model/mini.yaml`, the model above (about 100,000 parameters);
# * `trainer.max_steps=500`, validating every 100 steps on the whole validation split;
# * `optim.lr=3e-3`: three times the default learning rate, which suits a short run
#   (`docs/experiments.md`, section *Learning rate*);
# * `callbacks=none` and no progress bar or end-of-run sample, to keep the output short.
#
# The corpus and the run folder are set on the composed config directly, so any character in
# their paths is safe.

# %%
from omegaconf import OmegaConf

from minigpt.training.run import train

# the overrides of this run, kept in minigpt/notebook.py because notebook 5 trains the same model
# when this notebook has not run: nb.MINI_RUN
print(nb.MINI_RUN)
cfg = nb.compose_train(nb.MINI_RUN)  # Hydra's compose on conf/train.yaml, as train.py composes it
cfg.data.path = str(nb.corpus())
cfg.run_dir = str(nb.outputs("04_training"))
print(OmegaConf.to_yaml(cfg.model))

start = time.perf_counter()
summary = train(cfg)
seconds = time.perf_counter() - start
print(
    f"{summary['steps']} steps in {seconds:.0f} s; "
    f"best validation loss {summary['best_val_loss']:.3f}"
)
print("run folder:", summary["run_dir"])

# %% [markdown]
# The run folder holds what any run writes: `checkpoints/best.ckpt` and `last.ckpt`,
# `summary.json`, `loss_curve.png` and the TensorBoard logs (`tensorboard --logdir` on the folder
# shows every curve). `minigpt.figures.read_scalars` reads those logs back:

# %%
from minigpt.figures import read_scalars

scalars = read_scalars(Path(summary["run_dir"]) / "tensorboard")
fig, ax = plt.subplots(figsize=(8, 4.2))
ax.plot(*zip(*scalars["train/loss"]), lw=0.8, alpha=0.7, label="train/loss (one batch)")
ax.plot(*zip(*scalars["val/loss"]), "o-", label="val/loss (whole validation split)")
for (name, value), colour in zip(references.items(), ("gray", "C2", "C3")):
    ax.axhline(value, color=colour, ls=":", lw=1)
    ax.annotate(
        name, (0, value), textcoords="offset points", xytext=(4, 3), fontsize=8, color=colour
    )
ax.set_xlabel("step")
ax.set_ylabel("loss (nats/char)")
bits = ax.secondary_yaxis("right", functions=(lambda v: v / math.log(2), lambda b: b * math.log(2)))
bits.set_ylabel("bits per character")
ax.set_title("training mini on Tiny Shakespeare")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
for name, value in references.items():
    passed = next((step for step, v in scalars["val/loss"] if v < value), None)
    print(
        f"validation loss below the {name} reference from step {passed}"
        if passed
        else f"never below {name}"
    )

# %% [markdown]
# Once the validation loss is below the bigram reference, the model knows more than which
# character follows which: it uses the longer context that attention gives it.
#
# `best_val_loss` in the summary is the cross-entropy over every non-overlapping 64-character
# window of the validation split. Check it by hand with the best checkpoint:

# %%
from minigpt.checkpoint.load import load_model

loaded = load_model(summary["best_ckpt"])
val = dm.val_data.long()
n = (len(val) - 1) // block_size
xs, ys = val[: n * block_size].view(n, block_size), val[1 : n * block_size + 1].view(n, block_size)
total = 0.0
with torch.no_grad():
    for a, b in zip(xs.split(256), ys.split(256)):
        total += F.cross_entropy(loaded.model(a).flatten(0, 1), b.flatten(), reduction="sum").item()
val_loss = total / ys.numel()
assert abs(val_loss - summary["best_val_loss"]) < 1e-3
print(f"validation loss by hand {val_loss:.4f}  (summary: {summary['best_val_loss']:.4f})")
print(
    f"{val_loss / math.log(2):.2f} bits per character, "
    f"perplexity {math.exp(val_loss):.1f}: the model now"
)
print(f"hesitates between about {math.exp(val_loss):.0f} characters where it started with 65")

# %% [markdown]
# Its text shows it:

# %%
after = sample_text(loaded.model, loaded.tokenizer, "ROMEO:", 300, temperature=0.8, seed=0)
print("--- before training ---")
print(before)
print("\n--- after training ---")
print(after)

# %% [markdown]
# Line breaks, short words and the shape of verse appear; sense does not, yet. The same settings
# for a few minutes (`python train.py model=mini optim.lr=3e-3`), a larger model, or the recipes in
# `conf/experiment/` go further; the README lists them with their measured losses.
#
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint (`not done yet` until you fill it in). The solutions are in
# `notebooks/solutions/04_training.py`; try first.
#
# ### Exercise 1: the loss, by hand
#
# `LitGPT` computes the training loss with `F.cross_entropy` over every position of every window.
# Write it from the logits `(B, T, V)` and the targets `(B, T)`: the mean over positions of minus
# the log-probability the model gave the right next character.


# %%
def loss_by_hand(logits, targets):
    """Mean cross-entropy (nats) of logits (B, T, V) against targets (B, T)."""
    raise NotImplementedError


# %%
nb.check(loss_by_hand, "loss_by_hand")

# %% [markdown]
# ### Exercise 2: the learning-rate schedule
#
# The default schedule, `conf/scheduler/cosine.yaml`, multiplies the learning rate by a factor
# that rises linearly over `warmup_steps`, then falls along half a cosine to `min_lr_ratio` at
# `total_steps`. Write that factor for one step and check it against
# `minigpt.training.schedules.cosine`.


# %%
def cosine_factor(step, total_steps, warmup_steps, min_lr_ratio):
    """The learning rate at `step` as a multiple of the base rate: linear warmup, then half a cosine."""
    raise NotImplementedError


# %%
nb.check(cosine_factor, "cosine_factor")

# %% [markdown]
# ### Exercise 3: the validation windows
#
# Training draws random windows; validation reads the split in consecutive, non-overlapping
# windows, so that every character is predicted exactly once (`minigpt.data.corpus.FixedWindows`).
# Write them for a 1-D tensor of ids: all inputs stacked `(n, block_size)` and their targets.


# %%
def windows_by_hand(data, block_size):
    """Consecutive, non-overlapping windows of block_size inputs (n, T) and their targets (n, T)."""
    raise NotImplementedError


# %%
nb.check(windows_by_hand, "windows_by_hand")

# %% [markdown]
# ## Questions
#
# **1. Compression.** Plain text spends 8 bits per character. How many times smaller would Tiny
# Shakespeare's validation split be, coded with the probabilities of the trained model? And with
# the unigram model?
#
# <details>
# <summary>Solution</summary>
#
# ```python
# for name, value in {"unigram": unigram, "bigram": bigram, "trained mini": val_loss}.items():
#     bits = value / math.log(2)
#     print(f"{name:<13} {bits:.2f} bits/char: {8 / bits:.1f} times smaller")
# ```
#
# An arithmetic coder driven by a model spends about `-log2 p(character)` bits on each character,
# so the bits per character are exactly the compressed size.
# </details>
#
# **2. Where is it hardest?** Which characters of a passage does the trained model find hardest to
# predict? Use `minigpt.analysis.metrics.token_losses` and `minigpt.figures.plot_char_loss`.
#
# <details>
# <summary>Solution</summary>
#
# ```python
# from IPython.display import display
#
# from minigpt.analysis.metrics import token_losses
# from minigpt.figures import plot_char_loss
#
# passage = val_text[:400]
# per_char = token_losses(loaded.model, torch.tensor(loaded.tokenizer.encode(passage)))
# display(plot_char_loss(passage, per_char))
# ```
#
# The darkest cells are capital letters that start a name, then the first letters of words:
# which word comes next is where the model is least sure. The colon and the line break after a
# speaker's name, and the endings of common words, cost little.
# </details>
#
# **3. The learning rate.** Train again with the default learning rate (drop `optim.lr=3e-3`) and
# compare the best validation losses. Which would you pick for a 500-step run?
#
# <details>
# <summary>Solution</summary>
#
# ```python
# default_lr = [o for o in nb.MINI_RUN if not o.startswith("optim.lr")]
# print(nb.train_run(default_lr, "04_training_lr1e-3")["best_val_loss"], "against", summary["best_val_loss"])
# ```
#
# The default 1e-3 ends noticeably higher after 500 steps. It is cautious for short runs of small
# models; `docs/experiments.md` measures the whole range for the `small` model.
# </details>
