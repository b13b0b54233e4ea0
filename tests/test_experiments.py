"""Experiments: every experiment config runs, the LSTM baseline, Optuna and submitit sweeps,
and the sweep report on complete and failed sweeps."""

import csv
import io
import json
import math

import pytest
import torch
from conftest import ROOT, compose_train, run_cli, train_cfg

from minigpt.analysis.report import plot_curves, report, report_figures
from minigpt.architectures import build_model
from minigpt.checkpoint.load import load_model
from minigpt.sampling import SamplingConfig, generate
from minigpt.training.run import train

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
ABLATIONS = sorted(p.stem for p in (ROOT / "conf" / "ablation").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs(experiment, tmp_path, small_corpus):
    if experiment.startswith("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cfg = train_cfg(tmp_path, small_corpus, f"experiment={experiment}", "+trainer.fast_dev_run=true")
    cfg.model.n_layer = 1
    assert train(cfg)["steps"] == 1


@pytest.mark.slow  # torch.compile (inductor) builds its C++ kernels first: about a minute on 2 cores
def test_gpu_recipe_code_path_trains_on_cpu(tmp_path, small_corpus):
    """Without a GPU here, the GPU recipe's own machinery still runs: bf16 autocast, the fused
    attention and torch.compile, on the CPU, at a tiny size; its checkpoint is a normal model."""
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "experiment=gpu_90s",
        "trainer=cpu",
        "trainer.precision=bf16-mixed",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.n_head=2",
        "model.block_size=32",
        "data.batch_size=4",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "data.val_windows=4",
        "callbacks=none",
    )
    assert cfg.compile and cfg.model.attn_impl == "sdpa"
    summary = train(cfg)
    assert summary["steps"] == 4 and math.isfinite(summary["best_val_loss"])
    loaded = load_model(summary["last_ckpt"])
    assert loaded.model.config.n_embd == 32 and not any(k.startswith("_orig_mod") for k in loaded.model.state_dict())


def test_each_budget_recipe_has_the_shape_it_documents():
    """The GPU recipe extends cpu_90s, whose model keys are set after the model group: the shape
    (nanoGPT's 6 x 384, context 256) must survive that; the 5-minute recipe is its own width."""
    gpu = compose_train("experiment=gpu_90s").model
    assert (gpu.n_layer, gpu.n_head, gpu.n_embd, gpu.block_size, gpu.dropout) == (6, 6, 384, 256, 0.2)
    cpu, five = compose_train("experiment=cpu_90s"), compose_train("experiment=cpu_5min")
    assert five.trainer.max_time.seconds == 300 and cpu.trainer.max_time.seconds == 90
    assert five.model.n_embd > cpu.model.n_embd
    # the CPU recipes' own context and batch (docs/performance.md), not the small model's 64
    assert (cpu.model.block_size, cpu.data.batch_size) == (five.model.block_size, five.data.batch_size) == (128, 24)


def test_experiments_declare_their_sweeps():
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    def sweep_params(experiment):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        return cfg.hydra.sweeper.get("params")

    with_sweeps = {e for e in EXPERIMENTS if sweep_params(e)}
    sweeps = {"pos_encoding", "ablations", "lr_sweep", "model_size", "depth_width", "dropout", "extrapolate"}
    assert sweeps <= with_sweeps


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_switch_changes_one_thing(ablation):
    base, ablated = compose_train().model, compose_train(f"ablation={ablation}").model
    changed = {k for k in base if base[k] != ablated[k]}
    assert len(changed) == (0 if ablation == "baseline" else 1), changed


def test_lstm_baseline_trains_and_generates(tmp_path, small_corpus):
    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "model=lstm",
        "model.n_embd=32",
        "trainer.max_steps=40",
        "optim.lr=1e-2",
        "trainer.val_check_interval=20",
    )
    summary = train(cfg)
    assert summary["best_val_loss"] < 3.6  # well below ln(vocab) ~ 4 after 40 steps
    loaded = load_model(summary["last_ckpt"])
    assert loaded.meta["model_config"]["arch"] == "lstm"
    out = generate(loaded.model, torch.zeros(1, 1, dtype=torch.long), 80, SamplingConfig(temperature=0))
    assert out.shape == (1, 81)  # longer than block_size: the window policy applies without a cache


def test_unknown_architecture_is_a_clear_error():
    from minigpt.errors import ConfigError

    with pytest.raises(ConfigError, match="model.arch='rnn' is unknown"):
        build_model({"arch": "rnn", "vocab_size": 5})


