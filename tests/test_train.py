"""Training end to end: every config option runs, a tiny model overfits, checkpoints are
self-contained, sweeps work, bad input gets one clear line."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_train, run_cli, train_cfg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.checkpoint.load import load_model
from minigpt.errors import ConfigError, DataError, RunDirError
from minigpt.figures import tensorboard_tag
from minigpt.training.run import train

GROUP_OPTIONS = [
    f"{group}={option.stem}"
    for group in ("model", "optim", "scheduler", "data", "trainer", "task")
    for option in sorted((ROOT / "conf" / group).glob("*.yaml"))
]


@pytest.mark.parametrize("override", GROUP_OPTIONS)
def test_every_config_group_option_runs_a_fast_dev_run(override, tmp_path, small_corpus, request):
    if override == "trainer=gpu" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    if override == "trainer=ddp":
        pytest.skip("DDP relaunches the entry point: tested through train.py in test_reliability.py")
    corpus, extra = small_corpus, []
    if override in ("data=labelled", "task=classify"):  # a classifier on a trained trunk
        corpus = request.getfixturevalue("labelled_file")
        extra = ["task=classify", f"init_from={request.getfixturevalue('tiny_run')['best_ckpt']}"]
    if override in ("data=digits", "task=caption"):  # the vision-language model: scikit-learn's images, no corpus
        cfg = compose_train("model=tiny", "task=caption", "+trainer.fast_dev_run=true", f"run_dir={tmp_path}")
        assert train(cfg)["steps"] == 1
        return
    cfg = train_cfg(tmp_path, corpus, override, *extra, "+trainer.fast_dev_run=true")
    if override.startswith("model="):
        cfg.model.n_layer = min(cfg.model.n_layer, 2)  # keep medium's width and block, fewer layers
    summary = train(cfg)
    assert summary["steps"] == 1


def bigram_loss(text: str) -> float:
    """Nats per character of the best bigram model of `text`, scored on `text` itself."""
    pairs = Counter(zip(text, text[1:], strict=False))
    firsts = Counter(text[:-1])
    return -sum(n * math.log(n / firsts[a]) for (a, _), n in pairs.items()) / (len(text) - 1)


def test_tiny_model_overfits_a_tiny_corpus(tmp_path, small_corpus):
    """1,200 characters, memorised: the best bigram model of this text scores about 2.0 nats/char
    (asserted below), so a loss far below 1.0 can only come from learning the sequence itself."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(small_corpus.read_text()[:1200])
    assert bigram_loss(corpus.read_text()) > 1.5
    cfg = train_cfg(
        tmp_path / "run",
        corpus,
        "model.n_layer=2",
        "model.n_embd=64",
        "model.n_head=4",
        "data.batch_size=16",
        "trainer.max_steps=1000",
        "trainer.val_check_interval=1000",
        "optim.lr=3e-3",
        "scheduler.warmup_steps=20",
        "optim.weight_decay=0",
    )
    train(cfg)
    scalars = read_tb(tmp_path / "run")
    train_loss = [v for _, v in scalars["train/loss"]]
    assert train_loss[0] > 3.0  # near ln(vocab size) early on
    assert sum(train_loss[-5:]) / 5 < 0.3


