"""The classification head: labelled data, a classifier that learns a learnable task from a
pre-trained trunk, its TensorBoard metrics and checkpoints, prediction, a frozen trunk, and one
clear line for each kind of bad input."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli, train_cfg

from minigpt.checkpoint.load import load_model
from minigpt.classifier import pool
from minigpt.data.labelled import read_labelled
from minigpt.errors import ConfigError, DataError, VocabularyError
from minigpt.figures import metric_name, read_scalars
from minigpt.inference.classify import classify_texts, load_classifier
from minigpt.training.run import train

STEPS = 40


def classify_cfg(run_dir: Path, labelled: Path, init_from: str, *overrides: str):
    return train_cfg(
        run_dir,
        labelled,
        "task=classify",
        f"init_from={init_from}",
        f"trainer.max_steps={STEPS}",
        "trainer.val_check_interval=20",
        "optim.lr=3e-3",
        "scheduler.warmup_steps=5",
        *overrides,
    )


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    return {tag: dict(points) for tag, points in read_scalars(run_dir / "tensorboard").items()}


@pytest.fixture(scope="module")
def classifier_run(tiny_run, labelled_file, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("classifier_run")
    return train(classify_cfg(run_dir, labelled_file, tiny_run["best_ckpt"]))


def test_classifier_learns_speaker_headings_from_verse(classifier_run):
    """Balanced labels, so chance is 0.5; with ~90 validation examples its standard deviation is
    about 0.05, so 0.85 is seven of them above chance. A heading ends in ':' after a capitalised
    name, which the tiny trunk's last hidden state tells apart within a few dozen steps."""
    run_dir = Path(classifier_run["run_dir"])
    logged = scalars(run_dir)
    assert {"train/loss", "val/loss", "val/acc", "val/best_acc"} <= set(logged)
    assert sorted(logged["val/acc"]) == [19, 39]
    assert logged["val/acc"][39] >= 0.85
    assert classifier_run["best_val_acc"] == pytest.approx(max(logged["val/acc"].values()))
    assert "best_val_bpc" not in classifier_run  # bits per character of label loss would mislead
    assert classifier_run["steps"] == STEPS
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_hparams_tab_shows_the_classifier_accuracy(classifier_run):
    """A classification sweep compares runs by accuracy, so HPARAMS lists it (not val/ppl)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    (events,) = (Path(classifier_run["run_dir"]) / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    tags = {metric_name(m.name.tag) for m in experiment.experiment.metric_infos}
    assert tags == {"val/loss", "val/acc", "val/best_loss", "val/best_acc"}


def test_the_saved_classifier_predicts_what_validation_measured(classifier_run, labelled_file):
    """Accuracy of `classify_texts` on the validation examples equals the logged val/acc of the
    same weights (last.ckpt is the weights of the last validation, step 39)."""
    from minigpt.data.labelled import LabelledDataModule

    classifier = load_classifier(classifier_run["last_ckpt"])
    assert classifier.labels == ["name", "verse"]
    data = LabelledDataModule(str(labelled_file), block_size=32, tokenizer=classifier.tokenizer)
    data.setup()
    ids, mask, targets = data.val_set
    texts = [classifier.tokenizer.decode(row[m].tolist()) for row, m in zip(ids, mask, strict=True)]
    probs = classify_texts(classifier, texts)
    predicted = [classifier.labels.index(max(p, key=p.get)) for p in probs]
    accuracy = sum(int(p == t) for p, t in zip(predicted, targets.tolist(), strict=True)) / len(texts)
    assert accuracy == pytest.approx(scalars(Path(classifier_run["run_dir"]))["val/acc"][39], abs=1e-6)
    assert all(sum(p.values()) == pytest.approx(1.0) for p in probs)
    with pytest.raises(VocabularyError, match="'é'"):
        classify_texts(classifier, ["Café"])


def test_padding_does_not_change_a_texts_prediction(classifier_run):
    classifier = load_classifier(classifier_run["last_ckpt"])
    alone = classify_texts(classifier, ["MENENIUS:"])[0]
    beside_a_long_text = classify_texts(classifier, ["MENENIUS:", "What authority surfeits on would relieve us"])[0]
    assert alone == pytest.approx(beside_a_long_text, abs=1e-6)
    hidden = torch.arange(12.0).view(1, 4, 3)
    mask = torch.tensor([[True, True, False, False]])
    assert torch.equal(pool(hidden, mask, "last"), hidden[:, 1])
    assert torch.equal(pool(hidden, mask, "mean"), hidden[:, :2].mean(1))


def test_a_classifier_checkpoint_still_holds_the_language_model(classifier_run, tiny_run):
    trunk = load_model(classifier_run["best_ckpt"], tasks=("classify",))
    assert trunk.model.config == load_model(tiny_run["best_ckpt"]).model.config


def test_frozen_trunk_keeps_the_pretrained_weights(tiny_run, labelled_file, tmp_path):
    summary = train(
        classify_cfg(tmp_path, labelled_file, tiny_run["best_ckpt"], "task.freeze_trunk=true", "trainer.max_steps=20")
    )
    before = load_model(tiny_run["best_ckpt"]).model.state_dict()
    after = load_model(summary["last_ckpt"], tasks=("classify",)).model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    head = torch.load(summary["last_ckpt"], weights_only=True)["state_dict"]["head.weight"]
    assert head.abs().max() > 0.05  # initialised at std 0.02, then trained
    assert "val/acc" in scalars(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("name\tROMEO:\nverse\tO, she doth teach\nno tab here\n", "line 3 of .* has no tab"),
        ("name\tROMEO:\n\tno label\n", "line 2 of .* has an empty label"),
        ("name\tROMEO:\nname\tJULIET:\n", "1 distinct label \\('name'\\); a classifier needs at least 2"),
    ],
)
def test_bad_labelled_files_are_one_clear_line(content, message, tmp_path):
    path = tmp_path / "labels.tsv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labelled(path)


def test_classify_needs_init_from_and_known_characters(tiny_run, labelled_file, tmp_path):
    with pytest.raises(ConfigError, match="task=classify needs init_from"):
        train(classify_cfg(tmp_path, labelled_file, "null"))
    accented = tmp_path / "accented.tsv"
    accented.write_text(labelled_file.read_text() + "verse\tCafé\n")
    with pytest.raises(DataError, match=r"'é' \(line \d+\)"):
        train(classify_cfg(tmp_path, accented, tiny_run["best_ckpt"]))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_cli_trains_and_predicts(tiny_run, labelled_file, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\tROMEO:\nverse only\n")
    common = ["task=classify", f"init_from={tiny_run['best_ckpt']}", "trainer.enable_progress_bar=false"]
    result = run_cli(str(ROOT / "train.py"), *common, f"data.path={bad}", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.returncode == 2
    assert result.stderr == f"error: line 2 of {bad} has no tab: each line is label<TAB>text\n"

    run = tmp_path / "run"
    args = [*common, f"data.path={labelled_file}", "trainer.max_steps=40", "trainer.val_check_interval=20"]
    result = run_cli(str(ROOT / "train.py"), *args, "optim.lr=3e-3", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("-m", "minigpt", "classify", f"ckpt={run / 'checkpoints' / 'best.ckpt'}", "text=ROMEO:")
    assert result.returncode == 0, result.stderr[-2000:]
    label, *rows = result.stdout.splitlines()
    assert label == "name" and rows[0].split()[0] == "name" and len(rows) == 2
