"""Decoding: the KV cache is exact, and each strategy does what its definition says."""

import math

import pytest
import torch

from minigpt.errors import ConfigError
from minigpt.levers import build_gpt
from minigpt.model import GPT, POS_ENCODINGS, GPTConfig
from minigpt.sampling import (
    ContextFeeder,
    SamplingConfig,
    apply_repetition_penalty,
    beam_search,
    filter_min_p,
    filter_top_k,
    filter_top_p,
    filter_typical,
    generate,
    make_generator,
    stop_index,
)

V = 13


def make(pos="learned", impl="sdpa", block=16, **levers) -> GPT:
    torch.manual_seed(1)
    cfg = GPTConfig(V, block_size=block, n_layer=2, n_head=2, n_embd=16, pos_encoding=pos, attn_impl=impl, **levers)
    model = build_gpt(cfg).eval()
    with torch.no_grad():  # larger weights than the init: sharper, more position-dependent logits
        for name, p in model.named_parameters():
            if "conv" in name:  # the short convolutions start at zero: give them weights to carry
                p.normal_(std=0.5)
            p.mul_(8.0 if p.dim() == 2 else 1.0)
    return model


def assert_cached_logits_equal_recompute(model: GPT, seq: torch.Tensor) -> None:
    """Teacher-forced: `seq` fed both ways, one token at a time, gives the same logits at every step."""
    cached, full = ContextFeeder(model, seq[:, :5], True), ContextFeeder(model, seq[:, :5], False)
    for t in range(5, seq.size(1)):
        torch.testing.assert_close(cached.logits(), full.logits(), rtol=1e-4, atol=1e-4)
        cached.append(seq[:, t])
        full.append(seq[:, t])


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_cached_logits_equal_full_recompute_past_the_window(pos, impl):
    """40 tokens: 2.5 windows of 16, so the window moves and the cache is refilled twice."""
    assert_cached_logits_equal_recompute(make(pos, impl), torch.randint(V, (2, 40)))


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("pos", [pos for pos in POS_ENCODINGS if pos != "learned"])
def test_cached_logits_equal_full_recompute_in_a_context_twice_block_size(pos, impl):
    """context=32 on a model trained at 16: the cache holds 32 positions, the window first moves
    after 32 tokens, and cached decoding still equals full recompute at every step."""
    model, seq = make(pos, impl), torch.randint(V, (2, 40))
    cached, full = (ContextFeeder(model, seq[:, :5], c, context=32) for c in (True, False))
    for t in range(5, seq.size(1)):
        torch.testing.assert_close(cached.logits(), full.logits(), rtol=1e-4, atol=1e-4)
        cached.append(seq[:, t])
        full.append(seq[:, t])
    assert cached.cache.capacity == 32 and full.ctx_start > 0
    # the first window really is 32 long: step 31 reads all 31 tokens, as one full forward does
    feeder = ContextFeeder(model, seq[:, :31], True, context=32)
    torch.testing.assert_close(feeder.logits(), model(seq[:, :31])[:, -1], rtol=1e-4, atol=1e-4)


def test_a_longer_context_with_learned_positions_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"exceeds block_size=16, .*pos_encoding=learned"):
        generate(make("learned"), torch.zeros(1, 3, dtype=torch.long), 5, context=32)
    with pytest.raises(ConfigError, match=r"context must be an integer >= 1 \(or null\), got 0; null = block_size"):
        generate(make("rope"), torch.zeros(1, 3, dtype=torch.long), 5, context=0)


# zero_init_proj changes only the initial weights, which make() replaces
EVERY_LEVER = dict(short_conv=3, value_embeds=True, unet_skips=True, logit_softcap=5.0, activation="relu2")


def test_every_lever_decodes_exactly_in_a_context_twice_block_size():
    """The levers keep no state sized by block_size: with context=32 on a model of 16, the short
    convolutions' cached inputs and the value embeddings follow the longer window."""
    model, seq = make("rope", "manual", **EVERY_LEVER), torch.randint(V, (2, 40))
    cached, full = (ContextFeeder(model, seq[:, :5], c, context=32) for c in (True, False))
    for t in range(5, seq.size(1)):
        torch.testing.assert_close(cached.logits(), full.logits(), rtol=1e-4, atol=1e-4)
        cached.append(seq[:, t])
        full.append(seq[:, t])


