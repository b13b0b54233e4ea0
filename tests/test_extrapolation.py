"""Train short, test long: checkpoints scored at multiples of their training context, learned
positions refused with the model's reason, and the experiment's sweep through the script."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import CONF, ROOT, run_cli
from hydra import compose, initialize_config_dir

from minigpt.analysis.extrapolation import Extrapolation, checkpoints_of, markdown_table, measure, plot_loss_by_position
from minigpt.analysis.metrics import run
from minigpt.errors import ConfigError


def test_learned_positions_are_scored_at_1x_and_cannot_go_further(tiny_run):
    result = measure(tiny_run["last_ckpt"], (1, 2))
    assert result.name == "learned" and result.block_size == 32
    assert math.isfinite(result.losses[1]) and result.losses[2] is None
    assert len(result.curves[1]) == 32 and 2 not in result.curves
    assert "exceeds block_size=32, the rows of the learned position table" in result.reason
    table = markdown_table([result], (1, 2))
    assert table.splitlines()[:3] == [
        "| encoding | 1x (32) | 2x (64) |",
        "|---|---|---|",
        f"| learned | {result.losses[1]:.3f} | cannot |",
    ]
    assert table.splitlines()[-1] == f"learned: {result.reason}"


def test_the_figure_draws_each_encoding_at_its_longest_context_and_marks_the_training_length():
    results = [
        Extrapolation("learned", 4, {1: 2.0, 2: None}, {1: [3.0, 2.5, 2.2, 2.0]}, "cannot"),
        Extrapolation(
            "rope", 4, {1: 2.0, 2: 2.1}, {1: [3.0, 2.5, 2.2, 2.0], 2: [3.0, 2.5, 2.2, 2.0, 2.1, 2.2, 2.3, 2.4]}
        ),
    ]
    ax = plot_loss_by_position(results).axes[0]
    lengths = {line.get_label(): len(line.get_xdata()) for line in ax.get_lines()}
    assert lengths == {"learned (1x only: cannot go further)": 4, "rope (2x)": 8, "training length (4)": 2}
    assert ax.get_xlabel().startswith("position in the window") and ax.get_ylabel() == "mean loss (nats)"


def test_a_folder_without_checkpoints_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"holds no checkpoints/last.ckpt .*experiment=extrapolate"):
        checkpoints_of([tmp_path])


@pytest.mark.slow  # trains five tiny models and scores each three times (a minute on 2 cores)
def test_the_experiment_sweeps_the_five_encodings_and_the_script_tabulates_them(small_corpus, tmp_path):
    sweep, image = tmp_path / "sweep", tmp_path / "loss.png"
    trained = run_cli(
        str(ROOT / "train.py"),
        "experiment=extrapolate",
        f"data.path={small_corpus}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=20",
        f"hydra.sweep.dir={sweep}",
        OMP_NUM_THREADS="1",
    )
    assert trained.returncode == 0, trained.stderr
    assert [p.parents[1].name for p in checkpoints_of([sweep])] == ["0", "1", "2", "3", "4"]
    result = run_cli(str(ROOT / "scripts" / "extrapolate.py"), str(sweep), "--image", str(image))
    assert result.returncode == 0, result.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert [name for name in rows if name not in ("encoding", "---|---|---|---")] == [
        "learned",
        "sinusoidal",
        "rope",
        "alibi",
        "none",
    ]
    assert rows["learned"].endswith("| cannot | cannot |")
    for name in ("sinusoidal", "rope", "alibi", "none"):
        losses = [float(cell) for cell in rows[name].strip("| ").split(" | ")[1:]]
        assert len(losses) == 3 and all(math.isfinite(v) and 0 < v < 10 for v in losses)
    assert "learned: a sequence of 64 positions exceeds block_size=32" in result.stdout
    assert Path(image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # evaluate scores the rope job (2) in windows of 2x its context and writes the loss by position
    out = tmp_path / "eval"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(
            "evaluate",
            [f"ckpt={sweep / '2' / 'checkpoints' / 'last.ckpt'}", f"out_dir={out}", "context=64", "threads=1"]
            + ["generation.prompts=2", "generation.new_chars=80", "generation.strategies={greedy: {temperature: 0}}"],
        )
    metrics = run(cfg)
    assert metrics["context"] == 64 and metrics["block_size"] == 32 and metrics["stride"] == 64
    assert len(metrics["loss_by_position"]) == 64 and math.isfinite(metrics["loss"])
    assert json.loads((out / "metrics.json").read_text())["loss_by_position"] == metrics["loss_by_position"]
    # generate reads 64 characters with the alibi job (3): the cache follows the longer window
    alibi = sweep / "3" / "checkpoints" / "last.ckpt"
    generated = run_cli(str(ROOT / "generate.py"), f"ckpt={alibi}", "context=64", "max_new_tokens=100", "seed=1")
    assert generated.returncode == 0, generated.stderr
    assert "| block 32 | context 64 | alibi |" in generated.stderr and len(generated.stdout) > 100
