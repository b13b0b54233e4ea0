"""evaluate.py on a tiny trained checkpoint: the strided sweep scores every character once and
equals a direct computation; the command writes the tables as CSV and JSON."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_cli

from minigpt.checkpoint import load_model
from minigpt.data import FixedWindows
from minigpt.evaluate import GENERATION_COLUMNS, distinct_n, token_losses


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run["best_ckpt"])


@pytest.fixture(scope="module")
def ids(loaded, small_corpus):
    return torch.tensor(loaded.tokenizer.encode(small_corpus.read_text()[:2000]), dtype=torch.long)


def test_non_overlapping_sweep_equals_cross_entropy_over_fixed_windows(loaded, ids):
    T = loaded.model.config.block_size
    text = ids[: 20 * T + 1]
    windows = FixedWindows(text, T)  # what training's validation uses
    x, y = (torch.stack(t).long() for t in zip(*(windows[i] for i in range(len(windows)))))
    with torch.no_grad():
        direct = F.cross_entropy(loaded.model(x).transpose(1, 2), y, reduction="none")
    losses = token_losses(loaded.model, text, batch_size=7)  # batches that do not divide the windows
    assert losses.shape == (20 * T,)
    assert torch.allclose(losses, direct.flatten(), atol=1e-5)


def test_strided_sweep_scores_each_character_once_with_the_most_context(loaded, ids):
    T, stride = loaded.model.config.block_size, 8
    text = ids[:301]  # 300 predictions: the last window is shifted to end at the last character
    losses = token_losses(loaded.model, text, stride=stride)
    assert losses.shape == (300,) and torch.isfinite(losses).all()
    for target in (5, 100, 299, 300):
        start = max(0, math.ceil((target - T) / stride) * stride)  # earliest window holding it
        start = min(start, 300 - T)
        with torch.no_grad():
            logits = loaded.model(text[None, start : start + T])[0, target - start - 1]
        assert losses[target - 1] == pytest.approx(F.cross_entropy(logits, text[target]).item(), abs=1e-5)
    with pytest.raises(ValueError, match="stride"):
        token_losses(loaded.model, text, stride=T + 1)


def test_distinct_n_counts_unique_word_ngrams():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b", "c"], 2) == pytest.approx(2 / 3)
    assert distinct_n([""], 2) == 0.0


def test_evaluate_cli_prints_and_writes_the_tables(tiny_run, loaded, tmp_path):
    out = tmp_path / "eval"
    result = run_cli(
        str(ROOT / "evaluate.py"),
        f"ckpt={tiny_run['best_ckpt']}",
        f"out_dir={out}",
        "generation.prompts=3",
        "generation.prompt_chars=16",
        "generation.new_chars=24",
        "generation.strategies.beam.num_beams=2",
    )
    assert result.returncode == 0, result.stderr
    assert "| greedy |" in result.stdout and "| loss | ppl | bpc |" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    # the validation split of the training corpus: training's own val/loss, but for the last
    # (len - 1) % block_size characters that its non-overlapping windows leave out
    assert metrics["text"].startswith("validation split")
    assert metrics["loss"] == pytest.approx(loaded.meta["best_val_loss"], rel=0.02)
    assert metrics["ppl"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2))
    with open(out / "generation.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == GENERATION_COLUMNS
    assert [r["strategy"] for r in rows] == ["reference", "greedy", "temperature", "top_k", "top_p", "beam"]
    assert rows[0]["bleu"] == "" and rows[0]["chrf"] == ""
    for r in rows[1:]:
        assert 0 <= float(r["bleu"]) <= 100 and 0 <= float(r["chrf"]) <= 100
        assert 0 <= float(r["distinct_1"]) <= 1 and float(r["self_ppl"]) > 1
    assert max(float(r["chrf"]) for r in rows[1:]) > 0  # sampled text shares character n-grams
    ppl = {r["strategy"]: float(r["self_ppl"]) for r in rows}
    assert ppl["greedy"] < ppl["top_k"]  # greedy picks the most likely character every time
    assert "## beam" in (out / "samples.md").read_text()
