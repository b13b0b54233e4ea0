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
# # 8. Debugging training
#
# A transformer that trains badly rarely crashes: it keeps going, and the loss says only that
# something is wrong, not what. This notebook trains two short runs that fail in two different
# ways. You will:
#
# 1. read each run's signals (the loss, each block's gradient norm, how sharp the attention is) and
#    write down your diagnosis *before* looking at what the run said;
# 2. write three of the checks the run uses to name a symptom (`minigpt/training/symptoms.py`);
# 3. run the fix of each failure and see the signal come back to normal.
#
# `docs/debugging.md` has the whole gallery (`conf/experiment/debug/`), with the math behind each
# failure. About 25 minutes, including about a minute of computing.

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

from pathlib import Path

import matplotlib.pyplot as plt

from minigpt.figures import read_scalars

# %% [markdown]
# ## Two runs that go wrong
#
# Both runs train a 2-block model for 60 steps on Tiny Shakespeare, with one setting changed from
# the defaults. Which setting is the puzzle, so the overrides are kept out of sight in
# `MYSTERY` below: resist reading them until you have written your diagnosis.

# %%
MYSTERY = {
    "A": ["model.n_layer=8", "model.n_embd=32", "model.n_head=2", "model.residual=false"],
    "B": ["model.n_head=1", "model.init_std=1.0"],
}
COMMON = [
    "model=mini",
    "trainer.max_steps=60",
    "trainer.val_check_interval=30",
    # of the diagnostics callbacks keep the gradient norms (optimization) and the symptoms
    *(f"~callbacks.{c}" for c in ("samples", "attention", "projector", "logits", "heads")),
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "sample.max_new_tokens=0",
]
runs = {name: nb.train_run([*COMMON, *extra], "08_debugging") for name, extra in MYSTERY.items()}
scalars = {name: read_scalars(Path(run["run_dir"]) / "tensorboard") for name, run in runs.items()}
for name, run in runs.items():
    print(f"run {name}: {run['steps']} steps, best validation loss {run['best_val_loss']:.3f}")

# %% [markdown]
# ## What the signals say
#
# Each plot puts the two runs side by side. The loss of a healthy 60-step run falls from about
# 4.2 (ln 65: a uniform guess over 65 characters) to below 3. The gradient norm of each block is
# measured before clipping; in a healthy model the blocks' norms are within a factor of a few of
# each other. `view/health/attention_saturation` is the share of attention rows that put more than
# 0.99 of their weight on a single key.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for name, s in scalars.items():
    steps, values = zip(*s["train/loss"])
    axes[0].plot(steps, values, label=f"run {name}")
    layers = sorted(
        (k for k in s if k.startswith("weights/grad_norm/layer")), key=lambda k: int(k[23:])
    )
    axes[1].plot(range(len(layers)), [s[k][-1][1] for k in layers], "o-", label=f"run {name}")
    sat = sorted(k for k in s if k.startswith("view/health/attention_saturation/"))
    axes[2].bar([f"{name} L{k.rsplit('L', 1)[1]}" for k in sat], [s[k][-1][1] for k in sat])
axes[0].set(title="training loss", xlabel="step")
axes[1].set(title="gradient norm per block, last logged step", xlabel="block", yscale="log")
axes[2].set(title="attention rows on one key (share)", ylim=(0, 1))
axes[2].tick_params(axis="x", rotation=90)
for ax in axes[:2]:
    ax.legend()
fig.tight_layout()

# %% [markdown]
# ### Your diagnosis
#
# For each run, pick the symptom you see: `"loss spike"`, `"plateau"`, `"exploding gradients"`,
# `"vanishing gradients"`, `"saturated attention"`, `"dead units"` or `"repetition"`. Then write
# one line on what could cause it. Run the cell after it to compare with what the run said.

# %%
my_diagnosis = {"A": "...", "B": "..."}

# %%
for name, run in runs.items():
    said = run["symptoms"]  # what the run's symptoms callback logged (also in its summary.json)
    named = [line.split(" at step")[0] for line in said]
    verdict = "agrees" if my_diagnosis[name] in named else "differs"
    print(f"run {name}: you said {my_diagnosis[name]!r}, the run named {named} ({verdict})")
    for line in said:
        print("   ", line)

