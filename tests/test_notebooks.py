"""The learning path in notebooks/ (01_attention ... 06_experiments): stored without outputs, valid,
numbered in order, ending with exercises, and exactly what scripts/make_notebooks.py writes (fast);
each one runs top to bottom in a fresh kernel started in notebooks/, as a learner opens it (slow,
`make test-slow`), so a change to the package that breaks a notebook fails CI."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import ROOT

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = ROOT / "notebooks"
PATH = ("01_attention", "02_multi_head_and_block", "03_position", "04_training", "05_generation", "06_experiments")
NEEDS_CORPUS = {"02_multi_head_and_block", "04_training", "05_generation", "06_experiments"}
# what a run of each notebook leaves under MINIGPT_OUTPUTS (a fresh folder: 05 trains its own model)
WRITES = {
    "04_training": "notebooks/04_training/*/checkpoints/best.ckpt",
    "05_generation": "notebooks/05_generation/*/checkpoints/best.ckpt",
    "06_experiments": "notebooks/06_experiments/*/report.csv",
}


def read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_the_path_is_numbered_in_order():
    assert tuple(sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))) == PATH
    for number, name in enumerate(PATH, start=1):
        assert name.startswith(f"{number:02d}_")
        title = read(name).cells[0]
        assert title.cell_type == "markdown" and title.source.startswith(f"# {number}. "), title.source[:40]


@pytest.mark.parametrize("name", PATH)
def test_notebook_is_valid_stored_without_outputs_and_ends_with_exercises(name):
    nb = read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "strip the outputs"
    assert "sys.path.insert(0, str(ROOT))" in code[0].source  # the set-up cell comes first
    exercises = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").split("## Exercises")
    assert len(exercises) == 2, "one Exercises section, at the end"
    solutions = exercises[1].count("<details>")
    assert 2 <= solutions <= 3 and exercises[1].count("</details>") == solutions


def test_notebooks_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert tuple(generator.NOTEBOOKS) == PATH
    assert generator.stale() == [], "edit scripts/make_notebooks.py, then run it to rewrite the notebooks"


@pytest.mark.slow  # 10 s to about 2 minutes each on 2 CPU cores (notebooks/README.md)
@pytest.mark.parametrize("name", PATH)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch, request):
    nbclient = pytest.importorskip("nbclient")
    if name in NEEDS_CORPUS:  # the shared copy of Tiny Shakespeare, or a skip with the reason
        monkeypatch.setenv("MINIGPT_SHAKESPEARE", str(request.getfixturevalue("shakespeare")))
    monkeypatch.setenv("MINIGPT_OUTPUTS", str(tmp_path))
    nb = read(name)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # every notebook draws
    if name in WRITES:
        assert list(tmp_path.glob(WRITES[name])), f"nothing matches {WRITES[name]} under MINIGPT_OUTPUTS"
