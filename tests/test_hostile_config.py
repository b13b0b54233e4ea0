"""Every config value bounded: seeds every random generator accepts, devices this machine has,
Optuna ranges Optuna accepts, sweeps with jobs, `+keys` something reads, run directories a run
may own, and no option a resumed run would silently ignore. Each is one line before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONF, run_cli, train_cfg
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from minigpt.checkpoint.format import read_checkpoint, read_meta
from minigpt.configs import SEED_MAX, GenerateOptions, TrainOptions
from minigpt.errors import ConfigError, RunDirError
from minigpt.inference.generation import pick_device
from minigpt.io import REPO_ROOT, check_run_place
from minigpt.options import check_added_keys
from minigpt.schema import check_values
from minigpt.sweep import check_sweep
from minigpt.training.run import check_resumed_options, train

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


@pytest.mark.parametrize("seed", ["abc", "", 10**21, -1, SEED_MAX + 1, True, 1.5, 2**20000], ids=range(8))
def test_a_seed_outside_what_numpy_torch_and_lightning_accept_is_one_line(seed):
    with pytest.raises(ConfigError, match=rf"^seed must be an integer from 0 to {SEED_MAX}") as error:
        check_values(GenerateOptions, {"seed": seed})
    assert "\n" not in str(error.value) and len(str(error.value)) < 200
    check_values(GenerateOptions, {"seed": SEED_MAX})
    check_values(GenerateOptions, {"seed": None})  # generate draws a random seed
    with pytest.raises(ConfigError, match=r"^seed must be an integer from 0 to \d+, got None$"):
        check_values(TrainOptions, {"seed": None})  # train seeds every step's dropout: it needs one


def test_train_refuses_a_bad_seed_before_writing_anything(tmp_path, small_corpus):
    with pytest.raises(ConfigError, match="seed must be an integer"):
        train(train_cfg(tmp_path, small_corpus, "seed=abc"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("meta", r"device=meta is not a compute device on this machine; use auto, cpu"),
        ("xla", r"device=xla is not a compute device on this machine"),
        ("cuda:99", r"device=cuda:99"),
        ("bogus", r"device='bogus' is not a device"),
        ("", r"device='' is not a device"),
    ],
)
def test_a_device_this_machine_does_not_have_is_one_line(name, message):
    with pytest.raises(ConfigError, match=message):
        pick_device(name)
    assert pick_device("cpu").type == "cpu"


@pytest.mark.parametrize("accelerator", ["tpu", "bogus", "cuda" if not torch.cuda.is_available() else "hpu"])
def test_an_accelerator_this_machine_does_not_have_is_one_line(tmp_path, small_corpus, accelerator):
    with pytest.raises(ConfigError, match=rf"^trainer.accelerator='{accelerator}' is not a compute device on this"):
        train(train_cfg(tmp_path, small_corpus, f"trainer.accelerator={accelerator}"))
    assert list(tmp_path.iterdir()) == []


def compose_tool(name: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(name, overrides=list(overrides))


@pytest.mark.parametrize(
    ("tool", "override", "message"),
    [
        ("train", "+unknown=1", r"^\+unknown: the config has no option unknown, and nothing would read it"),
        ("train", "+model.n_layers=4", r"^\+model.n_layers: model has no option n_layers"),
        ("train", "+optim.betas2=0.9", r"^\+optim.betas2: torch.optim.AdamW takes no argument betas2"),
        ("train", "+trainer.accumulate_grads=4", r"^\+trainer.accumulate_grads: lightning.pytorch.Trainer takes no"),
        ("train", "+sample.top_q=1", r"^\+sample.top_q: sample has no option top_q"),
        ("generate", "+unknown_key=1", r"^\+unknown_key: the config has no option unknown_key"),
        ("diagnose", "+text_files=a.txt", r"^\+text_files: the config has no option text_files"),
    ],
)
def test_an_added_key_nothing_reads_is_one_line(tool, override, message):
    extra = ("ckpt=x.ckpt",) if tool != "train" else ()
    cfg = compose_tool(tool, override, *extra)
    with pytest.raises(ConfigError, match=message):
        check_added_keys(cfg, [override])


def test_the_keys_of_an_added_object_are_checked_against_its_target():
    overrides = ["+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor", "+callbacks.lr.log_every=2"]
    message = r"^\+callbacks.lr.log_every: lightning.pytorch.callbacks.LearningRateMonitor takes no argument log_every"
    with pytest.raises(ConfigError, match=message):
        check_added_keys(compose_tool("train", *overrides), overrides)


def test_added_keys_that_something_reads_are_kept():
    """The documented uses of `+`: a Trainer argument, a new callback, a profiler with its options."""
    overrides = [
        "+trainer.limit_val_batches=4",
        "+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging",
        "+callbacks.ema.decay=0.98",
        "+trainer.profiler._target_=lightning.pytorch.profilers.SimpleProfiler",
        "+trainer.profiler.dirpath=outputs/profile",
        "++sample.temperature=0.5",
    ]
    check_added_keys(compose_tool("train", *overrides), overrides)
    strategies = ["+generation.strategies.hot={temperature: 1.5}", "+generation.strategies.beam.top_k=5"]
    check_added_keys(compose_tool("evaluate", "ckpt=x.ckpt", *strategies), strategies)  # evaluate checks each


def sweep_config(tmp_path: Path, sweeper: str, task: list[str], params: dict | None = None):
    """The `hydra` part of a multirun's config that `check_sweep` reads."""
    hydra = {"sweep": {"dir": str(tmp_path)}, "sweeper": {"_target_": sweeper, "params": params}}
    return OmegaConf.create({"hydra": {**hydra, "overrides": {"task": task}}})