@pytest.mark.parametrize("levers", [{"short_conv": 3}, EVERY_LEVER], ids=["short_conv", "every_lever"])
def test_levers_decode_exactly_past_the_window_and_in_beam_search(levers):
    """The short convolutions keep their last inputs in the cache: a window that moves starts them
    afresh, and beam search carries each beam's own; the other levers keep cached == recompute."""
    model = make("rope", "manual", **levers)
    seq = torch.randint(V, (2, 40))
    assert_cached_logits_equal_recompute(model, seq)
    prompt = seq[:1, :3]
    beams = [beam_search(model, prompt, 20, num_beams=4, use_cache=c) for c in (True, False)]
    assert [b.ids.tolist() for b in beams[0]] == [b.ids.tolist() for b in beams[1]]


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_cached_greedy_equals_full_recompute_token_for_token(pos):
    model = make(pos)
    prompt = torch.randint(V, (1, 3))
    a = generate(model, prompt, 45, SamplingConfig(temperature=0), use_cache=True)
    b = generate(model, prompt, 45, SamplingConfig(temperature=0), use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_keep_block_size_is_nanogpts_sliding_window(pos):
    """keep=block_size conditions every step on exactly the last block_size tokens."""
    model = make(pos)
    seq = torch.randint(V, (1, 30))
    feeder = ContextFeeder(model, seq[:, :20], use_cache=True, keep=16)
    for t in range(20, 30):
        torch.testing.assert_close(feeder.logits(), model(seq[:, t - 16 : t])[:, -1], rtol=1e-4, atol=1e-4)
        feeder.append(seq[:, t])


def test_default_window_restarts_from_the_last_half_block():
    model = make("learned")
    seq = torch.randint(V, (1, 30))
    feeder = ContextFeeder(model, seq[:, :16], use_cache=True)
    feeder.logits()
    feeder.append(seq[:, 16])  # 17 tokens: the window overflows and restarts from the last 8
    torch.testing.assert_close(feeder.logits(), model(seq[:, 9:17])[:, -1], rtol=1e-4, atol=1e-4)
    for t in range(17, 25):  # then it grows again, one cached token at a time
        feeder.append(seq[:, t])
        torch.testing.assert_close(feeder.logits(), model(seq[:, 9 : t + 1])[:, -1], rtol=1e-4, atol=1e-4)


def test_prompt_longer_than_the_block_is_cropped_to_its_end():
    model = make("learned")
    long_prompt = torch.randint(V, (1, 50))
    out = generate(model, long_prompt, 1, SamplingConfig(temperature=0))
    assert out[0, -1] == model(long_prompt[:, -16:])[0, -1].argmax()


def test_greedy_equals_top_k_1_equals_beam_width_1():
    model = make("rope")
    prompt = torch.randint(V, (1, 4))
    greedy = generate(model, prompt, 30, SamplingConfig(temperature=0))
    top1 = generate(model, prompt, 30, SamplingConfig(temperature=1.0, top_k=1), generator=make_generator(0))
    beam = beam_search(model, prompt, 30, num_beams=1)[0]
    assert torch.equal(greedy, top1)
    assert torch.equal(greedy[0, 4:], beam.ids)


def test_low_temperature_approaches_greedy():
    model = make("learned")
    prompt = torch.randint(V, (1, 4))
    greedy = generate(model, prompt, 30, SamplingConfig(temperature=0))
    cold = generate(model, prompt, 30, SamplingConfig(temperature=1e-4), generator=make_generator(3))
    hot = generate(model, prompt.expand(8, -1), 30, SamplingConfig(temperature=5.0), generator=make_generator(3))
    assert torch.equal(greedy, cold)
    assert not all(torch.equal(greedy[0], row) for row in hot)


def test_same_seed_same_text_and_batched_rows_differ():
    model = make("alibi")
    prompt = torch.randint(V, (4, 2))
    cfg = SamplingConfig(temperature=1.0, top_p=0.95)
    a = generate(model, prompt, 40, cfg, generator=make_generator(7))
    b = generate(model, prompt, 40, cfg, generator=make_generator(7))
    c = generate(model, prompt, 40, cfg, generator=make_generator(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(r.tolist()) for r in a}) > 1


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = make("learned")
    prompt = torch.randint(V, (1, 3))

    def logprob(seq):
        logits = model(seq[:, :-1])[0].log_softmax(-1)
        return sum(logits[t, seq[0, t + 1]].item() for t in range(2, seq.size(1) - 1))

    greedy = generate(model, prompt, 10, SamplingConfig(temperature=0))
    best = beam_search(model, prompt, 10, num_beams=5, length_penalty=0.0)
    assert len(best) == 5 and best[0].score >= best[-1].score
    beam_seq = torch.cat([prompt[0], best[0].ids])[None]
    assert logprob(beam_seq) >= logprob(greedy) - 1e-4
    assert math.isclose(best[0].logprob, logprob(beam_seq), rel_tol=1e-3, abs_tol=1e-3)
    cached = beam_search(model, prompt, 10, num_beams=5, use_cache=True)
    full = beam_search(model, prompt, 10, num_beams=5, use_cache=False)
    assert [b.ids.tolist() for b in cached] == [b.ids.tolist() for b in full]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])
    logits = probs.log()[:, [3, 0, 4, 2, 1]]  # shuffled so the order is not the index order
    kept = lambda p: set(torch.isfinite(filter_top_p(logits, p))[0].nonzero().flatten().tolist())  # noqa: E731
    assert kept(0.5) == {1}  # 0.5 alone reaches 0.5
    assert kept(0.6) == {1, 4}  # 0.5 + 0.2
    assert kept(0.85) == {1, 4, 3}  # 0.5 + 0.2 + 0.15 = 0.85
    assert kept(0.86) == {1, 4, 3, 0}
    assert kept(1.0) == {0, 1, 2, 3, 4}
    assert kept(0.01) == {1}  # the most likely token always stays


