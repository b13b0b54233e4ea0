"""What every notebook of the learning path (notebooks/) shares: the clone's folders, seeding and
threads, plotting defaults, the corpus found the way every run finds it, composing `conf/`, the
small trained model of notebook 4, and `check`, which tells a learner whether an exercise is right.

A notebook starts with `from minigpt import notebook as nb` and `nb.setup()`; nothing here is
pasted into the notebooks. The exercises themselves (what each is compared with, on which random
inputs) are `minigpt.exercises`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import torch
from omegaconf import DictConfig

from minigpt.data.corpus import SHAKESPEARE_SHA256, SHAKESPEARE_URL, read_corpus, resolve_corpus

# the clone this package sits in (an editable install, as `make setup` makes): conf/, data/, outputs/
ROOT = Path(__file__).resolve().parents[1]

# the model every later notebook reads: notebook 4 trains it, 5 and diagnostics reuse its checkpoint
MINI_RUN = [
    "model=mini",
    "trainer.max_steps=500",
    "trainer.val_check_interval=100",
    "optim.lr=3e-3",  # three times the default rate, which suits a short run (docs/experiments.md)
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "sample.max_new_tokens=0",
]


def setup(seed: int = 0) -> None:
    """Seed torch, use one CPU thread unless OMP_NUM_THREADS says otherwise, and set plot defaults.

    The models here are tiny and one thread is enough; several threads wait on each other whenever
    other programs share the cores, which on a busy machine makes every cell several times slower.
    """
    if not (ROOT / "conf" / "train.yaml").is_file():
        raise RuntimeError(f"minigpt is imported from {ROOT}, which is not a clone: run `make setup` in one")
    torch.manual_seed(seed)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    # Lightning's progress bars look for Jupyter widgets, which these notebooks do not need
    warnings.filterwarnings("ignore", message="IProgress not found")
    # 100 dpi: a figure 8 inches wide fills the site's page at full size (minigpt.figures.PAGE_WIDTH)
    matplotlib.rcParams.update({"figure.dpi": 100})
    _inline_figures()


def _inline_figures() -> None:
    """In Jupyter, show figures below their cell: pyplot's and the `Figure`s that minigpt.figures
    returns to `display` (which, without the inline backend, would print only their repr)."""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to set up
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")


def corpus() -> Path:
    """Tiny Shakespeare as every run finds it: MINIGPT_SHAKESPEARE if set, else
    data/tinyshakespeare/input.txt in the clone, downloaded there once if it is missing."""
    return resolve_corpus(
        os.environ.get("MINIGPT_SHAKESPEARE"),
        "tinyshakespeare",
        str(ROOT / "data"),
        SHAKESPEARE_URL,
        SHAKESPEARE_SHA256,
    )


def shakespeare(n_chars: int | None = None) -> str:
    """The text of the corpus, or its first `n_chars` characters."""
    text = read_corpus(corpus())
    return text if n_chars is None else text[:n_chars]


def outputs(notebook: str) -> Path:
    """A new folder for what `notebook` writes: outputs/notebooks/<notebook>/<date>_<time>/
    (MINIGPT_OUTPUTS moves outputs/)."""
    base = Path(os.environ.get("MINIGPT_OUTPUTS", ROOT / "outputs"))
    return base / "notebooks" / notebook / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def compose_train(overrides: Iterable[str] = (), **kwargs: Any) -> DictConfig:
    """conf/train.yaml composed with `overrides`, as `python train.py <overrides>` would compose it,
    with the corpus cache at the clone's data/ (git-ignored): notebooks run in notebooks/, and the
    relative default would put a copy of the corpus there."""
    from hydra import compose, initialize_config_dir

    from minigpt.configs import register

    register()  # the typed schemas conf/ names (minigpt/configs.py); every tool registers them first
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=list(overrides), **kwargs)
    if "cache_dir" in cfg.get("data", {}):
        cfg.data.cache_dir = str(ROOT / "data")
    return cfg


def train_run(overrides: Iterable[str], notebook: str) -> dict:
    """Train through the project's own `train()` on Tiny Shakespeare into a new `outputs(notebook)`
    folder; returns train()'s summary (steps, best_val_loss, best_ckpt, run_dir)."""
    from minigpt.training.run import train

    cfg = compose_train(overrides)
    cfg.data.path = str(corpus())  # set on the config, so any character in the path is safe
    cfg.run_dir = str(outputs(notebook))
    return train(cfg)


def mini_checkpoint(notebook: str) -> Path:
    """The latest checkpoint notebook 4 trained, or, when there is none, the same model trained
    now into `notebook`'s outputs (about a minute on a laptop CPU)."""
    base = Path(os.environ.get("MINIGPT_OUTPUTS", ROOT / "outputs")) / "notebooks" / "04_training"
    earlier = sorted(base.glob("*/checkpoints/best.ckpt"))
    if earlier:
        return earlier[-1]
    return Path(train_run(MINI_RUN, notebook)["best_ckpt"])


def check(fn: Callable, name: str) -> bool:
    """Run the exercise `name` (minigpt.exercises.EXERCISES) on the learner's `fn` and print
    whether it agrees with minigpt's own code on random inputs; True when it does.

    An unfinished skeleton (NotImplementedError) prints "not done yet", so the notebook still runs
    top to bottom."""
    from minigpt.exercises import EXERCISES

    exercise = EXERCISES[name]
    try:
        problem = exercise.run(fn)
    except NotImplementedError:
        print(f"{name}: not done yet. Fill in `{name}` and run this cell again.")
        return False
    if problem is None:
        print(f"{name}: pass, it agrees with {exercise.reference_name} on {exercise.trials} random inputs")
        return True
    print(f"{name}: FAIL. {problem}\n  hint: {exercise.hint}")
    return False
