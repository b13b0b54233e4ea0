"""Reliability: a run killed or stopped at any moment resumes to exactly the weights of an
uninterrupted one; saves are atomic; divergence stops cleanly; two CPU processes train with DDP."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import QUIET, ROOT, run_cli, train_cfg

from minigpt.checkpoint.format import read_checkpoint
from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import CharDataModule, FixedWindows
from minigpt.errors import CheckpointError, TrainingDiverged
from minigpt.training.checkpoint_io import SafeCheckpointIO
from minigpt.training.run import train

# dropout on, so that resuming must also reproduce the random state, not only the batches
RUN = (
    "model.dropout=0.1",
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=1",
    "checkpoint.every_n_steps=5",
)


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory) -> dict:
    """The uninterrupted run every interrupted one is compared with."""
    return train(train_cfg(tmp_path_factory.mktemp("reference"), small_corpus, *RUN))


def weights(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    return load_model(ckpt_path).model.state_dict()


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def start_train_py(run_dir: Path, corpus: Path) -> subprocess.Popen:
    """train.py in a fresh interpreter, writing into `run_dir` (as `hydra.run.dir`)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTEST_ADDOPTS", None)
    args = ["model=tiny", f"data.path={corpus}", *QUIET, *RUN, f"hydra.run.dir={run_dir}"]
    stderr = open(run_dir.parent / "stderr.txt", "w")  # noqa: SIM115 -- closed when the process is waited for
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"train.py ended early: {(path.parents[2] / 'stderr.txt').read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "sig", ["SIGKILL", pytest.param("SIGTERM", marks=pytest.mark.slow), pytest.param("SIGINT", marks=pytest.mark.slow)]
)
def test_interrupted_run_resumes_to_the_uninterrupted_weights(sig, reference, small_corpus, tmp_path):
    """Kill (or stop) train.py mid-run, resume with resume=auto into the same directory: the final
    weights and validation loss equal those of the run that was never interrupted."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = start_train_py(run_dir, small_corpus)
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(last, proc)
    proc.send_signal(getattr(signal, sig))
    rc = proc.wait(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    stopped_at = read_checkpoint(last)["global_step"]  # readable: never a half-written file
    assert 5 <= stopped_at < 20, stopped_at
    if sig == "SIGKILL":
        assert rc == -signal.SIGKILL
    else:  # finished the step, saved, exited cleanly, and said how to continue
        assert rc == 0, stderr[-2000:]
        log = (run_dir / "train.log").read_text()
        assert f"received {sig}" in log and "resume=auto" in log
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["stopped_by"] == sig and summary["steps"] == stopped_at

    resumed = train(train_cfg(run_dir, small_corpus, *RUN, "resume=auto"))
    assert resumed["steps"] == 20
    assert_same_weights(weights(resumed["last_ckpt"]), weights(reference["last_ckpt"]))
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-6)
    assert resumed["best_val_loss"] == pytest.approx(reference["best_val_loss"], rel=1e-6)


def test_same_seed_same_loss_curve(small_corpus, tmp_path):
    from minigpt.figures import read_scalars

    short = (*RUN, "trainer.max_steps=8", "trainer.val_check_interval=8")
    curves = []
    for name in ("a", "b"):
        train(train_cfg(tmp_path / name, small_corpus, *short))
        curves.append([v for _, v in read_scalars(tmp_path / name / "tensorboard")["train/loss"]])
    assert len(curves[0]) == 8 and curves[0] == curves[1]  # bit for bit on CPU


def test_checkpoint_writes_are_atomic(tmp_path):
    path = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    good = path.read_bytes()
    # a write that fails half way (an object that cannot be pickled, after a large tensor)
    with pytest.raises(Exception, match="pickle|Can't|lambda"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1_000_000)}, "hook": lambda: 0}, path)
    # non-finite weights are never written
    with pytest.raises(TrainingDiverged, match="not finite at step 7.*previous checkpoint is kept"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, math.nan])}, "global_step": 7}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


class PoisonGradient(L.Callback):
    """Sets one gradient entry to `value` before the optimizer step of step `at_step`: the weights
    then hold a NaN or an infinity after that step on any CPU, whatever its rounding."""

    def __init__(self, at_step: int, value: float) -> None:
        self.at_step, self.value = at_step, value

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.at_step:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.view(-1)[0] = self.value


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_weights_stop_the_run_and_keep_a_finite_checkpoint(value, small_corpus, tmp_path):
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "trainer.max_steps=20",
        "trainer.val_check_interval=20",
        "trainer.gradient_clip_val=0",  # clipping would spread a NaN; without it an inf stays an inf
        "checkpoint.every_n_steps=1",
        "+callbacks.poison._target_=test_reliability.PoisonGradient",
        "+callbacks.poison.at_step=6",
        f"+callbacks.poison.value={value}",
    )
    with pytest.raises(TrainingDiverged, match=r"weights are not finite at step 7.*last good checkpoint: .*last.ckpt"):
        train(cfg)
    kept = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert kept["global_step"] == 6
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values())


def test_a_nan_loss_stops_the_run_at_its_step(small_corpus, tmp_path):
    # a NaN in a weight read by every forward makes the next loss NaN: the run stops there,
    # before the optimizer spreads it, even where no checkpoint is due
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "trainer.max_steps=20",
        "trainer.val_check_interval=20",
        "checkpoint.every_n_steps=100",
        "+callbacks.poison._target_=test_reliability.PoisonGradient",
        "+callbacks.poison.at_step=4",
        "+callbacks.poison.value=nan",
    )
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 5.*last good checkpoint"):
        train(cfg)


class InflateLogits(L.Callback):
    """Multiplies the output layer by `factor` before step `at_step`: the logits grow so large that
    the loss jumps far above its start while staying finite."""

    def __init__(self, at_step: int, factor: float) -> None:
        self.at_step, self.factor = at_step, factor

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                pl_module.model.lm_head.weight.mul_(self.factor)


def test_a_finite_but_exploding_loss_is_warned_about_once(small_corpus, tmp_path, caplog):
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "trainer.max_steps=8",
        "trainer.val_check_interval=8",
        "+callbacks.inflate._target_=test_reliability.InflateLogits",
        "+callbacks.inflate.at_step=3",
        "+callbacks.inflate.factor=1000",
    )
    with caplog.at_level("WARNING", logger="minigpt"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("divergence at")]
    assert len(warnings) == 1 and "at step 3" in warnings[0] and "optim.lr" in warnings[0]


def test_a_normal_run_gives_no_divergence_warning(small_corpus, tmp_path, caplog):
    cfg = train_cfg(tmp_path, small_corpus, "trainer.max_steps=8", "trainer.val_check_interval=8")
    with caplog.at_level("WARNING", logger="minigpt"):
        train(cfg)
    assert not [r for r in caplog.records if r.getMessage().startswith("divergence at")]


def test_resume_refuses_a_crafted_pickle_without_running_code(small_corpus, tmp_path, evil_checkpoint):
    evil, marker = evil_checkpoint
    with pytest.raises(CheckpointError, match="refused because loading it could run code"):
        train(train_cfg(tmp_path / "run", small_corpus, f"ckpt_path={evil}"))
    with pytest.raises(CheckpointError, match="refused"):
        SafeCheckpointIO().load_checkpoint(evil)  # the path Lightning itself uses to resume
    assert not marker.exists()


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
def test_ddp_on_two_cpu_processes(small_corpus, tmp_path):
    """trainer=ddp: two gloo processes; rank 0 alone writes; validation counts every window once
    (equal to a single-process evaluation of the same weights); the checkpoint drives generate.py."""
    run_dir = tmp_path / "run"
    result = run_cli(
        str(ROOT / "train.py"),
        "trainer=ddp",
        "model=tiny",
        f"data.path={small_corpus}",
        *QUIET,
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "checkpoint.every_n_steps=3",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 1

    loaded = load_model(run_dir / "checkpoints" / "last.ckpt")
    dm = CharDataModule(block_size=loaded.model.config.block_size, path=str(small_corpus), vocab=loaded.tokenizer.chars)
    dm.setup()
    windows = FixedWindows(dm.val_data, dm.block_size)
    assert len(windows) % 2 == 1  # an odd count: a padding sampler would repeat one window
    x = torch.stack([windows[i][0] for i in range(len(windows))])
    y = torch.stack([windows[i][1] for i in range(len(windows))])
    with torch.no_grad():
        logits = loaded.model(x)
    single = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert summary["val_loss"] == pytest.approx(single, rel=1e-5)

    out = run_cli(str(ROOT / "generate.py"), f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "max_new_tokens=20")
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout) == 1 + 20 + 1  # "\n" prompt, 20 characters, final newline
