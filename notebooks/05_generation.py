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
# # 5. Generating text
#
# A trained model gives, for any text, a probability for every possible next character. Generating
# is a loop: pick a character, append it, ask again. *How* to pick is a choice, and it changes the
# text a lot. In this notebook you will:
#
# 1. write greedy decoding, temperature, top-k and top-p by hand and check them against
#    `minigpt.sampling`;
# 2. write the decoding loop by hand and check it against `minigpt.sampling.generate`;
# 3. compare greedy, temperature, top-k, top-p and beam search side by side on one prompt;
# 4. see how the KV cache avoids recomputing the past, and measure its speed-up.
#
# About 25 minutes. The notebook uses the model trained in notebook 4 if you ran it; otherwise it
# trains the same one first (about a minute).

# %%
# The set-up every notebook shares (minigpt/notebook.py): seeds torch, uses one CPU thread, sets the
# plot defaults; `nb.check` tells you whether an exercise agrees with minigpt's own code.
from minigpt import notebook as nb

nb.setup()

import statistics
import time

import matplotlib.pyplot as plt
import torch

from minigpt.checkpoint.load import load_model

# the latest model notebook 4 trained, or the same model trained now (about a minute)
CKPT = nb.mini_checkpoint("05_generation")
loaded = load_model(CKPT)
model, tok = loaded.model.eval(), loaded.tokenizer
print(f"{CKPT}: {model.num_params():,} parameters, block_size {model.config.block_size}")

# %% [markdown]
# ## One step: from logits to a character
#
# Give the model a prompt and take its logits at the last position: one score per character.
#
# * **Greedy** takes the highest score.
# * **Temperature** `τ` divides the logits before the softmax: below 1 sharpens the distribution,
#   above 1 flattens it; `τ → 0` is greedy.
# * **Top-k** keeps only the `k` most likely characters.
# * **Top-p** (nucleus) keeps the smallest set of most likely characters whose probabilities add up
#   to at least `p`: few when the model is sure, many when it is not.
#
# Each by hand, then checked against `minigpt.sampling`, which turns logits into the logits to
# sample from (`process_logits`, with one filter per strategy):

# %%
from minigpt.sampling import SamplingConfig, filter_top_k, filter_top_p, process_logits

prompt = "ROMEO:\nI will "
ids = torch.tensor([tok.encode(prompt)])
with torch.no_grad():
    logits = model(ids)[0, -1]  # (V,)
probs = logits.softmax(-1)


def temperature_probs(logits, t):
    return (logits / t).softmax(-1)


def top_k_probs(logits, k):
    kept = logits.masked_fill(logits < logits.topk(k).values[-1], float("-inf"))
    return kept.softmax(-1)


def top_p_probs(logits, p):
    sorted_probs, order = logits.softmax(-1).sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely characters
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep[order[before < p]] = True  # needed while the mass so far is short of p
    return logits.masked_fill(~keep, float("-inf")).softmax(-1)


assert logits.argmax() == process_logits(logits[None], SamplingConfig(temperature=0))[0].argmax()
for t in (0.5, 1.5):
    theirs = process_logits(logits[None], SamplingConfig(temperature=t))[0].softmax(-1)
    assert torch.allclose(temperature_probs(logits, t), theirs, atol=1e-6)
assert torch.allclose(
    top_k_probs(logits, 5), filter_top_k(logits[None], 5)[0].softmax(-1), atol=1e-6
)
assert torch.allclose(
    top_p_probs(logits, 0.9), filter_top_p(logits[None], 0.9)[0].softmax(-1), atol=1e-6
)
print("greedy, temperature, top-k and top-p match minigpt.sampling")
print(
    f"after {prompt!r} the model's favourite is "
    f"{tok.decode([int(logits.argmax())])!r} ({probs.max():.0%})"
)

# %%
from minigpt.figures import show_char

