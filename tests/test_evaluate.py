"""evaluate.py on a tiny trained checkpoint: the strided sweep scores every character once and
equals a direct computation; the command writes the tables as CSV and JSON, a figure of them,
and samples.md with each prompt before its continuations."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF, ROOT, run_cli, train_cfg
from hydra import compose, initialize_config_dir

from minigpt.analysis.metrics import (
    GENERATION_COLUMNS,
    distinct_n,
    evaluation_ids,
    loss_by_position,
    plot_generation,
    run,
    samples_markdown,
    token_losses,
)
from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import FixedWindows
from minigpt.errors import ConfigError, DataError
from minigpt.io import markdown_code
from minigpt.model import GPT, GPTConfig


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


@pytest.mark.parametrize("pos", ["sinusoidal", "rope", "alibi", "none"])
def test_encodings_that_compute_positions_are_scored_past_their_training_length(pos, ids):
    """Windows of 4x block_size: a loss for every character, and loss by position whose mean is
    the sweep's loss when the windows tile the text."""
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=int(ids.max()) + 1, block_size=16, n_layer=1, n_head=2, n_embd=16, pos_encoding=pos)
    )
    text = ids[: 10 * 64 + 1]
    losses = token_losses(model, text, context=64, batch_size=3)
    assert losses.shape == (640,) and torch.isfinite(losses).all()
    curve = loss_by_position(model, text, context=64, batch_size=3)
    assert curve.shape == (64,) and torch.isfinite(curve).all()
    assert float(curve.mean()) == pytest.approx(float(losses.mean()), abs=1e-5)
    assert torch.allclose(losses.view(10, 64).mean(0), curve, atol=1e-5)
    with pytest.raises(ConfigError, match="between 1 and the window of 64 tokens"):
        token_losses(model, text, stride=65, context=64)


def test_learned_positions_refuse_a_window_past_block_size_in_one_line(loaded, ids, tiny_run, tmp_path):
    message = "a sequence of 64 positions exceeds block_size=32, the rows of the learned position table"
    for score in (token_losses, loss_by_position):
        with pytest.raises(ConfigError, match=message):
            score(loaded.model, ids, context=64)
    out = tmp_path / "eval"
    with pytest.raises(ConfigError, match=message):  # the tool: before anything is scored or written
        evaluate_with_config(tiny_run["best_ckpt"], f"out_dir={out}", "context=64")
    assert not out.exists()


def test_distinct_n_counts_unique_word_ngrams():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b", "c"], 2) == pytest.approx(2 / 3)
    assert distinct_n([""], 2) == 0.0


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
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
    assert metrics["context"] == metrics["block_size"] == 32 and len(metrics["loss_by_position"]) == 32
    # the first position predicts from one character, the last from 32
    assert metrics["loss_by_position"][0] > metrics["loss_by_position"][-1]
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
    assert "generation.png" in result.stdout.splitlines()[-1]
    assert (out / "generation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "generation.png").stat().st_size > 10_000
    samples = (out / "samples.md").read_text()
    assert "![generation quality per decoding strategy](generation.png)" in samples
    # the first prompt of the validation split, then the text that really follows it, then each strategy's
    ids, _ = evaluation_ids(loaded, {})
    prompt, following = ids[:16], ids[16:40]  # 3 prompts evenly spaced from the start to the end
    expected = "\n".join(
        [
            "## Prompt 1",
            "",
            markdown_code(loaded.tokenizer.decode(prompt.tolist()), block=True),
            "",
            "### reference (held-out text)",
            "",
            markdown_code(loaded.tokenizer.decode(following.tolist()), block=True),
        ]
    )
    assert expected in samples
    order = [samples.index(h) for h in ("## Prompt 1", "### greedy (temperature=0)", "### beam", "## Prompt 2")]
    assert order == sorted(order) and samples.count("### beam (num_beams=2)") == 3


def test_samples_show_each_prompt_before_its_continuations():
    rows = [{"strategy": "reference", "settings": "held-out text"}, {"strategy": "greedy", "settings": "temperature=0"}]
    samples = {"reference": ["T's fair", "me sir", "x"], "greedy": ["the the", "and ```the", "y"]}
    text = samples_markdown(["Firs", "Ro", "z"], samples, rows, "generation.png", shown=2)
    assert text.splitlines() == [
        "# Samples",
        "",
        "![generation quality per decoding strategy](generation.png)",
        "",
        "The first 2 of 3 prompts, each followed by its continuation by every decoding strategy; "
        "`reference` is the text that really follows the prompt.",
        "",
        "## Prompt 1",
        "",
        *("```", "Firs", "```"),
        "",
        "### reference (held-out text)",
        "",
        *("```", "T's fair", "```"),
        "",
        "### greedy (temperature=0)",
        "",
        *("```", "the the", "```"),
        "",
        "## Prompt 2",
        "",
        *("```", "Ro", "```"),
        "",
        "### reference (held-out text)",
        "",
        *("```", "me sir", "```"),
        "",
        "### greedy (temperature=0)",
        "",
        *("````", "and ```the", "````"),  # a longer fence than the backticks inside
    ]
    assert text.endswith("````\n")


def test_the_figure_has_a_titled_labelled_chart_per_metric():
    rows = [
        {"strategy": "reference", "bleu": math.nan, "chrf": math.nan, "distinct_2": 0.9, "self_ppl": 5.0},
        {"strategy": "greedy", "bleu": 8.0, "chrf": 13.0, "distinct_2": 0.2, "self_ppl": 2.5},
        {"strategy": "top_k", "bleu": 10.0, "chrf": 16.0, "distinct_2": 0.95, "self_ppl": 3.9},
    ]
    result = {"text": "all of poem.txt", "loss": 1.6, "ppl": math.exp(1.6), "bpc": 1.6 / math.log(2)}
    fig = plot_generation({**result, "generation": rows})
    assert "loss 1.600 nats, 2.308 bits per character" in fig.get_suptitle()
    assert [ax.get_ylabel() for ax in fig.axes] == ["chrF x 100", "BLEU x 100", "distinct-2", "self-perplexity"]
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() == "decoding strategy"
    # BLEU and chrF have no reference bar (the reference is what they compare with); the others do
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes]
    assert ticks == [["greedy", "top_k"]] * 2 + [["reference", "greedy", "top_k"]] * 2
    assert [bar.get_height() for bar in fig.axes[3].patches] == [5.0, 2.5, 3.9]
    assert "bits per token" in plot_generation({**result, "generation": rows}, unit="bpe").get_suptitle()


