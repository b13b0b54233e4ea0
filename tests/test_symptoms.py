"""The symptom checks of minigpt/training/symptoms.py on signals built by hand, and the callback in
a real tiny run: quiet when nothing is wrong, naming the symptom when something is."""

from __future__ import annotations

import logging

import pytest
import torch

from minigpt.training.symptoms import (
    ADVICE,
    Finding,
    gradient_ratio,
    loss_rise,
    loss_spike,
    plateau,
    repeated_share,
    saturation,
)
from tests.conftest import train_cfg


def test_loss_spike_needs_a_jump_above_the_recent_minimum():
    noisy = [2.0, 2.1, 1.95, 2.05, 1.98]
    assert loss_spike(noisy, factor=1.5) is None
    assert loss_spike([*noisy, 3.3], factor=1.5) == pytest.approx(3.3 / 1.95)
    assert loss_spike([*noisy, float("nan")], factor=1.5) == float("inf")


def test_loss_rise_is_the_one_test_behind_spike_and_divergence():
    assert loss_rise(4.1, reference=4.17, factor=2.0) is None
    assert loss_rise(9.0, reference=4.0, factor=2.0) == pytest.approx(2.25)
    assert loss_rise(float("inf"), reference=4.0, factor=2.0) == float("inf")
    assert loss_spike([2.0], factor=1.5) is None


def test_plateau_is_a_loss_that_hardly_moved():
    assert plateau(4.17, [4.15, 4.16, 4.14], min_drop=0.1) == pytest.approx((4.17 - 4.15) / 4.17)
    assert plateau(4.17, [2.5, 2.6, 2.4], min_drop=0.1) is None


def test_gradient_ratio_compares_the_first_block_with_the_last():
    assert gradient_ratio([1e-4, 0.1, 1.0]) == pytest.approx(1e-4)
    assert gradient_ratio([0.5, 1.0]) == pytest.approx(0.5)


def test_saturation_counts_rows_on_one_key():
    T = 16
    one_hot = torch.eye(T)[None, None].expand(2, 3, T, T)  # every query on itself
    causal_uniform = torch.tril(torch.ones(T, T))
    causal_uniform = (causal_uniform / causal_uniform.sum(-1, keepdim=True))[None, None].expand(2, 3, T, T)
    assert saturation([one_hot, causal_uniform], min_pos=8) == [1.0, 0.0]


def test_repeated_share_finds_a_loop_and_not_prose():
    assert repeated_share("ROMEO:\n" + "the the the " * 20) > 0.9
    prose = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak.\n"
    assert repeated_share(prose) < 0.1
    assert repeated_share("") == 0.0


def test_every_symptom_has_its_causes_and_an_override_in_the_message():
    for symptom, (causes, fix) in ADVICE.items():
        text = Finding(symptom, 120, "layer 0", 3.0, 1.5).message()
        assert text.startswith(symptom.replace("_", " ") + " at step 120")
        assert causes in text and fix in text


def _run(tmp_path, corpus, *overrides):
    from minigpt.training.run import train

    cfg = train_cfg(tmp_path / "run", corpus, "trainer.val_check_interval=40", *overrides)
    train(cfg)


def _symptoms_of(caplog) -> list[str]:
    return [
        r.getMessage().split(" at step")[0]
        for r in caplog.records
        if " at step " in r.getMessage() and "likely cause" in r.getMessage()
    ]


@pytest.mark.slow
@pytest.mark.gallery
def test_a_normal_run_stays_quiet(tmp_path, small_corpus, caplog):
    caplog.set_level(logging.WARNING, logger="minigpt")
    _run(tmp_path, small_corpus, "trainer.max_steps=200")
    assert _symptoms_of(caplog) == []


def test_a_run_with_huge_initial_weights_is_named(tmp_path, small_corpus, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    caplog.set_level(logging.WARNING, logger="minigpt")
    _run(tmp_path, small_corpus, "trainer.max_steps=40", "model.init_std=1.0", "model.n_embd=64", "model.n_head=1")
    found = _symptoms_of(caplog)
    assert "saturated attention" in found, found
    # the same diagnosis in TensorBoard's TEXT tab, escaped for its Markdown: "optim.lr=<lower>"
    # unescaped would be read as an HTML tag and vanish from the page
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    entries = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("view/health/diagnosis/text_summary")]
    assert any(e.startswith("saturated attention") and "optim.lr=&lt;lower&gt;" in e for e in entries), entries
    assert not any("<" in e for e in entries), entries


def test_a_greedy_final_sample_in_a_loop_is_named(tmp_path, small_corpus, caplog):
    caplog.set_level(logging.WARNING, logger="minigpt")
    _run(tmp_path, small_corpus, "trainer.max_steps=40", "sample.max_new_tokens=200", "sample.temperature=0")
    assert "repetition" in _symptoms_of(caplog)


# each failure of the gallery (conf/experiment/debug/) and the symptom its run must name; the
# measurements behind the thresholds are in docs/debugging.md
GALLERY = {
    "loss_spike": "loss spike",
    "lr_high": "saturated attention",
    "lr_low": "plateau",
    "no_residual": "vanishing gradients",
    "no_scale": "saturated attention",
    "init_large": "exploding gradients",
    "no_warmup": "dead units",  # its fix is named saturated attention too (docs/debugging.md)
    "greedy": "repetition",
}


@pytest.mark.slow
@pytest.mark.gallery  # about a minute each: `make test-all`, not CI's `make test-slow`
@pytest.mark.parametrize("failure", sorted(GALLERY))
def test_the_gallery_failure_is_named(failure, tmp_path, shakespeare, caplog):
    from omegaconf import open_dict

    from minigpt.configs import compose
    from minigpt.training.run import train

    caplog.set_level(logging.WARNING, logger="minigpt")
    cfg = compose(
        "train",
        [f"experiment=debug/{failure}", f"data.path={shakespeare}", "trainer.enable_progress_bar=false"],
    )
    with open_dict(cfg):
        cfg.run_dir = str(tmp_path / "run")
    train(cfg)
    assert GALLERY[failure] in _symptoms_of(caplog)


@pytest.mark.parametrize(
    "failure, fix",
    [("lr_low", "optim.lr=1e-3"), ("init_large", "model.init_std=0.02"), ("greedy", "sample.temperature=0.8")],
)
def test_the_fix_of_a_failure_trains_the_normal_run(failure, fix):
    """docs/debugging.md gives these fixes the normal run's figures: one override away from the
    failure is exactly the normal run's training config (greedy's sample is shorter)."""
    from omegaconf import OmegaConf

    from minigpt.configs import compose

    def run(overrides: list[str]) -> dict:
        cfg = OmegaConf.to_container(compose("train", overrides))
        return {k: v for k, v in cfg.items() if k not in ("task_name", "hydra")}

    def training(overrides: list[str]) -> dict:
        return {k: v for k, v in run(overrides).items() if k != "sample"}

    normal = training(["model=small", "trainer.max_steps=300", "trainer.val_check_interval=100"])
    assert training([f"experiment=debug/{failure}", fix]) == normal
    assert run([f"experiment=debug/{failure}"]) != run([f"experiment=debug/{failure}", fix])
