"""Shared fixtures: the suite's own small corpus (tests/play.py), the real one for the slow tests
(seeded from ../shared or data/), composed configs, a tiny trained checkpoint. Tests train real
tiny models on real-looking text; nothing is mocked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from play import write_play

from minigpt.configs import register

register()  # the typed schemas (minigpt/configs.py) the conf/ files name in their defaults

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
CORPUS_CANDIDATES = (
    ROOT / "data" / "tinyshakespeare" / "input.txt",
    ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt",
)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (pytest-xdist): each worker, and the
    # train.py/generate.py processes it starts, then use one thread instead of fighting over all.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def find_corpus() -> Path | None:
    env = os.environ.get("MINIGPT_SHAKESPEARE")
    for path in ([Path(env)] if env else []) + list(CORPUS_CANDIDATES):
        if path.is_file():
            return path
    return None


@pytest.fixture
def shakespeare(request) -> Path:
    """The real Tiny Shakespeare file, for the slow tests that are about it (its size, its hash,
    the default run's figures). A default test asking for it fails: the default suite runs with no
    download and no corpus on disk, on `small_corpus`. Missing, it skips, and fails under CI
    (`CI=true`), whose machines are seeded with the corpus (.ci/run)."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.name} is a default test: use small_corpus, or mark it @pytest.mark.slow")
    path = find_corpus()
    if path is None:
        missing_corpus()
    return path


def missing_corpus() -> None:
    """Skip a test that needs Tiny Shakespeare when it is absent; fail it under CI (`CI=true`)."""
    reason = "Tiny Shakespeare not found: run `make train` once or set MINIGPT_SHAKESPEARE"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must seed it: .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A small real-looking corpus the suite writes itself (tests/play.py: 30,000 characters of a
    play with speaker headings and verse): no download, no file on disk needed."""
    return write_play(tmp_path_factory.mktemp("corpus") / "small.txt")


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=list(overrides))


QUIET = (
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "sample.max_new_tokens=0",
)


def train_cfg(run_dir: Path, corpus: Path, *overrides: str) -> DictConfig:
    """A training config writing into `run_dir`, on `corpus`, quiet, with `overrides` applied."""
    cfg = compose_train("model=tiny", f"data.path={corpus}", *QUIET, *overrides)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    return cfg


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run an entry point (`train.py`, `generate.py`) in a fresh interpreter."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **env}
    full_env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def load_script(name: str):
    """scripts/<name>.py imported as the module `name` (registered, so its dataclasses resolve)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_run(small_corpus: Path, tmp_path_factory) -> dict:
    """One real training run of the tiny model (a few seconds), shared by the tests that need
    a checkpoint."""
    from minigpt.training.run import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    cfg = train_cfg(
        run_dir, small_corpus, "trainer.max_steps=60", "trainer.val_check_interval=30", "sample.max_new_tokens=50"
    )
    return train(cfg)


@pytest.fixture(scope="session")
def labelled_file(small_corpus: Path, tmp_path_factory) -> Path:
    """A learnable labelled set (label<TAB>text) from the small corpus's lines: speaker headings
    such as `ROMEO:` labelled `name`, and as many lines of verse, evenly spaced, labelled `verse`."""
    lines = [line for line in small_corpus.read_text().splitlines() if line.strip()]
    names = [line for line in lines if line.endswith(":") and line[:-1].replace(" ", "").isalpha()]
    verse = [line for line in lines if line not in set(names)]
    verse = verse[:: len(verse) // len(names)][: len(names)]
    path = tmp_path_factory.mktemp("labelled") / "headings.tsv"
    path.write_text("".join(f"name\t{line}\n" for line in names) + "".join(f"verse\t{line}\n" for line in verse))
    return path


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A .ckpt whose unpickling would run `touch <marker>`: (checkpoint, marker)."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, evil, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    return evil, marker
