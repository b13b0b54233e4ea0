"""Sizes have limits, decoding options are finite: a batch, a model or a generation that cannot
fit in memory is refused in one line from an estimate made before anything is allocated (the
tests set the memory the estimate is compared with; nothing big is ever allocated), and NaN or
infinite decoding options are refused like any other bad value."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import train_cfg
from omegaconf import OmegaConf

from minigpt.analysis.diagnose import diagnose
from minigpt.analysis.metrics import generation_table, token_losses
from minigpt.checkpoint import weights
from minigpt.checkpoint.load import load_model
from minigpt.checkpoint.weights import activation_bytes, decoding_bytes, estimate_model_bytes, training_bytes
from minigpt.errors import ConfigError
from minigpt.inference.generation import check_counts, complete, sampling_config
from minigpt.model import GPTConfig
from minigpt.training.run import train

GB = 10**9


@pytest.fixture
def memory(monkeypatch):
    """Set the memory the estimates are compared with: `memory(2 * GB)`."""

    def set_free(n: int) -> None:
        monkeypatch.setattr(weights, "available_memory", lambda device=None: n)

    return set_free


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run["last_ckpt"])


def test_estimates_grow_with_the_sizes_that_cost_memory():
    c = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)
    # training: weights, gradients and two AdamW moments, plus every layer's activations
    assert training_bytes(c, 0) >= 4 * estimate_model_bytes(c)
    assert training_bytes(c, 200) - training_bytes(c, 100) == training_bytes(c, 100) - training_bytes(c, 0)
    assert activation_bytes(c, 8, 64, training=True) > activation_bytes(c, 8, 64, training=False)
    # the logits alone: 4 bytes x batch x tokens x vocabulary, three copies when training
    assert activation_bytes(c, 8, 64, training=True) > 3 * 4 * 8 * 64 * 65
    # decoding: the KV cache is made for block_size positions of every row at the first step
    cache = 4 * 2 * c.n_layer * 1000 * c.block_size * c.n_embd
    assert decoding_bytes(c, 1000, 1, 5, use_cache=True) > cache > decoding_bytes(c, 1000, 1, 5, use_cache=False)
    assert decoding_bytes(c, 1, 1, 10**12, use_cache=True) > 12 * 10**12  # the ids and text of a long sample


def test_the_refusal_says_how_much_is_needed_and_how_much_there_is(memory):
    memory(3 * GB)
    assert weights.memory_shortfall(2 * GB) is None
    assert weights.memory_shortfall(4 * GB) == "needs about 4 GB of memory, but this machine has 3 GB available"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=10000000", r"training on data.batch_size=10000000 windows of 32 tokens at once needs about"),
        ("data.eval_batch_size=100000000", r"validating data.eval_batch_size=100000000 windows at once needs about"),
        ("model.n_layer=100000000", r"training the model \(model.n_layer=100000000, model.n_embd=16, "),
        ("model.block_size=1000000000", r"model.block_size=1000000000\), with its gradients and optimizer state"),
    ],
)
def test_training_sizes_beyond_memory_are_refused_before_anything_is_built(
    memory, override, message, tmp_path, small_corpus
):
    memory(8 * GB)
    with pytest.raises(ConfigError, match=message + r".* of memory, but this machine has 8 GB available") as error:
        train(train_cfg(tmp_path, small_corpus, override))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "tensorboard").exists()


def test_a_batch_of_ten_million_windows_is_refused_on_this_machine_too(tmp_path, small_corpus):
    """The real memory of this machine: about a terabyte is needed, no test machine has it."""
    with pytest.raises(ConfigError, match=r"data.batch_size=10000000 .* needs about 1.\d+ TB of memory, but this"):
        train(train_cfg(tmp_path, small_corpus, "data.batch_size=10000000"))


def generate_cfg(**options):
    cfg = OmegaConf.create(
        {
            "max_new_tokens": 500,
            "num_samples": 1,
            "num_beams": 1,
            "length_penalty": 1.0,
            "use_cache": True,
            "stream": False,
            "interactive": False,
            "unknown": "error",
            "seed": 0,
            "stop": [],
            "temperature": 0.8,
            "top_k": None,
            "top_p": None,
            "min_p": None,
            "typical_p": None,
            "repetition_penalty": 1.0,
        }
    )
    cfg.update(options)
    return cfg


def test_generate_refuses_samples_or_beams_beyond_memory(memory, loaded):
    memory(2 * GB)
    for options, message in (
        ({"num_samples": 10**6}, r"decoding num_samples=1000000 sequences at once, 1 \+ 500 tokens long, needs about"),
        ({"num_beams": 10**6, "num_samples": 1}, r"decoding num_beams=1000000 sequences at once"),
        ({"max_new_tokens": 10**11}, r"1 \+ 100000000000 tokens long, needs about 1.2 TB"),
    ):
        with pytest.raises(ConfigError, match=message + r".* but this machine has 2 GB available") as error:
            complete(loaded, "", generate_cfg(**options), torch.device("cpu"))
        assert "\n" not in str(error.value)
    # a KV cache for a million rows takes 4.1 GB; without one, the same samples fit: the message says so
    memory(5 * GB)
    with pytest.raises(ConfigError, match=r"lower num_samples or max_new_tokens \(or pass use_cache=false: no KV"):
        complete(loaded, "", generate_cfg(num_samples=10**6, max_new_tokens=1), torch.device("cpu"))


def test_evaluate_refuses_batches_and_prompts_beyond_memory(memory, loaded):
    memory(1 * GB)
    ids = torch.randint(loaded.tokenizer.vocab_size, (200_000,))
    with pytest.raises(ConfigError, match=r"scoring batch_size=1000000 windows of 32 tokens at once needs about .*"):
        token_losses(loaded.model, ids, stride=1, batch_size=10**6)
    strategies = {"greedy": {"temperature": 0}, "beam": {"num_beams": 10**6}}
    with pytest.raises(ConfigError, match=r"generation.strategies.beam: decoding num_beams=1000000 beams at once"):
        generation_table(loaded, ids, strategies, prompts=2, prompt_chars=8, new_chars=8)
    with pytest.raises(ConfigError, match=r"strategies.greedy: decoding generation.prompts=100000 prompts at once"):
        generation_table(loaded, ids, {"greedy": {"temperature": 0}}, prompts=100_000, prompt_chars=32, new_chars=8)


def test_diagnose_refuses_samples_beyond_memory(memory, loaded, tmp_path):
    memory(1 * GB)
    message = r"decoding the sample at once, 6 \+ 100000000000 tokens long, needs about 1.2 TB .* has 1 GB available"
    with pytest.raises(ConfigError, match=message + r"; lower max_new_tokens=100000000000"):
        diagnose(loaded, "ROMEO:", tmp_path / "diag", max_new_tokens=10**11)
    assert not (tmp_path / "diag").exists()


# --------------------------------------------------------------------------- non-finite options


@pytest.mark.parametrize("field", ["temperature", "top_p", "min_p", "typical_p", "repetition_penalty"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_decoding_options_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"^{field} must be a number .*, got {value}; "):
        sampling_config(generate_cfg(**{field: value}))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_length_penalty_is_refused(value):
    with pytest.raises(ConfigError, match=f"^length_penalty must be a number, got {value}$"):
        check_counts(generate_cfg(num_beams=4, length_penalty=value))


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ("trainer.gradient_clip_val=nan", "trainer.gradient_clip_val"),
        ("trainer.val_check_interval=inf", "trainer.val_check_interval"),
        ("model.rope_base=nan", "model.rope_base"),
        ("trainer.max_time={seconds:nan}", "trainer.max_time.seconds"),
    ],
)
def test_no_option_of_any_tool_may_be_nan_or_infinite(override, name, tmp_path, small_corpus, capsys):
    """Every tool's entry point (friendly_errors) refuses NaN and infinity anywhere in its config."""
    from minigpt.cli import friendly_errors

    ran = []
    with pytest.raises(SystemExit) as exit_info:
        friendly_errors(ran.append)(train_cfg(tmp_path, small_corpus, override))
    assert exit_info.value.code == 2 and not ran
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: {name} must be a finite number, got {override.split('=')[-1].strip('{}').split(':')[-1]}"
