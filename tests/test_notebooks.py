"""The learning path in notebooks/: Jupytext percent-format .py files (the source), numbered in
order, each starting with the shared set-up and holding at least three exercises whose skeleton
says "not done yet" and whose solution in notebooks/solutions/ passes the same check a learner
runs (fast). Running every notebook top to bottom is `make docs` (the site executes them) and the
slow `notebooks`-marked test here, which `make test-all` runs and CI leaves to `make docs`."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch
from conftest import ROOT

from minigpt import notebook as nb
from minigpt.exercises import EXERCISES

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = ROOT / "notebooks"
PATH = (
    "01_attention",
    "02_multi_head_and_block",
    "03_position",
    "04_training",
    "05_generation",
    "06_experiments",
    "07_heads",
    "08_debugging",
)
ALL = (*PATH, "diagnostics")
NEEDS_CORPUS = {
    "02_multi_head_and_block",
    "04_training",
    "05_generation",
    "06_experiments",
    "07_heads",
    "08_debugging",
    "diagnostics",
}
# what a run of each notebook leaves under MINIGPT_OUTPUTS (a fresh folder: 05 trains its own model)
WRITES = {
    "04_training": "notebooks/04_training/*/checkpoints/best.ckpt",
    "05_generation": "notebooks/05_generation/*/checkpoints/best.ckpt",
    "06_experiments": "notebooks/06_experiments/*/report.csv",
    "07_heads": "notebooks/07_heads/*/checkpoints/best.ckpt",
}


def read(name: str):
    return jupytext.read(NOTEBOOKS / f"{name}.py")


def code_cells(name: str) -> list[str]:
    return [c.source for c in read(name).cells if c.cell_type == "code"]


def solutions(name: str):
    path = NOTEBOOKS / "solutions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_path_is_numbered_in_order_and_has_no_generated_copies():
    assert tuple(sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))) == PATH
    for number, name in enumerate(PATH, start=1):
        title = read(name).cells[0]
        assert title.cell_type == "markdown" and title.source.startswith(f"# {number}. "), title.source[:40]
    assert not (ROOT / "scripts" / "make_notebooks.py").exists()


@pytest.mark.parametrize("name", ALL)
def test_notebook_starts_with_the_shared_setup_and_has_three_exercises(name):
    cells = code_cells(name)
    assert any("from minigpt import notebook as nb" in c and "nb.setup()" in c for c in cells[:2])
    checked = re.findall(r'^nb\.check\((\w+), "(\w+)"\)$', "\n".join(cells), re.MULTILINE)
    assert all(fn == key for fn, key in checked), "a check cell runs the exercise named like its function"
    mine = sorted(key for key, exercise in EXERCISES.items() if exercise.notebook == name)
    assert sorted(key for _, key in checked) == mine and len(mine) >= 3
    for key in mine:  # each skeleton is left for the learner to fill in
        skeleton = next(c for c in cells if c.startswith(f"def {key}("))
        assert skeleton.rstrip().endswith("raise NotImplementedError")


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_solution_passes_its_check(key):
    exercise = EXERCISES[key]
    assert exercise.run(getattr(solutions(exercise.notebook), key)) is None


@pytest.mark.parametrize("name", ALL)
def test_unfinished_skeletons_say_not_done_yet(name, capsys):
    for key in (k for k, e in EXERCISES.items() if e.notebook == name):
        skeleton = next(c for c in code_cells(name) if c.startswith(f"def {key}("))
        scope: dict = {}
        exec(skeleton, scope)  # the cell exactly as the learner finds it
        assert nb.check(scope[key], key) is False
        assert capsys.readouterr().out.startswith(f"{key}: not done yet")


def _causal(x, attn):
    return attn(x)[0]


def _unscaled_weights(x, attn):
    q, k, _ = attn.c_attn(x).split(x.size(-1), dim=-1)
    future = torch.ones(x.size(1), x.size(1), dtype=torch.bool).triu(1)
    return (q @ k.transpose(-2, -1)).masked_fill(future, float("-inf")).softmax(-1)[:, None]


WRONG = {  # a plausible mistake for some exercises: the check must fail it and print the hint
    "attend_everywhere": _causal,  # the mask left in
    "head_weights": _unscaled_weights,  # the 1/sqrt(hs) forgotten
    "block_by_hand": lambda x, block: block.mlp(block.ln_2(x + block.attn(block.ln_1(x))[0])),  # no 2nd residual
    "context_starts": lambda prompt_len, n_new, block_size, keep: [  # nanoGPT's sliding window
        max(0, prompt_len + i - block_size) for i in range(n_new)
    ],
    "swept_keys_by_hand": lambda jobs: sorted({k for job in jobs for k in job["overrides"]}),
}


@pytest.mark.parametrize("key", sorted(WRONG))
def test_check_fails_a_wrong_answer_with_a_hint(key, capsys):
    assert nb.check(WRONG[key], key) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{key}: FAIL. trial") and EXERCISES[key].hint in out


@pytest.mark.slow  # 10 s to about 2 minutes each on 2 CPU cores (notebooks/README.md); CI: `make docs`
@pytest.mark.notebooks
@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch, request):
    nbclient = pytest.importorskip("nbclient")
    if name in NEEDS_CORPUS:  # the shared copy of Tiny Shakespeare, or a skip with the reason
        monkeypatch.setenv("MINIGPT_SHAKESPEARE", str(request.getfixturevalue("shakespeare")))
    monkeypatch.setenv("MINIGPT_OUTPUTS", str(tmp_path))
    notebook = read(name)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # every notebook draws
    printed = "".join(o.get("text", "") for o in outputs)
    assert printed.count(": not done yet.") == sum(e.notebook == name for e in EXERCISES.values())
    if name in WRITES:
        assert list(tmp_path.glob(WRITES[name])), f"nothing matches {WRITES[name]} under MINIGPT_OUTPUTS"
