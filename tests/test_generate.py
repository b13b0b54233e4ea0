"""generate.py from the command line: every strategy runs, bad input gets one clear line."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli


def gen(tiny_run, *args, **kw):
    return run_cli(str(ROOT / "generate.py"), f"ckpt={tiny_run['last_ckpt']}", *args, **kw)


@pytest.mark.slow  # a fresh interpreter per strategy: CI runs them (make test-slow)
@pytest.mark.parametrize(
    "args",
    [
        ["temperature=0"],
        ["top_k=5", "seed=1"],
        ["top_p=0.9", "seed=1"],
        ["min_p=0.1", "seed=1"],
        ["typical_p=0.9", "seed=1"],
        ["repetition_penalty=1.3", "seed=1"],
        ["num_beams=3", "num_samples=2"],
        ["num_samples=3", "seed=2"],
        ["use_cache=false", "seed=1"],
    ],
)
def test_every_strategy_runs_from_the_command_line(tiny_run, args):
    result = gen(tiny_run, "prompt=ROMEO:", "max_new_tokens=30", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ROMEO:") == max([2 if "num_samples=2" in args else 3 if "num_samples=3" in args else 1])


def test_same_seed_same_text_and_stop_strings(tiny_run, tmp_path):
    a = gen(tiny_run, "max_new_tokens=80", "seed=5").stdout
    b = gen(tiny_run, "max_new_tokens=80", "seed=5").stdout
    assert a == b
    stopped = gen(tiny_run, "max_new_tokens=300", "seed=5", "prompt=A", "stop=[e]").stdout
    assert stopped.endswith("e\n") and stopped.count("e") == 1
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("First Citizen:\n")
    out = gen(tiny_run, f"prompt_file={prompt_file}", "max_new_tokens=5", "temperature=0").stdout
    assert out.startswith("First Citizen:\n")


def gen_interactive(tiny_run, *args, **run_kw) -> subprocess.CompletedProcess:
    """generate.py interactive=true, its stdin given by `input` (a pipe) or `stdin` (e.g. a terminal)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, str(ROOT / "generate.py"), f"ckpt={tiny_run['last_ckpt']}", "interactive=true", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, **run_kw)


def test_interactive_mode_reads_prompts_until_an_empty_line(tiny_run):
    result = gen_interactive(tiny_run, "max_new_tokens=10", "temperature=0", input="ROMEO:\nJULIET:\n\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ROMEO:") == 1 and result.stdout.count("JULIET:") == 1
    assert "> " not in result.stdout  # piped: stdout holds only the text


@pytest.mark.slow  # three fresh interpreters, ~7 s: CI runs it (make test-slow)
def test_interactive_mode_seeds_each_prompt_with_seed_plus_its_index(tiny_run):
    args = ("max_new_tokens=40", "temperature=1.0")
    result = gen_interactive(tiny_run, *args, "seed=1", input="ROMEO:\nROMEO:\n\n")
    assert result.returncode == 0, result.stderr
    first = gen(tiny_run, *args, "seed=1", "prompt=ROMEO:").stdout
    second = gen(tiny_run, *args, "seed=2", "prompt=ROMEO:").stdout
    assert first != second  # the same prompt twice gets two different samples...
    assert result.stdout == first + second  # ...each the one that prompt=... with its seed gives


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_interactive_mode_asks_for_each_prompt_at_a_terminal(tiny_run):
    import pty

    leader, follower = pty.openpty()
    os.write(leader, b"ROMEO:\n\n")  # the terminal holds the typed lines until they are read
    try:
        result = gen_interactive(tiny_run, "max_new_tokens=10", "temperature=0", stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("> ") == 2  # before ROMEO: and before the empty line that ends it
    assert result.stdout.startswith("ROMEO:") and "> " not in result.stdout


def test_help_lists_generates_options_not_trainings_config_groups():
    result = run_cli(str(ROOT / "generate.py"), "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["temperature", "0.8"] for line in lines if line.strip())
    assert any(line.split()[:3] == ["interactive", "false", "true"] for line in lines if line.strip())
    assert "optim" not in result.stdout and "scheduler" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prompt='ROMEO:é€'"], "2 character(s) outside the model's vocabulary: 'é' '€'"),
        (["top_p=1.5"], "top_p must be a number in (0, 1] (or null), got 1.5; null = off"),
        (["top_p=0"], "top_p must be a number in (0, 1] (or null), got 0.0; null = off"),
        (["temperature=-0.5"], "temperature must be a number >= 0, got -0.5; 0 = greedy"),
        (["max_new_tokens=-3"], "max_new_tokens must be an integer >= 0"),
        (["seed=abc"], "seed must be an integer from 0 to 4294967295 (or null), got 'abc'"),
        (["use_cache=maybe"], "use_cache must be true or false, got 'maybe'"),
        (["context=64"], "a sequence of 64 positions exceeds block_size=32, the rows of the learned position table"),
        (["context=0"], "context must be an integer >= 1 (or null), got 0; null = block_size"),
        (["num_beams=2", "length_penalty=abc"], "length_penalty must be a number"),
        (["num_beams=3", "top_p=0.9"], "num_beams=3 is beam search, which does not sample, so top_p would be ignored"),
        (["num_beams=2", "num_samples=3"], "num_samples=3 > num_beams=2"),
        (["prompt_file=/"], "prompt_file / is a directory; pass a UTF-8 text file or prompt=..."),
        (["device=cuda:7"] if not torch.cuda.is_available() else ["device=nope"], "device"),
    ],
)
def test_bad_generation_input_prints_one_clear_line(tiny_run, args, message):
    result = gen(tiny_run, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_checkpoints_print_one_clear_line(tmp_path, tiny_run):
    not_ckpt = tmp_path / "notes.txt"
    not_ckpt.write_text("hello")
    truncated = tmp_path / "truncated.ckpt"
    data = Path(tiny_run["last_ckpt"]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    labelled = tmp_path / "labels.tsv"  # text whose bytes once read as pickle opcodes
    labelled.write_text("name\tROMEO:\nverse\tO, she doth teach the torches to burn bright!\n")
    exported = tmp_path / "model.pt2"  # a zip archive, but not one torch.save wrote
    with zipfile.ZipFile(exported, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
    cases = [
        ([], "ckpt is required"),
        ([f"ckpt={labelled}"], "is corrupt or truncated, or not a checkpoint at all"),
        ([f"ckpt={exported}"], "is a zip archive but not a PyTorch checkpoint"),
        ([f"ckpt={tmp_path / 'missing.ckpt'}"], "does not exist"),
        ([f"ckpt={not_ckpt}"], "is corrupt or truncated"),
        ([f"ckpt={truncated}"], "is corrupt or truncated"),
        ([f"ckpt={tmp_path}"], "is a directory"),
    ]
    for args, message in cases:
        result = run_cli(str(ROOT / "generate.py"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert Path(tiny_run["last_ckpt"]).read_bytes() == data  # nothing touched the original


def test_crafted_pickle_checkpoint_is_refused_without_running_code(evil_checkpoint):
    evil, marker = evil_checkpoint
    result = run_cli(str(ROOT / "generate.py"), f"ckpt={evil}")
    assert result.returncode == 2
    assert "refused because loading it could run code" in result.stderr
    assert not marker.exists()