def test_top_k_min_p_typical_and_penalty_on_hand_made_distributions():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    assert torch.isfinite(filter_top_k(logits, 2)).tolist() == [[True, True, False, False]]
    probs = logits.softmax(-1)
    kept = torch.isfinite(filter_min_p(logits, 0.3))[0].tolist()
    assert kept == (probs[0] >= 0.3 * probs[0, 0]).tolist()
    flat = torch.zeros(1, 4)  # uniform: every token equally typical
    assert torch.isfinite(filter_typical(flat, 1.0)).all()
    peaked = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert torch.isfinite(filter_typical(peaked, 0.5)).tolist() == [[True, False, False, False]]
    penalised = apply_repetition_penalty(logits, torch.tensor([[0, 3]]), 2.0)
    assert penalised.tolist() == [[1.0, 1.0, 0.5, -2.0]]


def typical_kept(logits: torch.Tensor, p: float) -> set[int]:
    return set(torch.isfinite(filter_typical(logits, p))[0].nonzero().flatten().tolist())


def test_typical_keeps_a_group_of_equal_logits_whole():
    """Eight equally likely tokens are equally typical: none can be kept without the others
    (as Hugging Face's TypicalLogitsWarper does), whatever the mass asked for."""
    flat = torch.zeros(1, 8)
    assert typical_kept(flat, 0.5) == set(range(8))
    assert typical_kept(flat, 0.1) == set(range(8))


def test_typical_keeps_a_partly_needed_tie_whole_and_drops_the_rest():
    # p = 0.284, 0.284, 0.104 x 4, 0.014; entropy 1.72 nats; surprisal 1.26 (the two 1s), 2.26
    # (the four 0s), 4.26 (the -2): the 1s are the most typical, then the 0s, then the -2
    logits = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -2.0]])
    assert typical_kept(logits, 0.5) == {0, 1}  # 0.568 >= 0.5: no 0 is needed
    # 0.568 < 0.7 needs one of the 0s, so all four stay (not just the first by index); the -2 goes
    assert typical_kept(logits, 0.7) == {0, 1, 2, 3, 4, 5}
    shuffled = logits[:, [6, 2, 0, 3, 4, 1, 5]]
    assert typical_kept(shuffled, 0.7) == {1, 2, 3, 4, 5, 6}


def test_repetition_penalty_reduces_repeats():
    model = make("learned")
    prompt = torch.randint(V, (1, 4))
    plain = generate(model, prompt, 40, SamplingConfig(temperature=0))[0, 4:]
    penal = generate(model, prompt, 40, SamplingConfig(temperature=0, repetition_penalty=3.0))[0, 4:]
    assert len(set(penal.tolist())) >= len(set(plain.tolist()))
    assert not torch.equal(plain, penal)


def test_stop_index_finds_the_earliest_stop():
    assert stop_index("ab\n\ncd", ["\n\n"]) == 4
    assert stop_index("abc:de", ["e", ":"]) == 4
    assert stop_index("abc", ["x"]) is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"min_p": 2}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
    ],
)
def test_invalid_sampling_arguments(kw, message):
    with pytest.raises(ConfigError, match=message):
        SamplingConfig(**kw)


def test_negative_lengths_and_empty_prompts_are_refused():
    model = make()
    with pytest.raises(ConfigError, match="max_new_tokens"):
        generate(model, torch.zeros(1, 2, dtype=torch.long), -1)
    with pytest.raises(ConfigError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
