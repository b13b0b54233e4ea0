"""The budget recipes' levers (docs/performance.md): each is off by default, changes what it
says it changes, and keeps the model's guarantees (causality, KV cache == recompute, both
attention paths equal, checkpoints that rebuild)."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import RandomWindows
from minigpt.errors import ConfigError, DataError
from minigpt.levers import CausalShortConv, LeverCache, LeverGPT, ReLUSquared, ShortConv, build_gpt
from minigpt.model import GPT, Context, GPTConfig, relu_squared
from minigpt.training.module import LitGPT
from minigpt.training.optim import MuonAdamW, orthogonalize

V = 11
LEVERS = [
    {"value_embeds": True},
    {"unet_skips": True},
    {"zero_init_proj": True},
    {"logit_softcap": 5.0},
    {"short_conv": 4},
    {"short_conv": 1},
    {"value_embeds": True, "unet_skips": True, "logit_softcap": 30.0, "short_conv": 3},
]


def make(impl="manual", n_layer=4, **kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(V, block_size=16, n_layer=n_layer, n_head=2, n_embd=16, pos_encoding="rope", attn_impl=impl, **kw)
    return build_gpt(cfg).eval()


def perturb(model: GPT) -> GPT:
    """Move every weight off its initial value: zero-initialised projections and unit skip
    weights would otherwise hide a lever that is wired wrong."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("kw", LEVERS)
def test_levers_keep_causality_cache_and_both_attention_paths(kw):
    model = perturb(make(**kw))
    x = torch.randint(V, (2, 16))
    full = model(x)
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % V
    torch.testing.assert_close(model(y)[:, :9], full[:, :9], rtol=0, atol=1e-6)
    cache = model.new_cache()
    stepped = torch.cat([model(x[:, :5], cache)] + [model(x[:, t : t + 1], cache) for t in range(5, 16)], 1)
    torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-5)
    fused = perturb(make("sdpa", **kw))
    torch.testing.assert_close(fused(x), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [k for k in LEVERS if "zero_init_proj" not in k])
def test_each_lever_changes_the_network(kw):
    x = torch.randint(V, (2, 16))
    torch.manual_seed(1)
    plain = make()
    lever = make(**kw)
    lever.load_state_dict(plain.state_dict(), strict=False)  # same shared weights, extra ones as built
    perturb(plain), perturb(lever)
    assert not torch.allclose(plain(x), lever(x))


def test_softcap_bounds_the_logits_and_is_the_identity_near_zero():
    model = make(logit_softcap=2.0)
    with torch.no_grad():
        model.lm_head.weight.mul_(1000)
    logits = model(torch.randint(V, (2, 16)))
    assert logits.abs().max() <= 2.0 and logits.abs().max() > 1.9  # tanh saturates to the cap in fp32
    small = torch.full((3,), 0.01)
    torch.testing.assert_close(2.0 * torch.tanh(small / 2.0), small, rtol=1e-4, atol=0)


def test_zero_initialised_projections_make_every_block_the_identity():
    model = make(zero_init_proj=True)
    x = torch.randn(2, 16, 16)
    for block in model.transformer.h:
        out, _ = block(x, Context())
        torch.testing.assert_close(out, x, rtol=0, atol=0)
    trained = LeverGPT(model.config).train()
    idx = torch.randint(V, (4, 16))
    F.cross_entropy(trained(idx).flatten(0, 1), idx.flatten()).backward()
    assert all(b.attn.c_proj.weight.grad.abs().sum() > 0 for b in trained.transformer.h)


def test_unet_skips_feed_the_mirrored_block():
    model = perturb(make(unet_skips=True))
    seen = {}
    for i, block in enumerate(model.transformer.h):
        block.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(("out", i), out[0]))
        block.register_forward_pre_hook(lambda m, inp, i=i: seen.__setitem__(("in", i), inp[0]))
    model(torch.randint(V, (2, 16)))
    w = model.skip_weights
    # with 4 layers: block 2 reads block 1's output, block 3 block 0's, each scaled by its weight
    torch.testing.assert_close(seen["in", 2], seen["out", 1] + w[1] * seen["out", 1])
    torch.testing.assert_close(seen["in", 3], seen["out", 2] + w[0] * seen["out", 0])


