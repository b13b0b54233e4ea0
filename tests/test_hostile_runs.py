"""Runs and commands under hostile conditions: one training run per run directory (a second one
is refused naming the process that holds it; a crashed holder is never in the way; a checkpoint
write cut short leaves nothing behind once the run resumes), valid inputs that used to crash (an
LSTM checkpoint for diagnose and generate, a sweep with an unreadable job for report), and a
command-line argument Hydra cannot read is one line."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, run_cli, train_cfg
from hydra import compose, initialize_config_dir

from minigpt.analysis import diagnose
from minigpt.analysis.report import report
from minigpt.checkpoint.load import load_model
from minigpt.cli import check_overrides
from minigpt.errors import RunDirError, VocabularyError
from minigpt.inference import generation
from minigpt.lstm import LSTMLM, LSTMConfig
from minigpt.training import lock
from minigpt.training.run import train


def hold_elsewhere(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run directory's lock as a training run does (flock, its PID
    in the file), until it is killed."""
    code = (
        "import fcntl, os, socket, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'process {os.getpid()} on {socket.gethostname()}'.encode())\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir / lock.LOCK_FILE)], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"
    return holder


def test_a_second_run_in_a_held_directory_names_the_holder_and_a_crashed_holder_is_not_in_the_way(
    tmp_path, small_corpus
):
    holder = hold_elsewhere(tmp_path)
    try:
        message = rf"run directory {tmp_path} is in use by another training run \(process {holder.pid} on .+\); wait"
        with pytest.raises(RunDirError, match=message):
            train(train_cfg(tmp_path, small_corpus, "resume=auto"))
        assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "tensorboard").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its flock, the file stays
        holder.wait()
    assert (tmp_path / lock.LOCK_FILE).read_text().startswith(f"process {holder.pid} ")
    lock.lock_run_dir(tmp_path)  # the stale file is no obstacle
    try:
        assert (tmp_path / lock.LOCK_FILE).read_text().startswith(f"process {os.getpid()} ")
    finally:
        lock.release_run_dirs()


def test_the_lock_is_released_when_train_raises(tmp_path, small_corpus):
    """Refused after the run directory was locked (the sample prompt is checked once the corpus
    is read): the process lets go, so it, or another, can train there next."""
    with pytest.raises(VocabularyError):
        train(train_cfg(tmp_path, small_corpus, "sample.prompt='Roméo'", "sample.max_new_tokens=5"))
    assert (tmp_path / lock.LOCK_FILE).is_file() and not lock._held
    fd = os.open(tmp_path / lock.LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise BlockingIOError if still held
    finally:
        os.close(fd)


def test_resuming_removes_what_a_killed_checkpoint_write_left(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "last.ckpt").write_bytes(b"kept")
    (ckpts / ".last.ckpt.k2j4h1x0.tmp").write_bytes(b"half a checkpoint")  # atomic_write's temporary name
    (ckpts / ".best.ckpt.8d7s6a5q.tmp").write_bytes(b"")
    lock.lock_run_dir(tmp_path)
    try:
        assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]
    finally:
        lock.release_run_dirs()


# --------------------------------------------------------------------------- an LSTM checkpoint


