"""The checkpoint format (minigpt/checkpoint/format.py): checkpoints with today's exact layout
load, the record round-trips, and the memory a model config asks for is estimated exactly and
refused, before anything is allocated, when the machine does not have it."""

from __future__ import annotations

import resource

import pytest
import torch

from minigpt.architectures import build_model
from minigpt.checkpoint.format import CHECKPOINT_KEY, FORMAT_VERSION, CheckpointMeta, config_of, read_meta
from minigpt.checkpoint.load import load_model
from minigpt.checkpoint.weights import (
    available_memory,
    estimate_model_bytes,
    human_bytes,
    parameter_count,
    state_dict_size,
)
from minigpt.errors import CheckpointError
from minigpt.inference.classify import classify_texts, load_classifier

# the keys train.py has always written under "minigpt"; a classifier adds CLASSIFIER_KEYS
LM_KEYS = ["format_version", "model_config", "vocab", "run_config", "best_val_loss"]
CLASSIFIER_KEYS = ["task", "labels", "pooling", "best_val_acc"]


@pytest.fixture(scope="module")
def original(tiny_run) -> dict:
    return torch.load(tiny_run["last_ckpt"], weights_only=True)


def todays_layout(original: dict) -> dict:
    """The metadata written out by hand, key by key, as the current train.py lays it out: not
    through CheckpointMeta, so a change of the format's code cannot hide a change of the layout."""
    meta = original[CHECKPOINT_KEY]
    return {
        "format_version": 1,
        "model_config": {"arch": "gpt", **{k: v for k, v in meta["model_config"].items() if k != "arch"}},
        "vocab": list(meta["vocab"]),
        "run_config": meta["run_config"],
        "best_val_loss": float(meta["best_val_loss"]),
    }


def test_train_py_writes_todays_layout(original):
    meta = original[CHECKPOINT_KEY]
    assert list(meta) == LM_KEYS and FORMAT_VERSION == 1
    assert meta["model_config"]["arch"] == "gpt" and isinstance(meta["vocab"], list)
    assert read_meta(original, "x").to_dict() == meta  # the record writes back exactly what it read


def test_a_checkpoint_with_todays_layout_loads(original, tmp_path, tiny_run):
    by_hand = {**original, CHECKPOINT_KEY: todays_layout(original)}
    path = tmp_path / "today.ckpt"
    torch.save(by_hand, path)
    loaded, reference = load_model(path), load_model(tiny_run["last_ckpt"])
    assert loaded.meta["vocab"] == reference.tokenizer.serialize() and loaded.meta.run_config["model"]
    ids = torch.tensor([loaded.tokenizer.encode("ROMEO:")])
    with torch.no_grad():
        assert torch.equal(loaded.model(ids), reference.model(ids))


def test_a_classifier_checkpoint_with_todays_layout_loads(original, tmp_path):
    """A classifier's layout: the language model's keys, then task, labels, pooling and
    best_val_acc, and the head's weights beside the trunk's."""
    n_embd = original[CHECKPOINT_KEY]["model_config"]["n_embd"]
    layout = {**todays_layout(original), "task": "classify", "labels": ["name", "verse"], "pooling": "last"}
    layout["best_val_acc"] = 0.9
    state = {**original["state_dict"], "head.weight": torch.randn(2, n_embd), "head.bias": torch.zeros(2)}
    path = tmp_path / "classifier.ckpt"
    torch.save({**original, "state_dict": state, CHECKPOINT_KEY: layout}, path)
    assert list(layout) == LM_KEYS + CLASSIFIER_KEYS
    classifier = load_classifier(path)
    assert classifier.labels == ["name", "verse"]
    (probs,) = classify_texts(classifier, ["ROMEO:"])
    assert sorted(probs) == ["name", "verse"] and sum(probs.values()) == pytest.approx(1.0)
    assert read_meta(torch.load(path, weights_only=True), path).to_dict() == layout


def test_the_record_reads_as_the_dict_on_disk(original):
    meta = read_meta(original, "x")
    assert isinstance(meta, CheckpointMeta) and meta.classifier is None
    assert meta["model_config"] is meta.model_config and meta.get("task") is None and "vocab" in meta
    assert dict(meta) == original[CHECKPOINT_KEY]


