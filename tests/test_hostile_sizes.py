"""Every size bounded by an estimate made before the work: the memory estimates see the process's
own limits (`ulimit -v`, a cgroup), a prompt file is read only as far as the model can use it, a
long text for diagnose is cut to what its figures can show, and an allocation that fails anyway
is one line, never a traceback."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from omegaconf import OmegaConf

from minigpt.analysis.diagnose import TEXT_CHARS, diagnose
from minigpt.checkpoint import weights
from minigpt.checkpoint.load import load_model
from minigpt.cli import user_errors
from minigpt.errors import ConfigError
from minigpt.inference.generation import check_decoding_memory, encode_prompt, prompt_bytes, read_prompt

GB = 10**9


@contextlib.contextmanager
def address_space_limit(room: int):
    """`ulimit -v` for this process: its current size plus `room` bytes, restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status").read_text().splitlines()
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + room, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_the_memory_estimates_see_the_address_space_limit():
    with address_space_limit(2 * GB):
        room = weights.available_memory()
    assert 1.5 * GB < room <= 2 * GB  # what is left of the limit, not the machine's free memory


@pytest.mark.parametrize(("limit", "usage", "room"), [("3000000000\n", "1000000000\n", 2 * GB), ("max\n", "5\n", None)])
def test_the_memory_estimates_see_a_cgroup_limit(tmp_path, monkeypatch, limit, usage, room):
    (tmp_path / "limit").write_text(limit)
    (tmp_path / "usage").write_text(usage)
    monkeypatch.setattr(weights, "CGROUP_FILES", ((str(tmp_path / "limit"), str(tmp_path / "usage")),))
    assert weights._cgroup_room() == room
    if room is not None:
        assert weights.available_memory() <= room


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run["last_ckpt"])


def test_a_million_samples_under_ulimit_are_refused_before_decoding(loaded):
    cfg = OmegaConf.create({"num_beams": 1, "num_samples": 1_000_000, "max_new_tokens": 20, "use_cache": True})
    ids = encode_prompt(loaded, "ROMEO:", "error", torch.device("cpu"))
    with address_space_limit(4 * GB), pytest.raises(ConfigError, match=r"^decoding num_samples=1000000 sequences"):
        check_decoding_memory(
            loaded.model.config,
            cfg.num_samples,
            (ids.size(1), cfg.max_new_tokens),
            torch.device("cpu"),
            f"decoding num_samples={cfg.num_samples} sequences",
            "lower num_samples or max_new_tokens",
        )


def test_a_huge_prompt_file_is_read_only_as_far_as_the_model_sees(tmp_path, capsys):
    path = tmp_path / "prompt.txt"
    with path.open("w") as f:  # 20 MB, ending in a known line; é makes the cut land inside a character
        for _ in range(20 * 1024):
            f.write("é" * 511 + "\n")
        f.write("THE END")
    prompt = read_prompt(OmegaConf.create({"prompt_file": str(path)}), block_size=32)
    assert prompt.endswith("é\nTHE END") and len(prompt.encode()) <= prompt_bytes(32)
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and f"holds {path.stat().st_size:,} bytes; the model sees only the last 32 tokens" in err
    )


@pytest.mark.slow  # draws every figure
def test_diagnose_cuts_a_long_text_to_what_its_figures_show(loaded, tmp_path, capsys):
    text = "ROMEO: a rose by any other name\n" * 200  # 6,400 characters
    index = diagnose(loaded, text, tmp_path / "out", temperatures=(), max_new_tokens=0)
    assert f"text ({TEXT_CHARS} characters;" in index.read_text()
    assert capsys.readouterr().err.startswith("note: the text has 6,400 characters; diagnose looks at its first 2,048")


def test_an_allocation_that_fails_anyway_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_, user_errors():
        torch.empty(2**60, dtype=torch.uint8)  # torch's CPU allocator refuses: a RuntimeError
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (") and err.count("\n") == 1
    with pytest.raises(SystemExit), user_errors():
        raise MemoryError
    assert capsys.readouterr().err.startswith("error: out of memory (MemoryError)")
    with pytest.raises(RuntimeError, match="a bug"), user_errors():
        raise RuntimeError("a bug")  # not an allocation: keeps its traceback


@pytest.mark.slow
def test_generate_under_ulimit_refuses_a_million_samples_in_one_line(tiny_run):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 * GB, resource.RLIM_INFINITY))

    args = ["generate.py", f"ckpt={tiny_run['last_ckpt']}", "num_samples=1000000", "max_new_tokens=20"]
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limit
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: decoding num_samples=1000000 sequences at once")
    assert "Traceback" not in result.stderr and Path(ROOT).is_dir()
