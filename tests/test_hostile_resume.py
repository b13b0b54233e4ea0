"""A resumed run reads only what it validated: each part of a checkpoint's training state
(callbacks, optimizer, schedule, loop counters) is checked against what the run writes, or
rebuilt from the run directory, before Lightning sees it. Each test crafts one state into a real
last.ckpt of a tiny run; a crafted state is one line (exit 2), or is rebuilt, and no file
outside the run directory is ever touched."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import QUIET, ROOT, run_cli, train_cfg

from minigpt.errors import CheckpointError
from minigpt.training.run import train

# no diagnostics, a short validation: each resume costs a few seconds
FAST = ("callbacks=none", "data.val_windows=8", "trainer.num_sanity_val_steps=0", "checkpoint.every_n_steps=5")
FIRST = ("trainer.max_steps=10", "trainer.val_check_interval=5", *FAST)
MORE = ("trainer.max_steps=15", "trainer.val_check_interval=5", *FAST, "resume=auto")
CHECKPOINT_STATE = "ModelCheckpoint{"  # the start of the best checkpoint's state key


@pytest.fixture(scope="module")
def first_run(small_corpus, tmp_path_factory) -> Path:
    """A tiny run of 10 steps whose last.ckpt the tests craft (copied, never changed)."""
    run_dir = tmp_path_factory.mktemp("first") / "run"
    train(train_cfg(run_dir, small_corpus, *FIRST))
    return run_dir


def crafted_run(first_run: Path, tmp_path: Path, craft: Callable[[dict, Path], None]) -> Path:
    """A copy of `first_run` at tmp_path/run whose last.ckpt `craft(ckpt, run_dir)` changed."""
    run_dir = tmp_path / "run"
    shutil.copytree(first_run, run_dir, ignore=shutil.ignore_patterns(".lock*"))
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    craft(ckpt, run_dir)
    torch.save(ckpt, last)
    return run_dir


def best_state(ckpt: dict) -> dict:
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith(CHECKPOINT_STATE))


def resume(run_dir: Path, corpus: Path) -> dict:
    return train(train_cfg(run_dir, corpus, *MORE))


def refused(run_dir: Path, corpus: Path) -> str:
    with pytest.raises(CheckpointError) as e:
        resume(run_dir, corpus)
    message = str(e.value)
    assert "\n" not in message and str(run_dir / "checkpoints" / "last.ckpt") in message
    assert "diverged" not in message
    return message


def point_top_k_at(target: str) -> Callable[[dict, Path], None]:
    """A `ModelCheckpoint` state whose top-k bookkeeping names `target` (formatted with the run
    directory) as the checkpoint to replace at the next better score."""

    def craft(ckpt: dict, run_dir: Path) -> None:
        path = target.format(run=run_dir)
        state = best_state(ckpt)
        worse = torch.tensor(100.0)  # any real validation beats it, so the "old best" is removed
        state.update(
            dirpath=str(run_dir / "checkpoints"),  # as Lightning needs to restore the paths at all
            best_k_models={path: worse},
            kth_best_model_path=path,
            best_model_path=path,
            kth_value=worse,
            best_model_score=worse,
        )

    return craft


def test_a_crafted_top_k_path_outside_the_run_never_touches_that_file(first_run, small_corpus, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("not a checkpoint")
    run_dir = crafted_run(first_run, tmp_path, point_top_k_at("{run}/checkpoints/../../victim.txt"))
    summary = resume(run_dir, small_corpus)
    assert victim.read_text() == "not a checkpoint"
    assert summary["steps"] == 15 and summary["best_ckpt"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert 0 < summary["best_val_loss"] < 100


@pytest.mark.slow
def test_a_crafted_top_k_path_through_a_link_never_touches_its_target(first_run, small_corpus, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("not a checkpoint")

    def craft(ckpt: dict, run_dir: Path) -> None:
        (run_dir / "checkpoints" / "old.ckpt").symlink_to(victim)
        point_top_k_at("{run}/checkpoints/old.ckpt")(ckpt, run_dir)

    run_dir = crafted_run(first_run, tmp_path, craft)
    resume(run_dir, small_corpus)
    assert victim.read_text() == "not a checkpoint"


def test_a_best_score_of_minus_1000_is_rebuilt_from_best_ckpt(first_run, small_corpus, tmp_path):
    def craft(ckpt: dict, run_dir: Path) -> None:
        state = best_state(ckpt)
        low = torch.tensor(-1000.0)
        state.update(dirpath=str(run_dir / "checkpoints"), best_model_score=low, kth_value=low, current_score=low)
        state["best_k_models"] = {k: low for k in state["best_k_models"]}
        ckpt["minigpt"]["best_val_loss"] = 0.5  # a plausible but wrong lowest loss: best.ckpt's wins

    run_dir = crafted_run(first_run, tmp_path, craft)
    best = run_dir / "checkpoints" / "best.ckpt"
    before = best.stat().st_mtime_ns
    summary = resume(run_dir, small_corpus)
    assert 1 < summary["best_val_loss"] < 10  # a character model's loss, not the crafted score
    assert best.stat().st_mtime_ns != before  # the better validation of step 15 was saved


def test_best_ckpt_linked_outside_the_run_is_refused(first_run, small_corpus, tmp_path):
    elsewhere = tmp_path / "elsewhere.ckpt"

    def craft(ckpt: dict, run_dir: Path) -> None:
        best = run_dir / "checkpoints" / "best.ckpt"
        shutil.move(best, elsewhere)
        best.symlink_to(elsewhere)

    run_dir = crafted_run(first_run, tmp_path, craft)
    with pytest.raises(CheckpointError, match="is not a file of its checkpoints folder"):
        resume(run_dir, small_corpus)
    assert elsewhere.is_file()


def set_in(path: tuple, value: object) -> Callable[[dict, Path], None]:
    """A craft that sets ckpt[path[0]][path[1]]... to `value`."""

    def craft(ckpt: dict, run_dir: Path) -> None:
        node = ckpt
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return craft


def drop(path: tuple) -> Callable[[dict, Path], None]:
    def craft(ckpt: dict, run_dir: Path) -> None:
        node = ckpt
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return craft


def score_as_text(ckpt: dict, run_dir: Path) -> None:
    best_state(ckpt)["best_model_score"] = "low"


def state_of_wrong_shape(ckpt: dict, run_dir: Path) -> None:
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(3)


def counters_out_of_step(ckpt: dict, run_dir: Path) -> None:
    ckpt["global_step"] = 10**9


OPTIM = ("optimizer_states", 0)
FIT = ("loops", "fit_loop")


@pytest.mark.parametrize(
    "craft, field",
    [
        (score_as_text, "callbacks[ModelCheckpoint].best_model_score must be a number, got 'low'"),
        (drop((*OPTIM, "param_groups")), "optimizer_states[0] lacks param_groups"),
        (set_in((*OPTIM, "param_groups", 0, "lr"), "fast"), "optimizer_states[0].param_groups[0].lr must be a finite"),
        (
            set_in((*OPTIM, "param_groups", 1, "lr"), math.nan),
            "param_groups[1].lr must be a finite number >= 0, got nan",
        ),
        (set_in((*OPTIM, "param_groups", 0, "betas"), (0.9, 1.0)), "param_groups[0].betas[1] must be a finite number"),
        (set_in((*OPTIM, "param_groups", 0, "params"), [0, 0]), "param_groups[0].params must be"),
        (set_in((*OPTIM, "param_groups", 0, "maximize"), True), "param_groups[0].maximize must be False"),
        (set_in((*OPTIM, "state", 0, "step"), torch.tensor(-3.0)), "state[0].step must be a finite number in [0, 10]"),
        (state_of_wrong_shape, "optimizer_states[0].state[0].exp_avg must be a tensor of shape (48, 16)"),
        (set_in((*OPTIM, "state", 0, "exp_avg_sq", 0, 0), math.inf), "state[0].exp_avg_sq holds NaN or infinite"),
        (set_in(FIT, "garbage"), "loops.fit_loop must be a mapping"),
        (set_in((*FIT, "epoch_loop.batch_progress", "total", "ready"), -5), "total.ready must be a count"),
        (set_in((*FIT, "epoch_loop.batch_progress", "total", "ready"), 2.5), "total.ready must be a count"),
        (counters_out_of_step, "counts 10 optimizer steps, but the checkpoint's global_step is 1000000000"),
        (drop(("lr_schedulers", 0, "lr_lambdas")), "lr_schedulers[0] lacks lr_lambdas"),
        (set_in(("lr_schedulers", 0, "lr_lambdas"), [{"x": 1}] * 3), "lr_schedulers[0].lr_lambdas[0] must be"),
        (set_in(("lr_schedulers", 0, "last_epoch"), 7), "lr_schedulers[0].last_epoch is 7"),
        (set_in(("epoch",), -1), "field epoch must be a count"),
        (set_in(("pytorch-lightning_version",), "latest"), "pytorch-lightning_version must be a version"),
    ],
)
def test_a_crafted_training_state_is_one_line_naming_the_field(craft, field, first_run, small_corpus, tmp_path):
    message = refused(crafted_run(first_run, tmp_path, craft), small_corpus)
    assert field in message and "init_from=" in message


def test_overflowing_weights_are_named_not_reported_as_divergence(first_run, small_corpus, tmp_path):
    def huge(ckpt: dict, run_dir: Path) -> None:
        ckpt["state_dict"]["model.transformer.wte.weight"][0, 0] = 1e38  # finite, but not in a forward pass

    message = refused(crafted_run(first_run, tmp_path, huge), small_corpus)
    assert "weight model.transformer.wte.weight with a value of magnitude 1e+38" in message


def test_a_negative_lowest_loss_in_the_metadata_is_refused(first_run, small_corpus, tmp_path):
    message = refused(crafted_run(first_run, tmp_path, set_in(("minigpt", "best_val_loss"), -1000.0)), small_corpus)
    assert "field minigpt.best_val_loss must be a loss >= 0 (inf: not validated yet), got -1000.0" in message


@pytest.mark.slow
def test_train_py_names_a_nan_learning_rate_in_the_checkpoint_not_divergence(first_run, small_corpus, tmp_path):
    run_dir = crafted_run(first_run, tmp_path, set_in((*OPTIM, "param_groups", 0, "lr"), math.nan))
    args = ["model=tiny", f"data.path={small_corpus}", *QUIET, *MORE, f"hydra.run.dir={run_dir}"]
    result = run_cli(str(ROOT / "train.py"), *args)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "optimizer_states[0].param_groups[0].lr must be a finite number >= 0, got nan" in errors[0]


@pytest.mark.slow
def test_a_run_with_weight_averaging_and_a_time_budget_resumes(small_corpus, tmp_path):
    """The states of Lightning's Timer and EMAWeightAveraging pass the checks when a run wrote them."""
    first, more = ([o for o in run if o != "callbacks=none"] for run in (FIRST, MORE))
    options = ("callbacks=ema", "trainer.max_time={seconds: 600}")
    run_dir = tmp_path / "run"
    train(train_cfg(run_dir, small_corpus, *first, *options))
    summary = train(train_cfg(run_dir, small_corpus, *more, *options))
    assert summary["steps"] == 15 and math.isfinite(summary["best_val_loss"])
    assert os.path.isfile(summary["best_ckpt"])
