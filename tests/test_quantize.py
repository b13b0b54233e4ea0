"""Dynamic int8 quantization: really int8, close to float32, smaller, usable from generate.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ROOT, run_cli

from minigpt.analysis.metrics import token_losses
from minigpt.checkpoint.load import load_model
from minigpt.errors import ConfigError
from minigpt.inference.quantize import check_quantize, device_for, is_quantized, quantize_int8, state_dict_bytes
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import SamplingConfig, generate


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run["last_ckpt"])


@pytest.fixture(scope="module")
def text_ids(loaded, small_corpus) -> torch.Tensor:
    """Real text the model was trained on: 4 windows of block_size characters, (4, T)."""
    T = loaded.model.config.block_size
    ids = torch.tensor(loaded.tokenizer.encode(small_corpus.read_text()[: 4 * T]))
    return ids.view(4, T)


def test_every_linear_layer_is_int8_and_the_original_is_untouched(loaded):
    model = loaded.model
    quantized = quantize_int8(model)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    kinds = dict(quantized.named_modules())
    assert linears and all(type(kinds[name]) is torch.ao.nn.quantized.dynamic.Linear for name in linears)
    assert is_quantized(quantized) and not is_quantized(model)
    # the tied output head got an int8 copy; both embeddings keep their float32 matrix
    assert model.lm_head.weight is model.transformer.wte.weight
    assert quantized.transformer.wte.weight.dtype == torch.float32
    assert torch.equal(quantized.transformer.wte.weight, model.transformer.wte.weight)


def test_int8_logits_are_close_to_float32_but_not_equal(loaded, text_ids):
    model = loaded.model
    quantized = quantize_int8(model)
    with torch.no_grad():
        ref, got = model(text_ids), quantized(text_ids)  # (4, T, V)
    assert not torch.equal(ref, got)  # something was computed in int8
    # int8 keeps about 2 significant digits of each weight (255 levels, one scale per row)
    # and of each activation (one scale per call), so logits move by up to a few thousandths
    # of their spread. Measured on this fixture: 0.5% of the spread, KL 8e-7 nats, loss
    # +3e-5 nats; the bounds are 4x, 12x and 40x that (a model of width 128 errs more, 2.4%)
    spread = (ref.max() - ref.min()).item()
    assert (got - ref).abs().max().item() < 0.02 * spread
    kl = F.kl_div(got.log_softmax(-1), ref.log_softmax(-1), reduction="none", log_target=True).sum(-1)
    assert kl.mean().item() < 1e-5
    flat = text_ids.reshape(-1)
    assert abs(token_losses(quantized, flat).mean() - token_losses(model, flat).mean()).item() < 1e-3


def test_kv_cache_decoding_works_on_the_int8_model(loaded, text_ids):
    quantized = quantize_int8(loaded.model)
    prompt = text_ids[:1, :8]
    greedy = SamplingConfig(temperature=0)
    out = generate(quantized, prompt, 16, greedy, use_cache=True)
    assert out.shape == (1, 24) and torch.equal(out[:, :8], prompt)
    # the cached path runs the same int8 layers one token at a time
    cache = quantized.new_cache()
    with torch.no_grad():
        quantized(prompt[:, :-1], cache)
        step = quantized(prompt[:, -1:], cache)[:, -1]
        full = quantized(prompt)[:, -1]
    # not bit-equal: each call picks its activations' int8 scale from the tokens it is given
    assert (step - full).abs().max().item() < 0.02 * (full.max() - full.min()).item()


def test_int8_state_is_several_times_smaller():
    # a `small`-sized model: the ratio depends on the shapes, not on training
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)).eval()
    fp32, int8 = state_dict_bytes(model), state_dict_bytes(quantize_int8(model))
    # the linear weights shrink 4x; embeddings, norms and per-row scales stay float
    assert fp32 / int8 > 2.5, (fp32, int8)


def test_quantize_option_is_checked():
    assert check_quantize(None, torch.device("cpu")) is None
    assert check_quantize("int8", torch.device("cpu")) == "int8"
    with pytest.raises(ConfigError, match="quantize='int4' is unknown"):
        check_quantize("int4", torch.device("cpu"))
    with pytest.raises(ConfigError, match="runs on CPU only"):
        check_quantize("int8", torch.device("cuda"))
    assert device_for("int8", "auto") == "cpu" and device_for(None, "auto") == "auto"
    assert device_for("int8", "cuda") == "cuda"  # an explicit device is kept, then refused above


def test_generate_py_with_int8_writes_text_and_refuses_unknown_modes(tiny_run):
    gen = str(ROOT / "generate.py")
    result = run_cli(gen, f"ckpt={tiny_run['last_ckpt']}", "quantize=int8", "prompt=ROMEO:", "max_new_tokens=30")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) == len("ROMEO:") + 30 + 1
    assert "(int8)" in result.stderr and "device cpu" in result.stderr
    bad = run_cli(gen, f"ckpt={tiny_run['last_ckpt']}", "quantize=int4")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: quantize='int4' is unknown; choose null (float32) or int8"