def test_relu_squared_backward_equals_autograds():
    x = torch.randn(4, 5, 9, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(ReLUSquared.apply, (x,))
    grad = torch.randn_like(x)
    (ours,) = torch.autograd.grad(ReLUSquared.apply(x), x, grad)
    (autograds,) = torch.autograd.grad(relu_squared(x), x, grad)  # the textbook's ReLU²
    torch.testing.assert_close(ours, autograds, rtol=0, atol=0)
    torch.testing.assert_close(ReLUSquared.apply(x), relu_squared(x), rtol=0, atol=0)


def test_short_conv_mixes_exactly_the_positions_before_each_one():
    torch.manual_seed(0)
    conv = ShortConv(channels=3, k=3, name="test")
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(2, 5, 3)
    w = conv.weight  # (k, channels): w[s] weighs the position s places back
    expected = x.clone()
    for t in range(5):
        for s in range(3):  # nothing before the first position
            if t - s >= 0:
                expected[:, t] += w[s] * x[:, t - s]
    torch.testing.assert_close(conv(x), expected)
    # the same as torch's depthwise convolution (whose kernel runs forwards in time), gradients too
    xg, wg = x.clone().requires_grad_(), w.detach().clone().requires_grad_()
    ours = CausalShortConv.apply(xg, wg)
    theirs = xg + F.conv1d(F.pad(xg.transpose(1, 2), (2, 0)), wg.flip(0).t()[:, None], groups=3).transpose(1, 2)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, (xg, wg), g), torch.autograd.grad(theirs, (xg, wg), g))
    # fed one position at a time through a cache, the same outputs
    cache = LeverCache(n_layer=1, capacity=5)
    torch.testing.assert_close(torch.cat([conv(x[:, t : t + 1], cache) for t in range(5)], 1), expected)


def test_short_conv_under_compile_and_export_equals_the_eager_one(monkeypatch):
    """torch.compile and torch.export take a padded-copy branch; it computes the same, gradients too."""
    torch.manual_seed(0)
    conv = ShortConv(channels=4, k=3, name="test")
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(2, 7, 4, requires_grad=True)
    g = torch.randn(2, 7, 4)
    eager = conv(x)
    grads = torch.autograd.grad(eager, (x, conv.weight), g)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    traced = conv(x)
    torch.testing.assert_close(traced, eager)
    torch.testing.assert_close(torch.autograd.grad(traced, (x, conv.weight), g), grads)