CONFIGS = [
    {"arch": "gpt", "vocab_size": 65, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 16},
    {"arch": "gpt", "vocab_size": 65, "n_layer": 1, "n_head": 2, "n_embd": 16, "tie_weights": False, "bias": False},
    {"arch": "gpt", "vocab_size": 65, "n_layer": 2, "n_head": 4, "n_embd": 16, "pos_encoding": "sinusoidal"},
    {"arch": "gpt", "vocab_size": 65, "n_layer": 2, "n_head": 4, "n_embd": 16, "pos_encoding": "alibi"},
    {"arch": "gpt", "vocab_size": 65, "n_layer": 3, "n_head": 2, "n_embd": 8, "norm": "rmsnorm"},
    {"arch": "gpt", "vocab_size": 65, "n_layer": 1, "n_head": 2, "n_embd": 8, "norm": "none", "pos_encoding": "rope"},
    {"arch": "lstm", "vocab_size": 65, "n_layer": 2, "n_embd": 16},
    {"arch": "lstm", "vocab_size": 65, "n_layer": 1, "n_embd": 16, "tie_weights": False},
]
SMALL = {"arch": "gpt", "vocab_size": 65, "n_layer": 3, "n_head": 2, "n_embd": 8}
EVERY_LEVER = {"zero_init_proj": True, "logit_softcap": 5.0, "value_embeds": True, "unet_skips": True, "short_conv": 3}
# every other switch of GPTConfig and every lever, alone, then all levers at once, at 3 layers and
# past weights.EXACT_DEPTH (sized from fewer layers: odd and even depths)
CONFIGS += [
    {**SMALL, **switch}
    for switch in (
        {"residual": False},
        {"scale_attn": False},
        {"qk_norm": True},
        {"swap_qk": True},
        {"mlp_ratio": 3},
        {"activation": "relu2"},
        {"pos_encoding": "none", "attn_impl": "manual"},
        *({name: value} for name, value in EVERY_LEVER.items()),
        {"short_conv": 1, "bias": False, "tie_weights": False},
        EVERY_LEVER,
        {**EVERY_LEVER, "n_layer": 19},
        {**EVERY_LEVER, "n_layer": 20, "pos_encoding": "sinusoidal"},
    )
]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if k != "vocab_size")
)
def test_the_memory_estimate_is_the_built_models_exactly(config):
    model = build_model(config)
    tensors = list(model.parameters()) + list(model.buffers())  # parameters() counts a tied matrix once
    assert estimate_model_bytes(config_of(config)) == sum(t.numel() * t.element_size() for t in tensors)
    assert parameter_count(config_of(config)) == sum(p.numel() for p in model.parameters())
    assert state_dict_size(config_of(config)) == sum(t.numel() for t in model.state_dict().values())


def crafted(original: dict, tmp_path, **model_config) -> str:
    meta = {**original[CHECKPOINT_KEY], "model_config": {**original[CHECKPOINT_KEY]["model_config"], **model_config}}
    path = tmp_path / "crafted.ckpt"
    torch.save({**original, CHECKPOINT_KEY: meta}, path)
    return str(path)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def test_a_model_larger_than_any_machine_is_refused_with_both_sizes(original, tmp_path):
    path = crafted(original, tmp_path, n_layer=10**6, n_embd=2**14, n_head=16)
    need = estimate_model_bytes(config_of(read_meta(torch.load(path, weights_only=True), path).model_config))
    assert need > 10**16 and available_memory() is not None
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    message = str(error.value)
    assert message.startswith(
        f"checkpoint {path}: field minigpt.model_config describes a model that needs {human_bytes(need)} of memory "
        f"(n_layer=1000000, n_embd=16384, block_size=32, vocab_size={len(original[CHECKPOINT_KEY]['vocab'])}), "
        f"but this machine has "
    )
    assert message.endswith(" available; use a smaller model or a machine with more memory") and "\n" not in message


@pytest.mark.parametrize("change", [{"block_size": 10**9}, {"vocab_size": 10**9}, {"n_layer": 10**6}])
def test_huge_sizes_are_refused_before_anything_is_allocated(original, tmp_path, change):
    """Refused by the memory check where the machine lacks the memory, else because the file's
    weights are a tiny fraction of what the config describes; either way nothing is built."""
    path = crafted(original, tmp_path, **change)
    before = peak_rss_bytes()
    with pytest.raises(CheckpointError, match=r"field minigpt\.model_config describes a model|is inconsistent") as e:
        load_model(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert peak_rss_bytes() - before < 500 * 2**20
