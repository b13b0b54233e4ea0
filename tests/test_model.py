"""The hand-written transformer: causality, manual == fused attention, config validation."""

import math

import pytest
import torch

from minigpt.errors import ConfigError
from minigpt.model import (
    GPT,
    POS_ENCODINGS,
    SINUSOIDAL_SCALE,
    CausalSelfAttention,
    Context,
    GPTConfig,
    alibi_slopes,
    sinusoidal_table,
)

V = 11


def make(pos="learned", impl="manual", **kw) -> GPT:
    torch.manual_seed(0)
    shape = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16} | kw
    cfg = GPTConfig(vocab_size=V, pos_encoding=pos, attn_impl=impl, **shape)
    return GPT(cfg).eval()


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_future_tokens_do_not_change_past_logits(pos, impl):
    model = make(pos, impl)
    x = torch.randint(V, (2, 16))
    for t in (0, 7, 14):
        y = x.clone()
        y[:, t + 1 :] = (y[:, t + 1 :] + 1 + torch.randint(V - 1, y[:, t + 1 :].shape)) % V  # change all later tokens
        assert not torch.equal(x[:, t + 1 :], y[:, t + 1 :])
        a, b = model(x), model(y)
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])  # and the future does see them


@pytest.mark.parametrize("pos", POS_ENCODINGS)
@pytest.mark.parametrize("variant", [{}, {"scale_attn": False}, {"norm": "rmsnorm", "qk_norm": True}, {"n_head": 1}])
def test_manual_and_sdpa_agree_in_values_and_gradients(pos, variant):
    x = torch.randint(V, (3, 16))
    outs, grads = [], []
    for impl in ("manual", "sdpa"):
        model = make(pos, impl, **variant).train()  # dropout 0: training mode is deterministic
        logits = model(x)
        logits.square().mean().backward()
        outs.append(logits)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pos", ["learned", "alibi"])
def test_manual_and_sdpa_agree_with_dropout_configured_in_eval(pos):
    x = torch.randint(V, (2, 16))
    a = make(pos, "manual", dropout=0.3).eval()(x)
    b = make(pos, "sdpa", dropout=0.3).eval()(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_dropout_is_active_in_training_only():
    model = make("learned", "manual", dropout=0.5)
    x = torch.randint(V, (2, 16))
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_attention_weights_are_causal_distributions(pos):
    model = make(pos, "sdpa")
    logits, weights = model.forward_with_attention(torch.randint(V, (2, 12)))
    assert logits.shape == (2, 12, V)
    assert len(weights) == 2
    for w in weights:
        assert w.shape == (2, 2, 12, 12)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 12))
        assert torch.all(w.triu(diagonal=1) == 0)


def test_forward_with_attention_matches_forward():
    model = make("rope", "sdpa")
    x = torch.randint(V, (2, 12))
    torch.testing.assert_close(model.forward_with_attention(x)[0], model(x), rtol=1e-5, atol=1e-5)


def test_position_encodings_make_order_matter_except_none():
    x = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    perm = torch.cat([x[:, :5].flip(1), x[:, 5:]], dim=1)  # same tokens before position 9, other order
    for pos in POS_ENCODINGS:
        model = make(pos, n_layer=1)
        with torch.no_grad():  # sharpen attention; at init scores are near zero and softmax near uniform
            for p in model.parameters():
                p.mul_(8.0 if p.dim() > 1 else 1.0)
        diff = (model(x)[:, -1] - model(perm)[:, -1]).abs().max().item()
        # in one layer without positions the last token attends to an unordered set of tokens
        if pos == "none":
            assert diff < 1e-6
        else:
            assert diff > 1e-3, pos


