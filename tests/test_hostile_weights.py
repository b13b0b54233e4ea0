"""Weights are checked for use, not only for storage: a magnitude a float32 forward pass cannot
carry, and a dtype no model is trained in, are one line at load, from a checkpoint (generate,
evaluate, diagnose, interpret, export, init_from, resume) and from a GPT-2 folder. Each test
writes the crafted file itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import train_cfg
from safetensors.torch import save_file

from minigpt.checkpoint.format import CheckpointMeta
from minigpt.checkpoint.gpt2 import CONV1D_WEIGHTS, load_gpt2
from minigpt.checkpoint.load import load_model
from minigpt.checkpoint.weights import MAX_WEIGHT
from minigpt.errors import CheckpointError
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizer import BPETokenizer
from minigpt.training.run import train

VOCAB = sorted(set("\n !',-.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 32, "dropout": 0.0}
WEIGHT = "transformer.h.0.mlp.c_fc.weight"


def write_checkpoint(path: Path, change: Callable[[dict], None] = lambda state: None, **options) -> Path:
    """A minigpt checkpoint of a tiny random GPT (as load_model reads it), its weights changed by
    `change(state)` before saving."""
    torch.manual_seed(0)
    config = GPTConfig(**{**TINY, **options}, vocab_size=len(VOCAB))
    state = GPT(config).state_dict()
    change(state)
    meta = CheckpointMeta(model_config={"arch": "gpt", **config.to_dict()}, tokenizer=VOCAB)
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "minigpt": meta.to_dict()}, path)
    return path


def every_weight_at(magnitude: float) -> Callable[[dict], None]:
    """Every weight set to +-magnitude (random signs), as scripts/weight_bound.py measures."""

    def change(state: dict) -> None:
        generator = torch.Generator().manual_seed(0)
        for name, t in state.items():
            sign = torch.randint(0, 2, t.shape, generator=generator) * 2.0 - 1
            state[name] = sign * magnitude

    return change


def one_weight(value: float | None = None, dtype: torch.dtype | None = None) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        if value is not None:
            state[WEIGHT] = state[WEIGHT].clone()
            state[WEIGHT][0, 0] = value
        if dtype is not None:
            state[WEIGHT] = state[WEIGHT].to(dtype)

    return change


def test_weights_at_the_bound_run_finite_and_beyond_it_are_refused(tmp_path):
    """The real model, every weight at MAX_WEIGHT: it loads (and load_model's forward pass over a
    window stays finite); one weight past it is refused, naming the weight and the bound."""
    loaded = load_model(write_checkpoint(tmp_path / "at.ckpt", every_weight_at(MAX_WEIGHT)))
    ids = torch.arange(32)[None] % len(VOCAB)
    assert torch.isfinite(loaded.model(ids)).all()
    with pytest.raises(CheckpointError) as e:
        load_model(write_checkpoint(tmp_path / "past.ckpt", one_weight(MAX_WEIGHT * 1.01)))
    assert f"weight model.{WEIGHT} with a value of magnitude 1.01e+03, beyond the 1000" in str(e.value)


def test_a_matrix_of_1e38_is_refused_before_it_overflows(tmp_path):
    with pytest.raises(CheckpointError, match=r"magnitude 1e\+38, beyond the 1000 that a float32 forward pass"):
        load_model(write_checkpoint(tmp_path / "huge.ckpt", one_weight(1e38)))


def test_a_model_whose_forward_overflows_below_the_bound_is_refused(tmp_path):
    """Without norms, magnitudes compound from layer to layer: the small model's weights at 100
    overflow (as scripts/weight_bound.py measures), and load_model's forward pass says so."""
    small = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}  # conf/model/small.yaml
    path = write_checkpoint(tmp_path / "no_norm.ckpt", every_weight_at(100.0), norm="none", **small)
    with pytest.raises(CheckpointError, match="a forward pass of its model overflows float32"):
        load_model(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, torch.float64, torch.uint8])
def test_a_weight_of_a_dtype_no_model_trains_in_is_refused(dtype, tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_model(write_checkpoint(tmp_path / "dtype.ckpt", one_weight(dtype=dtype)))
    name = str(dtype).removeprefix("torch.")
    assert f"holds weight model.{WEIGHT} as {name}, not as float32, float16, bfloat16" in str(e.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_widened_to_float32(dtype, tmp_path):
    loaded = load_model(write_checkpoint(tmp_path / "half.ckpt", one_weight(dtype=dtype)))
    weight = dict(loaded.model.named_parameters())[WEIGHT]
    assert weight.dtype == torch.float32


def test_init_from_refuses_overflowing_weights_before_training(small_corpus, tmp_path):
    bad = write_checkpoint(tmp_path / "huge.ckpt", one_weight(1e38))
    with pytest.raises(CheckpointError) as e:
        train(train_cfg(tmp_path / "run", small_corpus, f"init_from={bad}", "trainer.max_steps=5"))
    assert "magnitude 1e+38" in str(e.value) and "diverged" not in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


# --------------------------------------------------------------------------- GPT-2 folders


def write_gpt2_folder(directory: Path, change: Callable[[dict], None] = lambda tensors: None) -> Path:
    """A GPT-2 folder as save_pretrained writes one (config.json, model.safetensors with Conv1D
    weights stored (in, out), tokenizer.json) from a tiny random minigpt GPT."""
    directory.mkdir()
    tok = BPETokenizer.train(["to be or not to be, that is the question " * 20], vocab_size=300)
    tok.tokenizer.save(str(directory / "tokenizer.json"))
    config = {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32}
    (directory / "config.json").write_text(json.dumps({**config, "vocab_size": tok.vocab_size}))
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=tok.vocab_size, bias=True))
    tensors = {
        name: (t.t() if name.endswith(CONV1D_WEIGHTS) else t).contiguous()
        for name, t in model.state_dict().items()
        if name != "lm_head.weight"  # tied: the token embedding
    }
    change(tensors)
    save_file(tensors, directory / "model.safetensors")
    return directory


def test_a_gpt2_folder_loads(tmp_path):
    loaded = load_gpt2(write_gpt2_folder(tmp_path / "gpt2"))
    assert torch.isfinite(loaded.model(torch.zeros(1, 4, dtype=torch.long))).all()


def test_a_gpt2_folder_with_a_weight_of_1e38_is_refused(tmp_path):
    def huge(tensors: dict) -> None:
        tensors["transformer.wte.weight"][3, 1] = 1e38

    with pytest.raises(CheckpointError, match=r"weight transformer.wte.weight with a value of magnitude 1e\+38"):
        load_gpt2(write_gpt2_folder(tmp_path / "gpt2", huge))


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64])
def test_a_gpt2_folder_with_a_weight_of_another_dtype_is_refused(dtype, tmp_path):
    def convert(tensors: dict) -> None:
        tensors["transformer.ln_f.weight"] = tensors["transformer.ln_f.weight"].to(dtype)

    with pytest.raises(CheckpointError, match=f"holds weight transformer.ln_f.weight as {str(dtype)[6:]}, not as"):
        load_gpt2(write_gpt2_folder(tmp_path / "gpt2", convert))


def test_a_half_precision_gpt2_folder_loads_as_float32(tmp_path):
    def half(tensors: dict) -> None:
        for name in tensors:
            tensors[name] = tensors[name].half()

    loaded = load_gpt2(write_gpt2_folder(tmp_path / "gpt2", half))
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
