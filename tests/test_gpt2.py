"""GPT-2 weights from a Hugging Face folder: our model must compute what transformers' does."""

import json
import re
import resource
import shutil
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file, save_file

from minigpt.checkpoint.gpt2 import load_gpt2
from minigpt.checkpoint.load import load_model
from minigpt.cli import friendly_errors
from minigpt.errors import CheckpointError
from minigpt.inference.generation import run
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizer import BPETokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_dir(small_corpus: Path, tmp_path_factory) -> Path:
    """A small random GPT-2 saved by transformers (safetensors), with a BPE tokenizer trained on
    a few KB of the small corpus. Every weight, bias and gain is random, so a name mapped to the
    wrong place or a missing transpose shows in the logits."""
    directory = tmp_path_factory.mktemp("gpt2")
    tok = BPETokenizer.train([small_corpus.read_text()[:8000]], vocab_size=320)
    tok.tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0
    )
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    return directory


def hf_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    model = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def ids(hf_dir) -> torch.Tensor:
    torch.manual_seed(1)
    vocab_size = json.loads((hf_dir / "config.json").read_text())["vocab_size"]
    return torch.randint(vocab_size, (2, 64))


def test_logits_equal_transformers(hf_dir, ids):
    loaded = load_gpt2(hf_dir)
    cfg = loaded.model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.activation) == (2, 2, 32, 64, "gelu_tanh")
    assert cfg.tie_weights and loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    with torch.no_grad():
        ours = loaded.model(ids)
    torch.testing.assert_close(ours, hf_logits(hf_dir, ids), rtol=1e-5, atol=1e-5)


def test_the_check_sees_a_wrong_gelu_or_a_missing_transpose(hf_dir, ids):
    """The tolerance above is tight enough to tell exact GELU from GPT-2's tanh approximation,
    and a square Conv1D weight left untransposed (which would load without a shape error)."""
    reference = hf_logits(hf_dir, ids)
    loaded = load_gpt2(hf_dir)
    exact = GPT(GPTConfig(**{**loaded.model.config.to_dict(), "activation": "gelu"}))
    exact.load_state_dict(loaded.model.state_dict())
    untransposed = load_gpt2(hf_dir).model
    with torch.no_grad():
        proj = untransposed.transformer.h[0].attn.c_proj.weight
        proj.copy_(proj.t().clone())
        for model in (exact.eval(), untransposed):
            assert (model(ids) - reference).abs().max() > 1e-4


def test_vocab_and_merges_and_pytorch_bin(hf_dir, ids, tmp_path):
    """The other file layouts: vocab.json + merges.txt instead of tokenizer.json, and a pickled
    pytorch_model.bin (read with weights_only=True) instead of safetensors."""
    other = tmp_path / "bin"
    other.mkdir()
    shutil.copy(hf_dir / "config.json", other)
    torch.save(transformers.GPT2LMHeadModel.from_pretrained(hf_dir).state_dict(), other / "pytorch_model.bin")
    BPETokenizer.from_json((hf_dir / "tokenizer.json").read_text()).tokenizer.model.save(str(other))
    assert sorted(p.name for p in other.iterdir()) == ["config.json", "merges.txt", "pytorch_model.bin", "vocab.json"]
    a, b = load_gpt2(hf_dir), load_gpt2(other)
    text = "ROMEO:\nWhat, ho! Whither away so fast?\n"
    assert a.tokenizer.encode(text) == b.tokenizer.encode(text)
    assert b.tokenizer.decode(b.tokenizer.encode(text)) == text
    with torch.no_grad():
        torch.testing.assert_close(a.model(ids), b.model(ids), rtol=0, atol=0)