def test_weight_tying_and_gpt2_init():
    model = make()
    assert model.lm_head.weight is model.transformer.wte.weight
    untied = make(tie_weights=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    big = GPT(GPTConfig(vocab_size=V, n_layer=8, n_embd=256, n_head=4))
    proj = big.transformer.h[0].attn.c_proj.weight.std().item()
    fc = big.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(fc - 0.02) < 0.002
    assert abs(proj - 0.02 / math.sqrt(16)) < 0.001  # residual projections scaled by 1/sqrt(2 n_layer)


def test_ablations_change_the_network():
    x = torch.randint(V, (1, 8))
    base = make()(x)
    for kw in ({"residual": False}, {"norm": "none"}, {"scale_attn": False}, {"activation": "relu2"}):
        assert not torch.allclose(make(**kw)(x), base), kw
    assert isinstance(make(norm="none").transformer.ln_f, torch.nn.Identity)
    assert make(bias=False).transformer.h[0].attn.c_attn.bias is None


def test_alibi_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert len(alibi_slopes(6)) == 6 and torch.all(alibi_slopes(6) > 0)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n_embd": 130, "n_head": 4}, "not divisible"),
        ({"pos_encoding": "xpos"}, "pos_encoding='xpos' is unknown"),
        ({"attn_impl": "flash"}, "attn_impl"),
        ({"norm": "batchnorm"}, "norm"),
        ({"n_layer": 0}, "n_layer must be an integer >= 1"),
        ({"n_layer": "abc"}, "n_layer must be an integer"),
        ({"dropout": 1.5}, "dropout"),
        ({"residual": "yes"}, "residual must be true or false"),
        ({"pos_encoding": "rope", "n_embd": 12, "n_head": 4}, "even head size"),
    ],
)
def test_invalid_configs_raise_one_clear_error(kw, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(vocab_size=V, **kw)


def test_unknown_config_keys_are_rejected_in_one_line_for_each_architecture():
    from minigpt.lstm import LSTMConfig
    from minigpt.vlm import VisionConfig

    with pytest.raises(ConfigError, match=r"^unknown model option\(s\): 'n_layers'$"):
        GPTConfig.from_dict({"vocab_size": V, "n_layers": 3})
    with pytest.raises(ConfigError, match=r"^unknown model=lstm option\(s\): 'n_head'$"):  # a GPT-only key
        LSTMConfig.from_dict({"vocab_size": V, "n_head": 4})
    with pytest.raises(ConfigError, match=r"^unknown vision option\(s\): 7, 'zoom'$"):  # a key of any type
        VisionConfig.from_dict({"zoom": 2, 7: 1})


def test_learned_positions_refuse_a_sequence_longer_than_block_size_in_one_line():
    """The learned table has block_size rows: position 17 of a 16-row table has no embedding."""
    with pytest.raises(ConfigError, match=r"^a sequence of 17 positions exceeds block_size=16, .*learned.*") as e:
        make("learned")(torch.zeros(1, 17, dtype=torch.long))
    assert "\n" not in str(e.value) and "pos_encoding=sinusoidal, rope, alibi or none" in str(e.value)


EXTRAPOLATING = [pos for pos in POS_ENCODINGS if pos != "learned"]


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("pos", EXTRAPOLATING)
def test_encodings_without_a_table_run_past_block_size(pos, impl):
    """At 4x the training length: finite logits of the right shape, still causal, and the first
    block_size positions equal the model's output on those positions alone (nothing of the first
    window depends on how long the sequence is)."""
    model = make(pos, impl)
    x = torch.randint(V, (2, 64))
    logits = model(x)
    assert logits.shape == (2, 64, V) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:, :16], model(x[:, :16]), rtol=0, atol=1e-5)
    y = x.clone()
    y[:, 40:] = (y[:, 40:] + 1) % V
    torch.testing.assert_close(model(y)[:, :40], logits[:, :40], rtol=0, atol=1e-5)


def test_sinusoidal_rows_past_the_table_follow_the_formula():
    """Rows computed beyond block_size continue the buffer's rows: the same formula, the same scale."""
    model = make("sinusoidal")
    rows = model.sinusoidal_positions(10, 20)  # positions 10..29 of a 16-row buffer
    torch.testing.assert_close(rows[:6], model.wpe_table[10:16], rtol=0, atol=0)
    expected = sinusoidal_table(30, 16) * SINUSOIDAL_SCALE
    torch.testing.assert_close(rows, expected[10:], rtol=0, atol=0)


