"""Fine-tuning with init_from: the run starts from the checkpoint's weights, model config and
vocabulary; shape-changing overrides and corpora with unknown characters get one clear line."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_cli, train_cfg
from play import play

from minigpt.checkpoint.init_from import explicit_model_options, fine_tune_model_config, load_pretrained
from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import CharDataModule
from minigpt.errors import ConfigError, DataError
from minigpt.figures import read_scalars
from minigpt.training.run import build_task, train


@pytest.fixture(scope="module")
def new_corpus(tiny_run, tmp_path_factory) -> Path:
    """Text the checkpoint never saw (the small corpus's play written with another seed), kept to
    its vocabulary."""
    vocab = set(load_model(tiny_run["best_ckpt"]).tokenizer.chars)
    text = "".join(c for c in play(15_000, seed=1) if c in vocab)
    path = tmp_path_factory.mktemp("new_corpus") / "new.txt"
    path.write_text(text)
    return path


def test_weights_config_and_vocabulary_come_from_the_checkpoint(tiny_run, new_corpus, tmp_path):
    # model=small is ignored: an unchanged preset is not an explicit override
    cfg = train_cfg(tmp_path, new_corpus, "model=small", f"init_from={tiny_run['best_ckpt']}")
    datamodule, module = build_task(cfg)
    pretrained = load_model(tiny_run["best_ckpt"])
    assert module.config == pretrained.model.config and cfg.model.n_embd == 16
    assert datamodule.tokenizer.chars == pretrained.tokenizer.chars
    assert datamodule.block_size == 32  # data.block_size follows the checkpoint's model
    theirs = pretrained.model.state_dict()
    for name, weight in module.model.state_dict().items():
        assert torch.equal(weight, theirs[name]), name


def test_first_validation_loss_is_the_checkpoints_loss_on_the_new_corpus(tiny_run, new_corpus, tmp_path):
    """With lr=0 the one training step changes nothing, so the logged val/loss must be the
    checkpoint's own loss on the new corpus's validation split, computed here independently."""
    cfg = train_cfg(
        tmp_path,
        new_corpus,
        f"init_from={tiny_run['best_ckpt']}",
        "optim.lr=0",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "callbacks=none",
    )
    summary = train(cfg)
    logged = dict(read_scalars(tmp_path / "tensorboard")["val/loss"])[1]  # after the one step, at lr=0

    pretrained = load_model(tiny_run["best_ckpt"])
    data = CharDataModule(block_size=32, path=str(new_corpus), vocab=pretrained.tokenizer.chars)
    data.setup()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in data.val_dataloader():
            logits = pretrained.model(x)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    assert logged == pytest.approx(total / count, rel=1e-5)
    assert load_model(summary["last_ckpt"]).tokenizer.chars == pretrained.tokenizer.chars


def test_only_fine_tunable_options_may_be_overridden(tiny_run):
    pretrained = load_pretrained(tiny_run["best_ckpt"])
    mine = {**pretrained.model.config.to_dict(), "dropout": 0.2, "n_layer": 8}
    assert fine_tune_model_config(pretrained, mine, {"dropout"})["dropout"] == 0.2
    assert fine_tune_model_config(pretrained, mine, set())["dropout"] == 0.0  # the checkpoint's
    with pytest.raises(ConfigError, match=r"model.n_layer=8 \(checkpoint: 2\)"):
        fine_tune_model_config(pretrained, mine, {"n_layer", "dropout"})
    with pytest.raises(ConfigError, match="model.n_layer=8"):
        fine_tune_model_config(pretrained, mine, {"*"})  # model=<another preset>
    assert explicit_model_options(["model.n_layer=8", "+model.dropout=0.1", "optim.lr=1", "model=small"]) == {
        "n_layer",
        "dropout",
        "*",
    }


def test_unknown_characters_in_the_new_corpus_are_named(tiny_run, new_corpus, tmp_path):
    corpus = tmp_path / "accents.txt"
    corpus.write_text(new_corpus.read_text() + "Café, naïve\n")
    with pytest.raises(DataError, match="2 character\\(s\\) outside the vocabulary of init_from=.*'é' 'ï'"):
        train(train_cfg(tmp_path / "run", corpus, f"init_from={tiny_run['best_ckpt']}"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_shape_override_on_the_command_line_is_one_line(tiny_run, new_corpus, tmp_path):
    result = run_cli(
        str(ROOT / "train.py"),
        f"init_from={tiny_run['best_ckpt']}",
        "data=text",
        f"data.path={new_corpus}",
        "model.n_layer=8",
        "model.dropout=0.1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: init_from=") and result.stderr.count("\n") == 1
    assert "model.n_layer=8 (checkpoint: 2)" in result.stderr and "dropout" in result.stderr