def test_short_conv_starts_as_the_identity_and_its_weights_go_to_adamw():
    x = torch.randn(2, 6, 16)
    assert torch.equal(ShortConv(16, 3, "c")(x), x)
    module = LitGPT(
        model={"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, "short_conv": 4},
        vocab=[chr(97 + i) for i in range(V)],
        optim={"_target_": "minigpt.training.optim.MuonAdamW", "_partial_": True},
    )
    names = {id(p): n for n, p in module.model.named_parameters()}
    groups = {g["kind"]: {names[id(p)] for p in g["params"]} for g in module.param_groups()}
    assert {f"transformer.h.{i}.conv_{j}.weight" for i in (0, 1) for j in (1, 2)} <= groups["vector"]
    assert not any("conv" in n for n in groups["hidden"])


@pytest.mark.parametrize("k", [-1, 2.5, True])
def test_a_bad_short_conv_is_one_clear_error(k):
    with pytest.raises(ConfigError, match="model.short_conv must be"):
        GPTConfig(V, short_conv=k)


def test_value_embeddings_and_skip_weights_land_in_adamw_groups():
    module = LitGPT(
        model={"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, "value_embeds": True, "unet_skips": True},
        vocab=[chr(97 + i) for i in range(V)],
        optim={"_target_": "minigpt.training.optim.MuonAdamW", "_partial_": True},
    )
    names = {id(p): n for n, p in module.model.named_parameters()}
    groups = {g["kind"]: {names[id(p)] for p in g["params"]} for g in module.param_groups()}
    assert {"value_embeds.0.weight", "value_embeds.1.weight"} <= groups["embedding"]
    assert "skip_weights" in groups["vector"]
    assert not any(n.startswith("value_embeds") for n in groups["hidden"])


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_checkpoint_with_every_lever_loads_and_gives_its_logits():
    """every_lever.ckpt: a 3-layer model trained 20 steps by train.py with every lever on (rope,
    qk_norm, relu2, no biases, manual attention, zero-initialised projections, soft-capped logits,
    value embeddings, U-net skips, short convolutions), its optimizer state dropped to keep it
    small; every_lever_logits.pt: its logits on fixed ids when it was written. A change to how a
    lever is built or named shows up here as a load error or different logits."""
    loaded = load_model(FIXTURES / "every_lever.ckpt")
    cfg = loaded.model.config
    assert cfg.short_conv and cfg.value_embeds and cfg.unet_skips and cfg.zero_init_proj and cfg.logit_softcap
    expected = torch.load(FIXTURES / "every_lever_logits.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(expected["idx"]), expected["logits"], rtol=0, atol=1e-6)


def test_a_checkpoint_config_without_the_levers_builds_the_plain_model():
    old = {k: v for k, v in make().config.to_dict().items() if k not in ("value_embeds", "unet_skips")}
    cfg = GPTConfig.from_dict(old)
    assert not cfg.value_embeds and not cfg.unet_skips and cfg.logit_softcap == 0.0


@pytest.mark.parametrize("cap", [-1.0, float("nan"), True, "big"])
def test_a_bad_softcap_is_one_clear_error(cap):
    with pytest.raises(ConfigError, match="logit_softcap"):
        GPTConfig(V, logit_softcap=cap)


# --------------------------------------------------------------------------- Muon


def test_batched_orthogonalisation_equals_one_matrix_at_a_time():
    torch.manual_seed(0)
    for shape in ((3, 48, 16), (3, 16, 48), (2, 16, 16)):
        stack = torch.randn(shape)
        one_by_one = torch.stack([orthogonalize(g) for g in stack])
        torch.testing.assert_close(orthogonalize(stack), one_by_one, rtol=1e-5, atol=1e-5)


def muon(**kw) -> tuple[MuonAdamW, list[torch.nn.Parameter]]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(8, 4)) for _ in range(3)]
    return MuonAdamW([{"params": params, "kind": "hidden"}], **kw), params


def test_muon_momentum_warms_up_linearly_and_resumes_where_it_was():
    opt, params = muon(momentum=0.95, momentum_start=0.85, momentum_warmup_steps=4)
    seen = []
    for _ in range(6):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
        seen.append(opt.param_groups[0]["current_momentum"])
    assert seen == pytest.approx([0.85, 0.875, 0.9, 0.925, 0.95, 0.95])
    resumed, _ = muon(momentum=0.95, momentum_start=0.85, momentum_warmup_steps=4)
    state = muon(momentum=0.95, momentum_start=0.85, momentum_warmup_steps=4)[0]
    for p in state.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    state.step(), state.step()  # two steps in, then saved and loaded
    resumed.load_state_dict(state.state_dict())
    for p in resumed.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    resumed.step()
    assert resumed.param_groups[0]["current_momentum"] == pytest.approx(0.9)


def test_without_warm_up_muon_uses_its_momentum_from_the_first_step():
    opt, params = muon(momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.param_groups[0]["current_momentum"] == 0.9
    assert torch.equal(opt.state[params[0]]["momentum_buffer"], torch.ones(8, 4))


# --------------------------------------------------------------------------- batch-size ramp


def test_the_batch_ramp_grows_to_the_batch_size_and_replays_on_resume():
    data = torch.arange(1000) % V
    stream = RandomWindows(data, block_size=8, batch_size=12, seed=3, ramp_steps=4, ramp_start=4)
    sizes = [x.size(0) for x, _ in (b for b, _ in zip(stream, range(7)))]
    assert sizes == [4, 6, 8, 10, 12, 12, 12]
    first = [x for (x, _), _ in zip(stream, range(4))]
    resumed = RandomWindows(data, block_size=8, batch_size=12, seed=3, start_step=2, ramp_steps=4, ramp_start=4)
    again = [x for (x, _), _ in zip(resumed, range(2))]
    assert all(torch.equal(a, b) for a, b in zip(first[2:], again))


def test_without_a_ramp_every_batch_is_full():
    stream = RandomWindows(torch.arange(500) % V, block_size=8, batch_size=5, seed=0)
    assert [x.size(0) for (x, _), _ in zip(stream, range(3))] == [5, 5, 5]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"batch_ramp_steps": -1}, "batch_ramp_steps"),
        ({"batch_ramp_steps": 10, "batch_ramp_start": 64}, "batch_ramp_start"),
    ],
)
def test_a_bad_ramp_is_one_clear_error(kw, message):
    from minigpt.data.corpus import CharDataModule

    with pytest.raises((ConfigError, DataError), match=message):
        CharDataModule(block_size=8, batch_size=32, **kw)