@pytest.mark.parametrize("task", [["model.n_layer=range(0)"], ["seed=1,2", "model.n_layer=range(4,2)"]])
def test_a_sweep_of_zero_jobs_is_one_line(tmp_path, task):
    with pytest.raises(ConfigError, match=r"^the sweep has no jobs: model.n_layer=range\(.*\) gives no value"):
        check_sweep(sweep_config(tmp_path, BASIC, task))
    check_sweep(sweep_config(tmp_path, BASIC, ["seed=1,2", "model.n_layer=2"]))


@pytest.mark.parametrize(
    ("params", "task", "message"),
    [
        ({"optim.lr": "interval(0.1, 0.01)"}, [], r"optim.lr=interval\(0.1, 0.01\) is no search range: The `low`"),
        ({}, ["optim.lr=tag(log,interval(0,0.1))"], r"is no search range: The `low` value must be larger than 0"),
        ({"model.n_layer": "range(6, 2)"}, [], r"model.n_layer=range\(6, 2\) is no search range"),
    ],
)
def test_an_optuna_range_optuna_refuses_is_one_line(tmp_path, params, task, message):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with pytest.raises(ConfigError, match=message):
        check_sweep(sweep_config(tmp_path, OPTUNA, task, params))
    check_sweep(sweep_config(tmp_path, OPTUNA, [], {"optim.lr": "tag(log, interval(1e-4, 1e-2))"}))


def test_a_run_directory_is_never_the_root_home_repository_or_someone_elses_folder(tmp_path):
    for place, what in ((Path("/"), "the root"), (Path.home(), "your home folder"), (REPO_ROOT, "minigpt's repo")):
        with pytest.raises(RunDirError, match=f"run directory {place} is {what}"):
            check_run_place(place)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"holds files that are not a minigpt run's \(notes.txt\)"):
        check_run_place(tmp_path)
    (tmp_path / "checkpoints").mkdir()  # an earlier run's folder: the checkpoint check decides
    check_run_place(tmp_path)
    check_run_place(tmp_path / "new")
    check_run_place(tmp_path, only_reserved=True)


def test_options_a_resume_would_ignore_are_named(tiny_run, small_corpus, tmp_path):
    """The tiny run's own options resume (a longer run too); a changed learning rate, seed or batch
    size would be overridden by the checkpoint's state: one line naming each, nothing written."""
    last = Path(tiny_run["last_ckpt"])
    saved = read_meta(read_checkpoint(last), last).run_config
    same = ("trainer.val_check_interval=30", "sample.max_new_tokens=50", "resume=auto")
    check_resumed_options(train_cfg(tmp_path, small_corpus, "trainer.max_steps=120", *same), saved, last)
    cfg = train_cfg(tmp_path, small_corpus, "trainer.max_steps=120", *same, "optim.lr=3", "seed=7")
    with pytest.raises(ConfigError, match=r"continues its run as it was saved, so .* would be ignored") as error:
        check_resumed_options(cfg, saved, last)
    assert "optim.lr=3 (the checkpoint's run: 0.001)" in str(
        error.value
    ) and "seed=7 (the checkpoint's run: 1337)" in str(error.value)

    (tmp_path / "checkpoints").mkdir()
    shutil.copy(last, tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match=r"optim.lr=3 .*; drop it to resume, or start a new run"):
        train(train_cfg(tmp_path, small_corpus, "trainer.max_steps=120", "resume=auto", "optim.lr=3"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert not (tmp_path / "tensorboard").exists()


@pytest.mark.slow
def test_bad_sweeps_and_seeds_from_the_command_line_are_one_line_and_exit_2(tmp_path):
    for args in (
        ["train.py", "-m", "model=tiny", "model.n_layer=range(0)", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        ["train.py", "model=tiny", "seed=1000000000000000000000", f"run_dir={tmp_path / 'run'}"],
        ["train.py", "model=tiny", "hydra.run.dir=/"],
    ):
        result = run_cli(*args, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