def sweep(tmp_path, corpus, *args):
    return run_cli(
        str(ROOT / "train.py"),
        "-m",
        "model=tiny",
        f"data.path={corpus}",
        "trainer.max_steps=10",
        "trainer.val_check_interval=5",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "sample.max_new_tokens=0",
        f"hydra.sweep.dir={tmp_path}",
        *args,
        cwd=tmp_path,
    )


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
def test_optuna_search_of_two_trials_records_a_failed_trial(tmp_path, small_corpus):
    result = sweep(
        tmp_path,
        small_corpus,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.params={model.n_embd: 'choice(16, 17)', model.n_layer: 'choice(1, 2)'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = io.StringIO()
    rep = report(tmp_path, tmp_path / "report", out=printed)
    status = {j["overrides"]["model.n_embd"]: j["status"] for j in rep["jobs"]}
    # n_embd=17 is not divisible by tiny's 2 heads: that trial fails before its first step, the
    # search still finishes, and the report names the trial and leaves it out
    assert status == {"16": "ok"}
    assert "never reached a first step" in printed.getvalue() and "model.n_embd=17" in printed.getvalue()
    results = (tmp_path / "optimization_results.yaml").read_text()
    assert "model.n_embd: 16" in results


@pytest.mark.slow  # submitit polls its jobs and each job re-imports everything: ~30-60 s
def test_submitit_local_launcher_runs_jobs_in_their_own_processes(tmp_path, small_corpus):
    result = sweep(tmp_path, small_corpus, "hydra/launcher=local", "model.pos_encoding=learned,rope")
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / ".submitit").rglob("*_log.out"))


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
def test_report_on_a_sweep_with_a_failed_job(tmp_path, small_corpus, capsys):
    result = sweep(tmp_path, small_corpus, "model.n_head=2,3")  # n_embd=16 with 3 heads fails
    assert result.returncode == 2  # the other jobs ran; the failed one is one line, and named again at the end
    assert "error: job 1 (model.n_head=3): model.n_embd=16 is not divisible" in result.stderr
    assert "1 job(s) of the sweep failed: job 1 (model.n_head=3) (each error is above)" in result.stderr
    assert "Traceback" not in result.stderr
    assert "not divisible" in result.stderr
    rep = report(tmp_path, curves=("train/loss", "no/such_tag"))
    printed = capsys.readouterr().out
    jobs = {j["overrides"]["model.n_head"]: j for j in rep["jobs"]}
    assert jobs["2"]["status"] == "ok" and math.isfinite(jobs["2"]["best_val_loss"])
    assert "3" not in jobs  # failed before its first step: named in a note, left out of the table
    assert "never reached a first step (no log, no checkpoint): 1 (model.n_head=3)" in printed
    assert rep["keys"] == ["model.n_head"]
    rows = list(csv.DictReader((tmp_path / "report.csv").read_text().splitlines()))
    assert [r["model.n_head"] for r in rows] == ["2"]
    assert (tmp_path / "val_loss_curves.png").stat().st_size > 5000
    assert (tmp_path / "loss_vs_model.n_head.png").is_file()
    assert (tmp_path / "curves_train_loss.png").stat().st_size > 5000  # an extra overlaid tag
    # n_head does not change the parameter count: a plot against it would be one point
    assert not (tmp_path / "loss_vs_parameters.png").exists() and "loss_vs_parameters" not in rep["files"]
    figures = report_figures(rep["jobs"], rep["keys"], ("train/loss",))
    assert set(figures) == {"val_loss_curves", "curves_train_loss", "loss_vs_model.n_head"}
    assert {p.name for p in tmp_path.glob("*.png")} == {f"{name}.png" for name in figures}
    for name, fig in figures.items():
        assert [bool(ax.get_title()) for ax in fig.axes] == [True], name
    assert "no job logged 'no/such_tag'; logged tags:" in printed and "train/loss" in printed
    assert not (tmp_path / "curves_no_such_tag.png").exists()
    # a job whose summary.json was cut short (killed while writing) counts as incomplete
    (tmp_path / jobs["2"]["job"] / "summary.json").write_text('{"best_val_loss": 1.2')
    redone = {j["overrides"]["model.n_head"]: j for j in report(tmp_path, out_dir=tmp_path / "again")["jobs"]}
    assert redone["2"]["status"] == "failed/incomplete"  # but its TensorBoard curve still gives the best loss
    assert redone["2"]["best_val_loss"] == pytest.approx(jobs["2"]["best_val_loss"])


def fake_sweep(folder, jobs: list[tuple[str, int, float]]):
    """Job folders as a Hydra multirun of train.py leaves them, without TensorBoard logs: one
    override, and a summary.json with the parameter count and the best validation loss."""
    for n, (override, parameters, loss) in enumerate(jobs):
        (folder / str(n) / ".hydra").mkdir(parents=True)
        (folder / str(n) / ".hydra" / "overrides.yaml").write_text(f"- {override}\n")
        summary = {"best_val_loss": loss, "steps": 10, "parameters": parameters, "train_seconds": 1.0}
        (folder / str(n) / "summary.json").write_text(json.dumps(summary))
    return folder