@pytest.fixture(scope="module")
def lstm_ckpt(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's checkpoint turned into an LSTM's (same vocabulary, untrained weights)."""
    ckpt = torch.load(tiny_run["last_ckpt"], weights_only=True)
    options = {"vocab_size": len(ckpt["minigpt"]["vocab"]), "block_size": 32, "n_layer": 1, "n_embd": 16}
    ckpt["minigpt"]["model_config"] = {"arch": "lstm", **LSTMConfig(**options).to_dict()}
    ckpt["state_dict"] = {f"model.{k}": v for k, v in LSTMLM(LSTMConfig(**options)).state_dict().items()}
    path = tmp_path_factory.mktemp("lstm") / "lstm.ckpt"
    torch.save(ckpt, path)
    return path


def compose_tool(tool: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(tool, overrides=list(overrides))


def test_diagnose_draws_what_an_lstm_has_and_says_what_it_skips(lstm_ckpt, tmp_path, capsys):
    out = tmp_path / "diag"
    index = diagnose.run(
        compose_tool("diagnose", f"ckpt={lstm_ckpt}", f"out_dir={out}", "max_new_tokens=5", "temperatures=[0.5]")
    )
    assert {p.name for p in out.iterdir()} == {"embedding_pca.png", "logits.png", "char_loss.png", "index.md"}
    (note,) = capsys.readouterr().err.strip().splitlines()
    assert note.startswith("note: LSTMLM checkpoint: a recurrent model has no attention and no residual stream")
    text = index.read_text()
    assert "attention and residual_norm figures are skipped" in text and "### temperature 0.5" in text


def test_generate_continues_an_lstm_checkpoint(lstm_ckpt, capsys):
    generation.run(compose_tool("generate", f"ckpt={lstm_ckpt}", "max_new_tokens=5", "seed=0", "device=cpu"))
    header, speed = capsys.readouterr().err.strip().splitlines()  # the text went to stdout
    n = load_model(lstm_ckpt).model.num_params()  # the corpus's vocabulary sets the count
    assert header.endswith(f"| {n:,} parameters | block 32 | lstm | device cpu | 1 thread")
    assert speed.startswith("[minigpt] 5 tokens")


# --------------------------------------------------------------------------- report


def test_report_lists_unreadable_jobs_and_goes_on(tmp_path, capsys):
    jobs = {
        "0": ("- model.n_layer=1\n", {"best_val_loss": 2.0, "steps": 10, "parameters": 900, "train_seconds": 1.0}),
        "1": ("- a: [\n", {"best_val_loss": 1.9}),  # malformed YAML
        "2": ("key: value\n", {"best_val_loss": 1.9}),  # YAML, but not a list of overrides
        "3": ("- model.n_layer=3\n", {"best_val_loss": "low", "steps": 10}),  # a loss that is no number
        "4": ("- model.n_layer=4\n", {"best_val_loss": 1.8, "steps": 10, "parameters": "many"}),
    }
    for name, (overrides, summary) in jobs.items():
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(overrides)
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    result = report(tmp_path)
    statuses = {job["job"]: job["status"] for job in result["jobs"]}
    assert statuses == {"0": "ok", "1": "unreadable", "2": "unreadable", "3": "unreadable", "4": "unreadable"}
    printed = capsys.readouterr().out
    assert "note: job 1 is unreadable: .hydra/overrides.yaml is not valid YAML" in printed
    assert "note: job 2 is unreadable: .hydra/overrides.yaml is not a list of key=value overrides" in printed
    assert "note: job 3 is unreadable: summary.json: best_val_loss is 'low', not a usable number" in printed
    assert "note: job 4 is unreadable: summary.json: parameters is 'many'" in printed
    assert len((tmp_path / "report.csv").read_text().splitlines()) == 1 + 5


def test_report_does_not_open_a_fifo_among_the_event_files(tmp_path, capsys):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / "tensorboard").mkdir()
    os.mkfifo(tmp_path / "0" / "tensorboard" / "events.out.tfevents.1.host")
    (job,) = report(tmp_path)["jobs"]
    assert job["status"] == "unreadable" and "events.out.tfevents.1.host is a pipe" in job["problem"]


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("prompt=a'b", 'Hydra cannot read the argument "prompt=a\'b" at "\'" (character 9): outside quotes'),
        ("prompt=a\x01b", "Hydra cannot read the argument 'prompt=a\\x01b' at '\\x01' (character 9)"),
        ("prompt=Roméo", "Hydra cannot read the argument 'prompt=Roméo' at 'é' (character 11)"),
        ("prompt=[a", "Hydra cannot read the argument 'prompt=[a' (no viable alternative at input '[a')"),
    ],
)
def test_an_argument_hydra_cannot_read_is_one_line(argument, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_overrides(["ckpt=x.ckpt", "--cfg", "job", argument])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {message}") and line.endswith("or pass the text in a file")
    check_overrides(["ckpt=x.ckpt", "-m", "prompt='Roméo'", 'stop=["\\n"]', "model.n_layer=1,2"])  # all readable


def test_python_m_minigpt_checks_the_command_line_first():
    result = run_cli("-m", "minigpt", "generate", "ckpt=x.ckpt", "prompt=it's")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: Hydra cannot read the argument "prompt=it\'s" at "\'" (character 10): outside quotes, a value may '
        "not hold a quote, a control or a non-ASCII character; quote the value, as 'prompt=\"...\"', or pass the "
        "text in a file"
    ]