def read_tb(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from minigpt.figures import read_scalars

    return read_scalars(run_dir / "tensorboard")


def test_run_writes_checkpoints_tensorboard_and_summary(tiny_run):
    run_dir = Path(tiny_run["run_dir"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert tiny_run["steps"] == 60 and tiny_run["best_val_loss"] < 4.0
    scalars = read_tb(run_dir)
    for tag in ("train/loss", "train/lr/hidden", "val/loss", "val/ppl", "val/bpc", "val/best_loss"):
        assert tag in scalars, tag
    assert "epoch" not in scalars  # always 0 on an endless stream: its chart would lead the page
    # TensorBoard sorts tags by name and opens the first two groups: validation, then training,
    # each group with the loss first
    tags = sorted(tensorboard_tag(metric) for metric in scalars)
    groups = list(dict.fromkeys(tag.split("/")[0] for tag in tags))
    assert groups[:2] == ["eval", "train"]
    assert [next(t for t in tags if t.startswith(f"{g}/")) for g in groups[:2]] == ["eval/loss", "train/loss"]
    val = dict(scalars["val/loss"])
    assert sorted(val) == [30, 60]  # validated every 30 steps, plotted at the step it measured
    loss = val[60]
    assert dict(scalars["val/ppl"])[60] == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-4)
    assert dict(scalars["val/bpc"])[60] == pytest.approx(loss / 0.6931471805599453, rel=1e-4)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 60
    assert (run_dir / "loss_curve.png").stat().st_size > 10_000
    assert len((run_dir / "sample.txt").read_text()) == 51  # "\n" prompt + 50 characters


def test_hparams_tab_lists_the_config_and_metrics(tiny_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = {}
    for events in (Path(tiny_run["run_dir"]) / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        try:
            content = acc.PluginTagToContent("hparams")
        except KeyError:  # the events file written after fit holds only the final sample
            continue
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.n_layer"].number_value == 2
    assert start.session_start_info.hparams["model.pos_encoding"].string_value == "learned"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.experiment.metric_infos} >= {"eval/loss", "eval/ppl", "eval/loss_bpc"}


def test_checkpoint_is_self_contained(tiny_run, tmp_path):
    loaded = load_model(tiny_run["last_ckpt"])
    assert loaded.model.config.n_layer == 2 and loaded.tokenizer.vocab_size == loaded.model.config.vocab_size
    assert loaded.meta["run_config"]["model"]["n_embd"] == 16
    result = run_cli(
        str(ROOT / "generate.py"),
        f"ckpt={tiny_run['last_ckpt']}",
        "prompt=ROMEO:",
        "max_new_tokens=40",
        "seed=1",
        cwd=tmp_path,
    )  # any directory works
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) == len("ROMEO:") + 40 + 1
    assert "tokens/s" in result.stderr and "checkpoint" in result.stderr


def test_resume_continues_from_last_checkpoint(tiny_run, tmp_path, small_corpus):
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "trainer.max_steps=80",
        "trainer.val_check_interval=20",
        f"ckpt_path={tiny_run['last_ckpt']}",
    )
    assert train(cfg)["steps"] == 80


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
def test_two_job_multirun_makes_two_tensorboard_runs(tmp_path, small_corpus):
    result = run_cli(
        str(ROOT / "train.py"),
        "-m",
        "model=tiny",
        "model.pos_encoding=learned,rope",
        f"data.path={small_corpus}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "trainer.enable_progress_bar=false",
        "sample.max_new_tokens=0",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # the sweep ends with the commands that compare its jobs, on the sweep's folder (short run names)
    assert f"compare its runs: tensorboard --logdir {tmp_path / 'sweep'}" in result.stdout
    for job in ("0", "1"):
        run_dir = tmp_path / "sweep" / job
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert {"val/loss", "val/ppl", "val/bpc"} <= set(read_tb(run_dir))
    assert load_model(tmp_path / "sweep" / "1" / "checkpoints" / "last.ckpt").model.config.pos_encoding == "rope"


def test_config_errors_are_raised_before_training(tmp_path, small_corpus):
    with pytest.raises(ConfigError, match="not divisible"):
        train(train_cfg(tmp_path, small_corpus, "model.n_embd=30", "model.n_head=4"))
    with pytest.raises(ConfigError, match="max_steps must be an integer >= 1"):
        train(train_cfg(tmp_path, small_corpus, "trainer.max_steps=0"))
    with pytest.raises(DataError, match="does not exist"):
        train(train_cfg(tmp_path, tmp_path / "nope.txt"))
    assert not (tmp_path / "checkpoints").exists()


def test_a_run_failing_before_its_first_step_removes_only_a_folder_it_made(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="does not exist"):
        train(train_cfg(tmp_path / "new", missing))
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(RunDirError, match="holds files that are not a minigpt run's"):
        train(train_cfg(mine, missing))
    assert (mine / "notes.txt").read_text() == "the user's"
    empty = tmp_path / "empty"
    empty.mkdir()  # a folder the user made, empty: the failed run leaves it as it found it
    with pytest.raises(DataError, match="does not exist"):
        train(train_cfg(empty, missing))
    assert empty.is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.path=/nonexistent/corpus.txt"], "corpus file /nonexistent/corpus.txt does not exist"),
        (["model.n_layer=abc"], "model.n_layer must be an integer >= 1, got 'abc'"),
        # the same checks run in this process above; through the command line they run in CI
        *[
            pytest.param(args, message, marks=pytest.mark.slow)
            for args, message in [
                (["model.n_embd=30", "model.n_head=4"], "model.n_embd=30 is not divisible by model.n_head=4"),
                (["model.pos_encoding=xpos"], "model.pos_encoding='xpos' is unknown; choose one of learned"),
                (["model.block_size=0"], "model.block_size must be an integer >= 1"),
                (["data=text"], "data.path is required"),
            ]
        ],
    ],
)
def test_bad_training_input_prints_one_clear_line(args, message, tmp_path, small_corpus):
    base = [f"data.path={small_corpus}"] if not any(a.startswith("data") for a in args) else []
    result = run_cli(
        str(ROOT / "train.py"), "model=tiny", *base, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a run that fails before its first step leaves no folder


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
def test_cfg_job_and_help_work():
    result = run_cli(str(ROOT / "train.py"), "--cfg", "job", "model=small")
    assert result.returncode == 0 and "n_layer: 4" in result.stdout
    result = run_cli(str(ROOT / "train.py"), "--help")
    assert result.returncode == 0 and "python train.py -m" in result.stdout


def test_composed_defaults_match_the_readme():
    cfg = compose_train()
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd, cfg.model.block_size) == (4, 4, 128, 64)
    assert cfg.data.block_size == cfg.model.block_size