def test_the_model_module_loads_neither_lightning_nor_hydra():
    """minigpt.model is plain PyTorch: importing it in a fresh interpreter pulls in no framework."""
    import subprocess
    import sys

    frameworks = "('lightning', 'pytorch_lightning', 'hydra', 'omegaconf')"
    code = f"import sys, minigpt.model; print(sorted(m for m in sys.modules if m.split('.')[0] in {frameworks}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_attention_without_a_bias_is_plain_causal_attention_on_both_paths():
    """CausalSelfAttention without a bias, as used on its own (the notebooks): the manual path and
    the weights it returns are causal, and equal the fused kernel's output."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=8, block_size=6, n_layer=1, n_head=2, n_embd=8, attn_impl="manual")
    attn = CausalSelfAttention(cfg, layer_idx=0).eval()
    x = torch.randn(2, 6, 8)
    manual, weights = attn(x, Context(need_weights=True))
    assert torch.all(weights.triu(diagonal=1) == 0)
    attn.attn_impl = "sdpa"
    fused, _ = attn(x)
    torch.testing.assert_close(manual, fused)


def test_rope_rotates_each_pair_by_its_positions_angle():
    from minigpt.model import apply_rope, rope_cos_sin

    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 8)  # (B, nh, T, hs)
    cos, sin = rope_cos_sin(torch.arange(10), 8, 10000.0)
    out = apply_rope(x, cos, sin)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # the rotation written out pair by pair
    torch.testing.assert_close(out[..., 0::2], x1 * cos - x2 * sin)
    torch.testing.assert_close(out[..., 1::2], x1 * sin + x2 * cos)
    # a rotation: lengths kept, and q.k depends on the distance between positions only
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    q, k = x[0, 0, 0].expand(10, 8), x[0, 0, 1].expand(10, 8)
    rq, rk = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    assert torch.allclose((rq[5] * rk[2]).sum(), (rq[7] * rk[4]).sum(), atol=1e-5)
    assert not torch.allclose((rq[5] * rk[2]).sum(), (rq[5] * rk[4]).sum(), atol=1e-3)


def test_rope_under_torch_compile_rotates_the_same_way(monkeypatch):
    from minigpt.model import apply_rope, rope_cos_sin

    x = torch.randn(2, 3, 10, 8)
    cos, sin = rope_cos_sin(torch.arange(10), 8, 10000.0)
    eager = apply_rope(x, cos, sin)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the real-arithmetic branch
    torch.testing.assert_close(apply_rope(x, cos, sin), eager)


def test_kv_cache_advances_when_told_not_when_a_layer_writes():
    """Writing a layer's keys and values never moves the cache: `advance` does, once per forward."""
    from minigpt.model import KVCache

    cache = KVCache(n_layer=3, capacity=8)
    k = torch.randn(1, 2, 3, 4)  # (B, nh, T, hs)
    for layer in range(3):
        keys, _ = cache.update(layer, k, k)
        assert keys.shape[2] == 3 and cache.length == 0
    cache.advance(3)
    keys, _ = cache.update(0, k[:, :, :1], k[:, :, :1])  # the next position goes to slot 3
    assert cache.length == 3 and keys.shape[2] == 4 and torch.equal(keys[:, :, 3], k[:, :, 0])


def test_a_model_running_only_some_of_its_layers_keeps_its_cache_exact():
    """Two of four blocks run (an early exit, as the logit lens reads): the cache still follows
    the positions, and cached logits equal a recompute with the same two blocks."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=4, n_head=2, n_embd=16, pos_encoding="rope")).eval()
    model.transformer.h = model.transformer.h[:2]
    idx = torch.randint(11, (2, 12))
    cache = model.new_cache()
    stepped = torch.cat([model(idx[:, :5], cache)] + [model(idx[:, t : t + 1], cache) for t in range(5, 12)], 1)
    assert cache.length == 12
    torch.testing.assert_close(stepped, model(idx), rtol=1e-5, atol=1e-5)