def test_sharded_safetensors(hf_dir, ids, tmp_path):
    """Large models are saved in shards with a model.safetensors.index.json naming each tensor's
    file; every shard must be read, or a missing tensor would be reported (or, worse, a tensor
    of another layer kept)."""
    sharded = tmp_path / "sharded"
    transformers.GPT2LMHeadModel.from_pretrained(hf_dir).save_pretrained(sharded, max_shard_size="20KB")
    shutil.copy(hf_dir / "tokenizer.json", sharded)
    shards = sorted(p.name for p in sharded.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").is_file()
    assert not (sharded / "model.safetensors").exists()
    with torch.no_grad():
        torch.testing.assert_close(load_gpt2(sharded).model(ids), load_gpt2(hf_dir).model(ids), rtol=0, atol=0)
    (sharded / shards[-1]).unlink()
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_gpt2(sharded)


def test_generate_py_runs_on_the_folder(hf_dir):
    assert load_model(hf_dir).tokenizer.kind == "bpe"  # the same loader behind every entry point
    result = run_cli(
        str(ROOT / "generate.py"), f"ckpt={hf_dir}", "prompt=ROMEO:", "max_new_tokens=20", "seed=1", "device=cpu"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) > len("ROMEO:\n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation_function": "relu"}, r"activation_function='relu'"),
        ({"layer_norm_epsilon": 1e-6}, r"layer_norm_epsilon=1e-06"),
        ({"n_inner": 100}, r"n_inner=100"),
        ({"model_type": "llama"}, r"'llama' model; minigpt reads GPT-2"),
        ({"n_head": 3}, r"n_embd=32 is not divisible by model.n_head=3"),
        ({"n_layer": "two"}, r"n_layer must be an integer"),
        ({"resid_pdrop": "high"}, r"resid_pdrop must be a number, got 'high'"),
        ({"scale_attn_weights": "yes"}, r"scale_attn_weights must be true or false, got 'yes'"),
        ({"n_layer": 2**70}, r"n_layer must be an integer, got an integer of 71 bits"),
        ({"activation_function": ["relu"]}, r"activation_function must be text, got list"),
        ({"model_type": "\x1b[2Jllama"}, r"describes a '\\x1b\[2Jllama' model"),
    ],
)
def test_unsupported_configs_are_refused_in_one_line(hf_dir, tmp_path, change, message):
    other = tmp_path / "model"
    shutil.copytree(hf_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=message):
        load_gpt2(other)


def test_broken_folders_print_one_clear_line(hf_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(hf_dir, broken)
    (broken / "config.json").write_text("{not json")
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("generate", overrides=[f"ckpt={broken}"])
    with pytest.raises(SystemExit) as exit_info:
        friendly_errors(run)(cfg)  # what generate.py's main does, without a new interpreter
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "config.json is not valid JSON" in err
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(hf_dir / name, no_weights)
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_gpt2(no_weights)
    with pytest.raises(CheckpointError, match="is a directory; pass the .ckpt file"):
        load_model(tmp_path)  # a folder without config.json keeps the old message


def copy_with(hf_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of the GPT-2 folder whose model.safetensors tensors are changed by `change(tensors)`."""
    other = tmp_path / "model"
    shutil.copytree(hf_dir, other)
    tensors = load_file(other / "model.safetensors")
    change(tensors)
    save_file(tensors, other / "model.safetensors")
    return other


def test_a_conv1d_weight_that_is_not_a_matrix_is_refused(hf_dir, tmp_path):
    def three_d(tensors):
        name = "transformer.h.0.attn.c_attn.weight"
        tensors[name] = tensors[name].unsqueeze(0).contiguous()

    other = copy_with(hf_dir, tmp_path, three_d)
    with pytest.raises(CheckpointError, match=r"weight transformer.h.0.attn.c_attn.weight must be a matrix, got shape"):
        load_gpt2(other)


def test_nan_weights_in_a_gpt2_folder_are_named(hf_dir, tmp_path):
    def nan(tensors):
        tensors["transformer.ln_f.weight"][0] = float("nan")

    with pytest.raises(
        CheckpointError, match=r"holds NaN or infinite weights \(1 tensor\(s\), such as transformer.ln_f"
    ):
        load_gpt2(copy_with(hf_dir, tmp_path, nan))


def test_a_pickled_weight_that_is_not_a_tensor_is_refused(hf_dir, tmp_path):
    other = tmp_path / "bin"
    other.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(hf_dir / name, other)
    torch.save({"transformer.wte.weight": [1.0, 2.0]}, other / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"field weights\['transformer.wte.weight'\] must be a tensor, got list"):
        load_gpt2(other)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_a_shard_index_naming_a_file_outside_the_folder_is_refused(hf_dir, tmp_path, shard):
    sharded = tmp_path / "sharded"
    transformers.GPT2LMHeadModel.from_pretrained(hf_dir).save_pretrained(sharded, max_shard_size="20KB")
    shutil.copy(hf_dir / "tokenizer.json", sharded)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    index["weight_map"][next(iter(index["weight_map"]))] = shard
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"names the shard file '{re.escape(shard)}', outside"):
        load_gpt2(sharded)


@pytest.mark.parametrize("change", [{"n_positions": 10**9}, {"vocab_size": 10**9}, {"n_layer": 10**6}])
def test_huge_sizes_in_config_json_are_refused_before_anything_is_allocated(hf_dir, tmp_path, change):
    """By the memory check where the machine lacks the memory, else because the folder's weights
    are a tiny fraction of what config.json describes; nothing is built either way."""
    other = tmp_path / "model"
    shutil.copytree(hf_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, **change}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(CheckpointError, match=r"config.json describes a model (that needs|of)") as error:
        load_gpt2(other)
    assert "\n" not in str(error.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before < 500 * 2**20
