"""Diagnostics of a tiny trained checkpoint: attention is causal and normalised, the hooked
residual stream is the model's own, and the command and the notebook produce every figure."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import CONF, run_cli
from hydra import compose, initialize_config_dir
from matplotlib.image import imread

from minigpt.analysis.diagnose import diagnose, run
from minigpt.checkpoint.load import load_model
from minigpt.cli import friendly_errors
from minigpt.errors import ConfigError, MinigptError
from minigpt.figures import embedding_pca
from minigpt.model import GPT, GPTConfig
from minigpt.probes import attention_entropy, attention_maps, position_spread, residual_stream

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak."
FIGURES = {
    "attention_layer0",
    "attention_layer1",
    "attention_mean",
    "residual_norm",
    "embedding_pca",
    "logits",
    "char_loss",
}


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run["best_ckpt"])


@pytest.fixture(scope="module")
def ids(loaded):
    return torch.tensor(loaded.tokenizer.encode(TEXT[:32]), dtype=torch.long)


def test_attention_rows_sum_to_one_and_nothing_above_the_diagonal(loaded, ids):
    layers = attention_maps(loaded.model, ids)
    assert len(layers) == 2
    for w in layers:
        assert w.shape == (2, 32, 32)
        assert torch.allclose(w.sum(-1), torch.ones(2, 32), atol=1e-5)
        assert (w.triu(diagonal=1) == 0).all()
        assert (w[:, torch.ones(32, 32, dtype=torch.bool).tril()] > 0).all()  # every visible position gets some


def test_attention_entropy_is_zero_for_one_hot_rows_and_log_t_for_uniform_ones():
    T = 8
    one_hot = torch.eye(T)[None]  # each position looks only at itself
    uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1.0)[:, None]
    assert attention_entropy([one_hot]) == [0.0]
    expected = float(torch.log(torch.arange(1, T + 1.0)).mean())
    assert attention_entropy([uniform[None]])[0] == pytest.approx(expected, rel=1e-6)


def test_residual_stream_is_what_the_model_computes(loaded, ids):
    states = residual_stream(loaded.model, ids)
    assert len(states) == 3 and all(s.shape == (32, 16) for s in states)  # embeddings + 2 blocks
    model = loaded.model
    with torch.no_grad():
        logits = model.lm_head(model.transformer.ln_f(states[-1]))
        assert torch.allclose(logits, model(ids[None])[0], atol=1e-5)
    assert not model.training  # the hooks are gone and the mode is restored
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_position_spread_tells_a_collapsed_stream_from_a_working_one():
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    assert position_spread([x])[0] > 0.5
    assert position_spread([x[:1].expand(16, 8), torch.zeros(16, 8)]) == [0.0, 0.0]
    # A network without residuals whose last MLP outputs only its bias: every position holds
    # the same vector, whatever the input, so the model can only predict one distribution.
    model = GPT(GPTConfig(vocab_size=10, block_size=16, n_layer=2, n_head=2, n_embd=8, residual=False))
    torch.nn.init.zeros_(model.transformer.h[-1].mlp.c_proj.weight)
    torch.nn.init.normal_(model.transformer.h[-1].mlp.c_proj.bias)
    spreads = position_spread(residual_stream(model, torch.arange(10)))
    assert spreads[0] > 0.5 and spreads[-1] < 1e-6


def test_embedding_pca_explains_the_most_variance_first(loaded):
    coords, explained = embedding_pca(loaded.model.transformer.wte.weight)
    assert coords.shape == (loaded.tokenizer.vocab_size, 2)
    assert 1 >= explained[0] >= explained[1] > 0


@pytest.mark.slow  # the whole command end to end, ~10 s: CI runs it (make test-slow)
def test_diagnose_command_writes_every_figure_and_an_index(tiny_run, tmp_path):
    out = tmp_path / "diag"
    result = run_cli(
        "-m", "minigpt", "diagnose", f"ckpt={tiny_run['best_ckpt']}", f"out_dir={out}", "max_new_tokens=20"
    )
    assert result.returncode == 0, result.stderr
    assert {p.stem for p in out.glob("*.png")} == FIGURES
    height, width, _ = imread(out / "attention_layer0.png").shape  # 2 heads + their mean, one per row
    assert height > 2 * width and 400 < width <= 800  # legible at the page's width (figures.PAGE_WIDTH)
    height, width, _ = imread(out / "embedding_pca.png").shape
    assert (width, height) == (700, 600)
    index = (out / "index.md").read_text()
    assert all(f"]({name}.png)" in index for name in FIGURES)
    assert [f"### temperature {t}" in index for t in (0.5, 0.8, 1.0, 1.2)] == [True] * 4


def test_diagnose_refusals_are_one_line_and_keep_the_folder(tiny_run, tmp_path, capsys):
    """The tool's refusals (in this process: the command's own wrapper, without an interpreter
    start per case), and a folder that already holds a report is left as it was."""
    ckpt = tiny_run["best_ckpt"]
    out = tmp_path / "diag"
    out.mkdir()
    (out / "attention_layer0.png").write_bytes(b"an earlier report")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def refused(*overrides: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            friendly_errors(lambda cfg: run(cfg))(compose_diagnose(ckpt, *overrides))
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0, err
        return err

    assert "outside the model's vocabulary" in refused(f"out_dir={tmp_path / 'diag_2'}", "text='ROMEO:€'")
    assert not (tmp_path / "diag_2").exists()
    assert refused(f"out_dir={out}", "temperatures=abc").startswith("error: temperatures must be numbers >= 0")
    assert refused(f"out_dir={out}").startswith(f"error: out_dir={out} already holds attention_layer0.png")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def compose_diagnose(ckpt, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("diagnose", overrides=[f"ckpt={ckpt}", *overrides])


def diagnose_with_config(ckpt, *overrides: str):
    """What `python -m minigpt diagnose ckpt=... <overrides>` does, in this process."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("diagnose", overrides=[f"ckpt={ckpt}", *overrides])
    return run(cfg)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("bad_text")
    files = {"binary": bytes(range(256)), "latin1": "Ça va, Grüße".encode("latin-1"), "empty": b""}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files} | {"folder": folder}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["temperatures=[-1,0]"], "temperatures must be numbers >= 0 (0 = greedy) such as [0.5,1.0], got -1"),
        (["temperatures=abc"], "temperatures must be numbers >= 0 (0 = greedy) such as [0.5,1.0], got 'abc'"),
        (["max_new_tokens=-1"], "max_new_tokens must be an integer >= 0, got -1"),
        (["seed=abc"], "seed must be an integer from 0 to 4294967295 (or null), got 'abc'"),
        (["unknown=xy"], "unknown='xy' is not a policy"),
        (["text=''"], 'text is empty; pass text="some text" or text_file=PATH'),
        (["text_file={binary}"], "text_file {binary} is not UTF-8 text (byte 0x80 at offset 128)"),
        (["text_file={latin1}"], "text_file {latin1} is not UTF-8 text (byte 0xc7 at offset 0)"),
        (["text_file={empty}"], "text_file {empty} is empty"),
        (["text_file={folder}"], "text_file {folder} is a directory"),
    ],
)
def test_bad_options_are_one_line_before_anything_is_read_or_written(tmp_path, bad_files, overrides, message):
    out = tmp_path / "diag"
    overrides = [o.format(**bad_files) for o in overrides]
    # a checkpoint that does not exist: each option is refused before it would be read
    with pytest.raises((ConfigError, MinigptError), match=re.escape(message.format(**bad_files))):
        diagnose_with_config(tmp_path / "missing.ckpt", f"out_dir={out}", *overrides)
    assert not out.exists()


def test_diagnose_checks_its_arguments_before_writing(loaded, tmp_path):
    out = tmp_path / "diag"
    with pytest.raises(ConfigError, match="temperatures must be numbers >= 0"):
        diagnose(loaded, TEXT, out, temperatures=(0.5, -1.0), max_new_tokens=5)
    with pytest.raises(ConfigError, match="max_new_tokens must be an integer >= 0"):
        diagnose(loaded, TEXT, out, max_new_tokens=-1)
    assert not out.exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=re.escape(f"out_dir={blocker} is a file, not a folder")):
        diagnose(loaded, TEXT, blocker, max_new_tokens=5)
    with pytest.raises(ConfigError, match=re.escape(f"cannot be written: {blocker} is a file, not a folder")):
        diagnose(loaded, TEXT, blocker / "diag", max_new_tokens=5)
    assert blocker.read_text() == "not a folder"
