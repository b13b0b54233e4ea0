"""A wall-clock budget stops training, validates at the end and drives the schedule."""

import math

import pytest
from conftest import train_cfg

from minigpt.figures import read_scalars
from minigpt.training.run import train


def test_budget_stops_training_validates_and_ends_the_schedule(tmp_path, small_corpus):
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "trainer.max_steps=100000",
        "trainer.val_check_interval=100000",
        "scheduler=wsd",
        "scheduler.warmup_steps=2",
        "scheduler.decay_fraction=0.5",
        "trainer.log_every_n_steps=1",
        "callbacks=none",
        "trainer.max_time={seconds:3}",
    )
    summary = train(cfg)
    assert 5 < summary["steps"] < 100000
    scalars = read_scalars(tmp_path / "tensorboard")
    assert [s for s, _ in scalars["val/loss"]] == [summary["steps"]]  # one validation, at the last step
    assert math.isfinite(summary["best_val_loss"])
    lrs = [v for _, v in scalars["train/lr/hidden"]]
    assert max(lrs) == pytest.approx(1e-3)  # the stable phase ran at the base lr
    assert lrs[-1] < 0.25 * max(lrs)  # and the decay had nearly finished when time ran out


def test_cpu_90s_recipe_composes_and_runs(tmp_path, small_corpus):
    cfg = train_cfg(tmp_path, small_corpus, "experiment=cpu_90s", "model.n_layer=1", "trainer.max_time={seconds:2}")
    assert cfg.optim._target_ == "minigpt.training.optim.MuonAdamW" and cfg.model.qk_norm
    summary = train(cfg)
    assert summary["steps"] > 0
    assert summary["matmul_precision"] in ("medium", "highest")  # auto resolved, and recorded