def evaluate_with_config(ckpt, *overrides: str) -> dict:
    """What `python evaluate.py ckpt=... <overrides>` does, in this process."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("evaluate", overrides=[f"ckpt={ckpt}", *overrides])
    return run(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=0", "batch_size must be an integer >= 1, got 0"),
        ("stride=0", "stride must be an integer >= 1 (or null), got 0; null = block_size"),
        ("context=0", "context must be an integer >= 1 (or null), got 0; null = block_size"),
        ("generation.prompts=0", "generation.prompts must be an integer >= 1, got 0"),
        ("generation.seed=abc", "generation.seed must be an integer"),
        ("unknown=xy", "unknown='xy' is not a policy"),
        (
            "+generation.strategies.bad={top_p: 3}",
            "generation.strategies.bad.top_p must be a number in (0, 1] (or null), got 3; null = off",
        ),
        ("+generation.strategies.bad={foo: 1}", "generation.strategies.bad: unknown decoding option foo"),
        ("+generation.strategies.beam.top_k=5", "generation.strategies.beam: beam search (num_beams=4) takes only"),
        ("+generation.strategies.greedy.length_penalty=2", "generation.strategies.greedy: length_penalty is for beam"),
    ],
)
def test_bad_options_are_refused_before_the_checkpoint_is_read(tmp_path, override, message):
    out = tmp_path / "eval"
    # a checkpoint that does not exist: each option is refused before it would be read
    with pytest.raises(ConfigError, match=re.escape(message)):
        evaluate_with_config(tmp_path / "missing.ckpt", f"out_dir={out}", override)
    assert not out.exists()


def test_token_losses_refuses_a_batch_size_below_one(loaded, ids):
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        token_losses(loaded.model, ids, batch_size=0)


def test_a_text_too_short_for_the_prompts_says_what_to_change(tiny_run, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abc")
    with pytest.raises(DataError, match="lower generation.prompt_chars or generation.new_chars, or pass a longer"):
        evaluate_with_config(tiny_run["best_ckpt"], f"data.path={short}", f"out_dir={tmp_path / 'eval'}")
    # 215 characters hold 215 - (16 + 24) + 1 = 176 distinct places for a prompt and its continuation
    short.write_text("To be, or not to be: that is the question.\n" * 5)
    with pytest.raises(ConfigError, match=r"generation.prompts=1000 but the text of 215 characters has only 176 "):
        evaluate_with_config(
            tiny_run["best_ckpt"],
            f"data.path={short}",
            f"out_dir={tmp_path / 'eval'}",
            "generation.prompts=1000",
            "generation.prompt_chars=16",
            "generation.new_chars=24",
        )
    assert not (tmp_path / "eval").exists()


def test_earlier_results_and_unwritable_folders_are_refused_before_evaluating(tiny_run, tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.json").write_text('{"loss": 1.0}\n')
    result = run_cli(str(ROOT / "evaluate.py"), f"ckpt={tiny_run['best_ckpt']}", f"out_dir={earlier}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: out_dir={earlier} already holds metrics.json; pass out_dir=<a new folder> (the default is a "
        f"new timestamped one) or move those files away"
    )
    assert [p.name for p in earlier.iterdir()] == ["metrics.json"]
    assert (earlier / "metrics.json").read_text() == '{"loss": 1.0}\n'

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=re.escape(f"out_dir={blocker} is a file, not a folder")):
        evaluate_with_config(tiny_run["best_ckpt"], f"out_dir={blocker}")
    with pytest.raises(ConfigError, match=re.escape(f"cannot be written: {blocker} is a file, not a folder")):
        evaluate_with_config(tiny_run["best_ckpt"], f"out_dir={blocker / 'eval'}")
    assert blocker.read_text() == "not a folder"


def test_a_classifier_checkpoint_is_named_as_such(tiny_run, labelled_file, tmp_path):
    from minigpt.training.run import train

    cfg = train_cfg(
        tmp_path / "classifier",
        labelled_file,
        "task=classify",
        f"init_from={tiny_run['best_ckpt']}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    )
    classifier = train(cfg)["best_ckpt"]
    with pytest.raises(ConfigError, match=r"is a classifier \(task=classify, labels name, verse\).*pass data.path="):
        evaluate_with_config(classifier, f"out_dir={tmp_path / 'eval'}")
    assert not (tmp_path / "eval").exists()