def test_the_mlp_ratio_sets_the_hidden_width():
    model = make(mlp_ratio=2)
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (32, 16)
    assert model.transformer.h[0].mlp.c_proj.weight.shape == (16, 32)
    with pytest.raises(ConfigError, match="mlp_ratio must be an integer >= 1"):
        GPTConfig(V, mlp_ratio=0)


# --------------------------------------------------------------------------- weight averaging


def test_callbacks_ema_validates_and_saves_the_averaged_weights(tmp_path, small_corpus):
    from conftest import train_cfg

    from minigpt.checkpoint.load import load_model
    from minigpt.training.run import train

    others = [
        f"~callbacks.{name}"
        for name in ("optimization", "samples", "attention", "projector", "logits", "heads", "symptoms")
    ]
    cfg = train_cfg(tmp_path, small_corpus, "callbacks=ema", "callbacks.ema.decay=0.5", "trainer.max_steps=6", *others)
    assert list(cfg.callbacks) == ["ema"]
    summary = train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(averaged[k], current[k]) for k in averaged)  # two different sets of weights
    model = load_model(tmp_path / "checkpoints" / "best.ckpt").model
    x = torch.randint(model.config.vocab_size, (1, 8))
    assert math.isfinite(summary["best_val_loss"]) and model(x).isfinite().all()


@pytest.mark.slow  # dynamo traces the model and AOTAutograd its backward: tens of seconds
def test_every_lever_under_torch_compile_equals_eager_with_gradients():
    """torch.compile (dynamo + AOTAutograd, without inductor's C++ build) of a model with every
    lever: the same logits and the same gradients as eager."""
    model = perturb(make(**LEVERS[-1], zero_init_proj=True, activation="relu2")).train()
    idx = torch.randint(V, (2, 16))
    compiled = torch.compile(model, backend="aot_eager")
    outs = []
    for run in (model, compiled):
        model.zero_grad()
        logits = run(idx)
        F.cross_entropy(logits.flatten(0, 1), idx.flatten()).backward()
        outs.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-4, atol=1e-5)


def test_the_textbook_refuses_a_lever_and_build_gpt_picks_the_class():
    with pytest.raises(ConfigError, match=r"model.unet_skips, model.short_conv: the textbook GPT .*build_gpt"):
        GPT(GPTConfig(V, short_conv=3, unet_skips=True))
    assert type(build_gpt(GPTConfig(V))) is GPT
    assert type(build_gpt(GPTConfig(V, activation="relu2"))) is LeverGPT  # for ReLU²'s written-out backward
    assert type(build_gpt(GPTConfig(V, logit_softcap=2.0))) is LeverGPT