# %% [markdown]
# <details><summary>Answer</summary>
#
# **Run A** stacks 8 blocks with no residual connections (`model.residual=false`). Without the
# skip path, the gradient reaching block 0 is a product of 8 blocks' Jacobians, each with norm
# below one at initialisation, so it shrinks geometrically: the first block's gradient norm is a
# small fraction of the last block's (the right-hand end of the middle plot), the early blocks
# barely learn, and the loss stalls. With residuals, `x + f(x)` has Jacobian `I + f'(x)`, so the
# gradient has a path through every block that does not shrink.
#
# **Run B** initialises the weights with standard deviation 1 instead of 0.02
# (`model.init_std=1.0`). The query and key vectors are then about 50 times longer, their dot
# products about 2,500 times larger, and the softmax turns one-hot: almost every attention row
# sits on a single key. A saturated softmax has a gradient near zero, so attention cannot learn
# where to look, and the huge logits give enormous first losses.
# </details>

# %% [markdown]
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the check cell below it. The checks compare your function with minigpt's own on random
# inputs. Solutions are in `notebooks/solutions/08_debugging.py`.
#
# ### Exercise 1: a loss spike
#
# `losses` is the list of training losses so far, the newest last. Return the newest loss divided
# by the lowest of the ones before it when that ratio exceeds `factor`, else `None`. A newest loss
# that is not finite (`nan` or `inf`) is the worst spike of all: return `math.inf`. A list of fewer
# than two losses has no spike.


# %%
def spike_ratio(losses, factor):
    raise NotImplementedError


# %%
nb.check(spike_ratio, "spike_ratio")

# %% [markdown]
# ### Exercise 2: saturated attention
#
# `maps` is a list with one attention tensor (B, nh, T, T) per layer. For each layer, return the
# share (a float) of the rows for queries at positions `min_pos` and later whose largest weight
# exceeds `sharp`. Early queries see only a few keys, so they are left out.


# %%
def saturation_by_hand(maps, min_pos, sharp):
    raise NotImplementedError


# %%
nb.check(saturation_by_hand, "saturation_by_hand")

# %% [markdown]
# ### Exercise 3: a sample in a loop
#
# Greedy decoding often ends in a loop: `"the the the the"`. A loop shows as text that keeps
# repeating itself: return the share of the `n`-character windows of `text` (`text[i : i + n]`)
# that already appeared earlier in it, that is 1 - (distinct windows) / (all windows), as a float;
# `0.0` when `text` is shorter than `n`.


# %%
def repeated_share_by_hand(text, n):
    raise NotImplementedError


# %%
nb.check(repeated_share_by_hand, "repeated_share_by_hand")

# %% [markdown]
# ## The fixes
#
# One override each: residual connections back on for run A, GPT-2's initial scale for run B.
# The first block's share of the gradient and the attention's sharpness come back to normal,
# and neither run names a symptom.

# %%
FIX = {"A": "model.residual=true", "B": "model.init_std=0.02"}
fixed = {
    name: nb.train_run([*COMMON, *MYSTERY[name], FIX[name]], "08_debugging") for name in MYSTERY
}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
for ax, name in zip(axes, MYSTERY):
    for label, run in (("as it was", runs[name]), (FIX[name], fixed[name])):
        steps, values = zip(*read_scalars(Path(run["run_dir"]) / "tensorboard")["train/loss"])
        ax.plot(steps, values, label=label)
    ax.set(title=f"run {name}: training loss", xlabel="step")
    ax.legend()
fig.tight_layout()

for name, run in fixed.items():
    s = read_scalars(Path(run["run_dir"]) / "tensorboard")
    said = run["symptoms"]
    ratio = s["view/health/grad_ratio_first_last"][-1][1]
    sat = max(v[-1][1] for k, v in s.items() if k.startswith("view/health/attention_saturation/"))
    print(
        f"run {name} with {FIX[name]}: best validation loss {run['best_val_loss']:.3f} "
        f"(was {runs[name]['best_val_loss']:.3f}), first/last block gradient {ratio:.3g}, "
        f"most saturated layer {sat:.2f}, symptoms named: {len(said)}"
    )

# %% [markdown]
# ## Where next
#
# - `docs/debugging.md`: every failure of the gallery with its command, what TensorBoard shows and
#   the fix, and how each threshold was measured.
# - Run one yourself: `python train.py experiment=debug/lr_high`, then `tensorboard --logdir outputs`
#   and open the TEXT tab's `view/health/diagnosis`.