shown = probs.argsort(descending=True)[:15]  # the 15 most likely characters
variants = {
    "temperature 1": probs,
    "temperature 0.5": temperature_probs(logits, 0.5),
    "temperature 1.5": temperature_probs(logits, 1.5),
    "top-k 5": top_k_probs(logits, 5),
    "top-p 0.9": top_p_probs(logits, 0.9),
}
fig, axes = plt.subplots(1, len(variants), figsize=(16, 3), layout="constrained", sharey=True)
for ax, (name, p) in zip(axes, variants.items()):
    ax.bar(range(len(shown)), p[shown])
    ax.set_xticks(range(len(shown)), [show_char(tok.decode([int(i)])) for i in shown], fontsize=8)
    ax.set_title(f"{name}: {int((p > 0).sum())} kept" if "top" in name else name, fontsize=10)
axes[0].set_ylabel("probability")
fig.suptitle(f"next character after {prompt!r}")
plt.show()

# %% [markdown]
# ## The loop
#
# Generating is repeating that step: feed the text, pick, append. The model sees at most
# `block_size` characters; within that first window, by hand and greedily:

# %%
from minigpt.sampling import generate

greedy = SamplingConfig(temperature=0)


def greedy_by_hand(model, ids, n):
    for _ in range(n):
        with torch.no_grad():
            logits = model(ids[:, -model.config.block_size :])[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


n_new = model.config.block_size - ids.size(1)  # past the window, see "The KV cache" below
mine = greedy_by_hand(model, ids, n_new)
assert torch.equal(mine, generate(model, ids, n_new, greedy, use_cache=False))
assert torch.equal(mine, generate(model, ids, n_new, greedy, use_cache=True))
print(repr(tok.decode(mine[0].tolist())))

# %% [markdown]
# ## Strategies side by side
#
# The same prompt, 300 characters each. For every result, two numbers: the model's own perplexity
# of the text it wrote (low means the model found it likely) and *distinct-2*, the share of
# different word pairs among all word pairs (low means it repeats itself). Beam search keeps the 4
# continuations of highest total probability at every step (`minigpt.sampling.beam_search`).

# %%
from minigpt.analysis.evaluate import distinct_n, self_perplexity
from minigpt.sampling import beam_search, make_generator

prompt = "ROMEO:\n"
ids = torch.tensor([tok.encode(prompt)])
n_new = 300
strategies = {
    "greedy": SamplingConfig(temperature=0),
    "temperature 0.8": SamplingConfig(temperature=0.8),
    "temperature 1.2": SamplingConfig(temperature=1.2),
    "top-k 10": SamplingConfig(top_k=10),
    "top-p 0.9": SamplingConfig(top_p=0.9),
}
results = {}
for name, sampling in strategies.items():
    out = generate(model, ids, n_new, sampling, generator=make_generator(0))
    results[name] = out[0, ids.size(1) :]
results["beam search (4)"] = beam_search(model, ids, n_new, num_beams=4)[0].ids

rows = []
for name, new in results.items():
    text = tok.decode(new.tolist())
    ppl = self_perplexity(model, ids, new[None], stride=None)
    rows.append((name, ppl, distinct_n([text], 2)))
    print(f"=== {name}: perplexity {ppl:.2f}, distinct-2 {rows[-1][2]:.2f}")
    print(prompt + text[:200], "\n")

# %%
plt.figure(figsize=(6, 4))
for name, ppl, d2 in rows:
    plt.scatter(ppl, d2)
    plt.annotate(name, (ppl, d2), textcoords="offset points", xytext=(5, 3), fontsize=8)
plt.xlabel("the model's perplexity of its own text (lower: more likely)")
plt.ylabel("distinct-2 (higher: less repetition)")
plt.title("likelihood against variety")
plt.grid(alpha=0.3)
plt.show()

# %% [markdown]
# Greedy and beam search write what the model finds most likely, and that is a loop: the same
# words again and again. Sampling at temperature 1 or above gives variety, at the price of odd
# words; truncating the tail (top-k, top-p) or cooling it (0.8) is the usual compromise. Which
# reads best is a matter of taste; `python -m minigpt evaluate` computes these numbers, and more,
# for any checkpoint.
#
# ## The KV cache
#
# In the loop above, every new character runs the model over the whole window again, although the
# keys and values of all earlier positions are exactly what they were at the previous step: a
# position only sees positions before it. A **KV cache** keeps each layer's keys and values, so a
# step runs the model on the *one* new character: its query attends to the cached keys and values
# plus its own. The causal mask of notebook 1 was built for this: one new query after `S - 1`
# cached keys is `causal_mask(1, S)`.
#
# By hand, with minigpt's `KVCache`: feed the prompt, then one character, and compare the logits
# with a full recompute.

# %%
text_ids = torch.tensor([tok.encode("ROMEO:\nWhat light")])
cache = model.new_cache()
with torch.no_grad():
    model(text_ids[:, :-1], cache=cache)  # the prompt fills the cache
    print(
        "cached:",
        cache.length,
        "positions; layer 0 keys",
        tuple(cache.k[0][:, :, : cache.length].shape),
    )
    step = model(text_ids[:, -1:], cache=cache)[0, -1]  # one new position
    full = model(text_ids)[0, -1]
assert torch.allclose(step, full, atol=1e-5)
print("one cached step gives the logits of a full recompute")

# %% [markdown]
# How much it saves depends on the length of the context. The trained model reads at most 64
# characters; to see the trend, also time an untrained model of the `small` shape (4 layers of
# 128) with a window of 256 characters. For each, generate greedily with and without the cache,
# three times in turn, and time every step. Both must write the same text.

# %%
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import stream_tokens


def timed_generation(model, n, use_cache):
    """The ids of n greedy steps from a one-character prompt, and the seconds each step took."""
    ids, times = [], []
    start = time.perf_counter()
    for nxt in stream_tokens(
        model, torch.zeros(1, 1, dtype=torch.long), n, greedy, use_cache=use_cache
    ):
        now = time.perf_counter()
        ids.append(nxt)
        times.append(now - start)
        start = now
    return torch.cat(ids), torch.tensor(times)


torch.manual_seed(0)
long_model = GPT(
    GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=4, n_head=4, n_embd=128)
).eval()
timings, speedups = {}, {}
for name, m, n in (
    ("trained mini, block 64", model, 150),
    ("small shape, block 256", long_model, 300),
):
    runs, texts = {True: [], False: []}, {}
    for _ in range(3):  # in turn, so that both see the same load on the machine
        for use_cache in (True, False):
            texts[use_cache], times = timed_generation(m, n, use_cache)
            runs[use_cache].append(times)
    assert torch.equal(texts[True], texts[False])  # the cache changes the speed, never the text
    timings[name] = {c: torch.stack(r).median(0).values for c, r in runs.items()}
    totals = {c: statistics.median(float(t.sum()) for t in r) for c, r in runs.items()}
    speedups[name] = totals[False] / totals[True]
    print(
        f"{name}: {n / totals[True]:,.0f} characters/s with the cache, "
        f"{n / totals[False]:,.0f} without: "
        f"speed-up {speedups[name]:.1f}x"
    )
