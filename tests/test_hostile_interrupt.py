"""One Ctrl-C stops a sweep: the running job saves and stops, no later job starts, and the sweep
ends with one line saying which jobs ended and how many were not run (exit code 130). A Ctrl-C at
any other moment of a command is one line too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from minigpt import sweep as sweeps


def start(*args: str) -> subprocess.Popen:
    """The command in a fresh interpreter that takes Ctrl-C as a terminal's user would send it: a
    test runner started in the background (nohup, `cmd &` in a script) ignores SIGINT, and a child
    inherits that, so Python would never raise KeyboardInterrupt in it."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 (no threads here)
    )


def read_until(process: subprocess.Popen, marker: str, timeout: float = 300) -> list[str]:
    """The lines `process` writes up to and including the first one holding `marker`."""
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    process.kill()
    raise AssertionError(f"{marker!r} never came:\n{''.join(lines)}")


@pytest.mark.slow
def test_one_ctrl_c_stops_a_sweep_after_the_running_job_saved(tmp_path, small_corpus):
    sweep = tmp_path / "sweep"
    process = start(
        "train.py",
        "-m",
        "model=tiny",
        f"data.path={small_corpus}",
        "seed=1,2,3",
        "trainer.max_steps=5000",
        "trainer.val_check_interval=2",
        "data.val_windows=1",
        "trainer.enable_progress_bar=false",
        "sample.max_new_tokens=0",
        f"hydra.sweep.dir={sweep}",
    )
    read_until(process, "step 2 |")  # job 0 is training
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=300)
    assert process.returncode == 130, rest
    errors = [line for line in rest.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert errors == [
        "error: interrupted: the sweep stopped (ended: job 0 (seed=1) stopped by SIGINT and saved; not run: 2 job(s))"
    ], rest
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    assert not (sweep / "1").exists() and not (sweep / "2").exists()


def test_the_ctrl_c_line_names_the_jobs_that_ended_and_those_not_run(monkeypatch):
    monkeypatch.setattr(sweeps, "SWEEP", sweeps.SweepProgress())
    assert sweeps.interrupted() == "interrupted"  # not a sweep
    monkeypatch.setattr(
        sweeps, "SWEEP", sweeps.SweepProgress(jobs=4, ended=["job 0 (seed=1)"], running="job 1 (seed=2)")
    )
    assert sweeps.interrupted() == (
        "interrupted: the sweep stopped (ended: job 0 (seed=1); interrupted before it could save: job 1 (seed=2); "
        "not run: 2 job(s))"
    )


@pytest.mark.slow
def test_a_ctrl_c_while_hydra_composes_a_large_sweep_is_one_line(tmp_path):
    process = start(
        "train.py", "-m", "model=tiny", "seed=range(0,200000)", "model.n_layer=1,2", f"hydra.sweep.dir={tmp_path}"
    )
    end = time.monotonic() + 300
    while not (tmp_path / "multirun.yaml").exists() and time.monotonic() < end and process.poll() is None:
        time.sleep(0.2)  # Hydra writes it, then composes each of the 400,000 jobs to check them
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130, out
    assert out == "error: interrupted: the sweep stopped (no job ended; not run: 400000 job(s))\n"