def test_report_draws_loss_vs_parameters_only_when_the_counts_differ(tmp_path, capsys):
    jobs = [("model.n_embd=16", 9000, 2.3), ("model.n_embd=32", 30000, 2.1), ("model.n_embd=64", 110000, 2.0)]
    rep = report(fake_sweep(tmp_path / "sizes", jobs))
    assert (tmp_path / "sizes" / "loss_vs_parameters.png").stat().st_size > 5000
    assert set(rep["files"]) == {"csv", "loss_vs_model.n_embd", "loss_vs_parameters"}  # no curves without logs
    titles = {
        name: [ax.get_title() for ax in fig.axes] for name, fig in report_figures(rep["jobs"], rep["keys"]).items()
    }
    assert titles["loss_vs_parameters"] == ["best validation loss against parameter count"]

    # a categorical sweep that keeps the parameter count: a bar chart, and no plot against parameters
    jobs = [("model.pos_encoding=learned", 9000, 2.3), ("model.pos_encoding=rope", 9000, 2.1)]
    rep = report(fake_sweep(tmp_path / "same", jobs))
    assert set(rep["files"]) == {"csv", "loss_vs_model.pos_encoding"}
    assert not (tmp_path / "same" / "loss_vs_parameters.png").exists()
    figures = report_figures(rep["jobs"], rep["keys"])
    assert [ax.get_title() for ax in figures["loss_vs_model.pos_encoding"].axes] == [
        "best validation loss against model.pos_encoding"
    ]
    assert "loss_vs_parameters" not in capsys.readouterr().out.split("wrote")[-1]


def test_report_leaves_out_jobs_that_never_started_and_draws_losses_from_zero(tmp_path, capsys):
    jobs = [("model.pos_encoding=learned", 9000, 2.31), ("model.pos_encoding=rope", 9000, 2.30)]
    sweep_dir = fake_sweep(tmp_path / "sweep", jobs)
    (sweep_dir / "2" / ".hydra").mkdir(parents=True)  # a job that failed before its first step
    (sweep_dir / "2" / ".hydra" / "overrides.yaml").write_text("- model.pos_encoding=alibi\n")
    rep = report(sweep_dir)
    assert [j["job"] for j in rep["jobs"]] == ["0", "1"]
    assert "left out job(s) that never reached a first step (no log, no checkpoint): 2" in capsys.readouterr().out
    (bars,) = report_figures(rep["jobs"], rep["keys"])["loss_vs_model.pos_encoding"].axes
    assert bars.get_ylim()[0] == 0  # a 0.01 difference drawn at its size

    # a sweep of a few steps: one validation point per job, on an axis from step 0, with the
    # training loss that led there
    for job, (_, _, loss) in zip(rep["jobs"], jobs, strict=True):
        job["scalars"] = {"val/loss": [(100, loss)], "train/loss": [(s, 4.2 - s / 50) for s in range(0, 100, 10)]}
    (ax,) = plot_curves(rep["jobs"], rep["keys"]).axes
    assert ax.get_xlim()[0] == 0 and ax.get_ylim()[0] == 0
    assert len(ax.get_lines()) == 4 and ax.get_xlim()[1] >= 100


def test_report_on_a_wrong_folder_is_one_line(tmp_path):
    missing = tmp_path / "missing"
    for folder, line in (
        (
            missing,
            f"error: {missing} is not a directory; pass a multirun folder such as outputs/<task>/multiruns/<time>",
        ),
        (tmp_path, f"error: no Hydra jobs (folders with .hydra/) under {tmp_path}"),
    ):
        result = run_cli("-m", "minigpt", "report", f"dir={folder}")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [line]


def test_every_shape_of_the_budget_study_builds_a_model():
    """The budget study's search space holds only shapes the model accepts: no trial of the
    90 s recipe is spent on a config error."""
    import itertools
    import re

    from omegaconf import OmegaConf

    from minigpt.model import GPTConfig

    params = OmegaConf.load(ROOT / "conf" / "hparams_search" / "budget_shape.yaml").hydra.sweeper.params
    space = {k: [int(v) for v in re.fullmatch(r"choice\((.*)\)", str(c))[1].split(",")] for k, c in params.items()}
    assert {"model.n_layer", "model.n_embd", "model.n_head", "model.mlp_ratio"} <= set(space)
    for values in itertools.product(*space.values()):
        chosen = dict(zip(space, values))
        shape = {k.removeprefix("model."): v for k, v in chosen.items() if k.startswith("model.")}
        GPTConfig(vocab_size=65, pos_encoding="rope", qk_norm=True, value_embeds=True, **shape)