print(f"threads: {torch.get_num_threads()}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
for ax, (name, t) in zip(axes, timings.items()):
    ax.plot(1000 * t[False], lw=0.8, label="full recompute")
    ax.plot(1000 * t[True], lw=0.8, label="KV cache")
    ax.set_title(f"{name}: speed-up {speedups[name]:.1f}x")
    ax.set_xlabel("generated character")
    ax.set_ylabel("ms per character")
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()

# %% [markdown]
# Without the cache, the cost of a step grows with the context until the window is full; with it,
# each step costs about the same. The sawtooth is the window policy of `minigpt.sampling`: when
# the text outgrows `block_size`, the context restarts from its most recent half, which the cache
# fills again in one pass (the spikes), so cached decoding stays exactly equal to a full
# recompute. The longer the window, the more the cache saves.
#
# ## Exercises
#
# Each exercise is a function to fill in: replace `raise NotImplementedError` with your code and
# run the cell after it, which compares your function with minigpt's own code on random inputs and
# prints `pass`, or `FAIL` with a hint (`not done yet` until you fill it in). The solutions are in
# `notebooks/solutions/05_generation.py`; try first.
#
# ### Exercise 1: min-p
#
# `SamplingConfig(min_p=p)` keeps the characters whose probability is at least `p` times that of
# the most likely one. Write it for a batch of logits `(B, V)`: the logits with `-inf` where a
# character is dropped, as `minigpt.sampling.filter_min_p` returns them.


# %%
def min_p_logits(logits, p):
    """Min-p on logits (B, V): -inf where a probability is below p times the row's largest."""
    raise NotImplementedError


# %%
nb.check(min_p_logits, "min_p_logits")

# %% [markdown]
# ### Exercise 2: the repetition penalty
#
# `SamplingConfig(repetition_penalty=r)` makes every character already in the text less likely
# (CTRL, Keskar et al. 2019): a positive logit is divided by `r`, a negative one multiplied by it.
# Write it for logits `(B, V)` and the ids seen so far `(B, n)`
# (`minigpt.sampling.apply_repetition_penalty`).


# %%
def penalise_repeats(logits, seen, penalty):
    """CTRL's repetition penalty on logits (B, V) for the ids in seen (B, n)."""
    raise NotImplementedError


# %%
nb.check(penalise_repeats, "penalise_repeats")

# %% [markdown]
# ### Exercise 3: what the model reads past the window
#
# The model reads at most `block_size` characters. When the text grows past that, minigpt does
# not slide the window by one character per step (that would cost a full recompute per character
# with a KV cache); it restarts the context from the most recent `keep` characters
# (`block_size // 2` by default) and lets it grow again. For a prompt of `prompt_len` characters
# and `n_new` new ones, return the list of the positions where the context starts when each new
# character is chosen, as `minigpt.sampling.ContextFeeder` does. Then print it for
# `context_starts(10, 100, 64, 32)`: how long is the shortest context the model ever reads?


# %%
def context_starts(prompt_len, n_new, block_size, keep):
    """For each of n_new tokens, the first position of the context the model reads to pick it."""
    raise NotImplementedError


# %%
nb.check(context_starts, "context_starts")

# %% [markdown]
# ## Questions
#
# **1. Why does greedy decoding loop?** Find the repeated piece in the greedy text above.
#
# <details>
# <summary>Solution</summary>
#
# ```python
# g = tok.decode(results["greedy"].tolist())
# for length in range(40, 4, -1):
#     pieces = [g[i : i + length] for i in range(len(g) - length)]
#     repeated = next((p for p in pieces if g.count(p) > 2), None)
#     if repeated:
#         print(f"{repeated!r} occurs {g.count(repeated)} times")
#         break
# ```
#
# Greedy decoding is deterministic given the context, and the most likely continuation of a
# common phrase tends to lead back to the same phrase. The context is not a sliding window of the
# last 64 characters: `minigpt.sampling.ContextFeeder` lets it grow to `block_size` (64) and then
# restarts it from the most recent `block_size // 2` (32) characters, so the model reads between 32
# and 64 characters (exercise 3 computes where it starts). Once the text repeats a piece at least
# that long, and the window has restarted at the same place within it, the model sees the same
# context again, picks the same characters, and the text cycles forever. Sampling breaks the
# cycle by sometimes choosing a less likely character.
# </details>
#
# **2. Beyond the window.** Check that cached decoding stays exactly equal to a full recompute for
# every position encoding, well past `block_size`.
#
# <details>
# <summary>Solution</summary>
#
# ```python
# from minigpt.model import POS_ENCODINGS
#
# for pe in POS_ENCODINGS:
#     torch.manual_seed(0)
#     cfg = GPTConfig(vocab_size=10, block_size=16, n_layer=2, n_head=2, n_embd=16, pos_encoding=pe)
#     m = GPT(cfg).eval()
#     start = torch.zeros(1, 1, dtype=torch.long)
#     cached, recomputed = (generate(m, start, 60, greedy, use_cache=c) for c in (True, False))
#     same = torch.equal(cached, recomputed)
#     print(f"{pe:<10} identical: {same}")
# ```
#
# The module docstring of `minigpt/sampling.py` explains why the window restarts instead of
# sliding one character at a time: the cached keys of later layers were computed from states that
# saw the characters a slide would drop.
# </details>
