"""One training run: config -> data, model, trainer -> fit -> checkpoint, sample, loss curve."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt.checkpoint.format import read_meta
from minigpt.checkpoint.init_from import check_vocabulary, use_pretrained
from minigpt.checkpoint.load import check_resumable
from minigpt.cli import FULL_ERROR_ASKED, build, fail, one_line, quiet_libraries, run_dir_of
from minigpt.configs import TaskChoice, check_composed
from minigpt.errors import ConfigError, RunDirError, TrainingDiverged, VocabularyError
from minigpt.figures import plot_loss_curve, tensorboard_tag
from minigpt.io import check_run_place, json_safe, printable
from minigpt.options import check_finite_options
from minigpt.schema import check_values
from minigpt.sweep import swept_overrides
from minigpt.training.allocator import keep_freed_memory
from minigpt.training.callbacks import HParamsSummary, TextSamples, final_sample
from minigpt.training.checkpoint_io import SafeCheckpointIO
from minigpt.training.lock import LOCK_FILE, holds_run_dir, lock_run_dir
from minigpt.training.module import LitGPT
from minigpt.training.precision import set_matmul_precision
from minigpt.training.preflight import preflight
from minigpt.training.progress import TrainProgressBar, ValidateAtEnd, ValidationLog
from minigpt.training.reliability import GracefulStop, LastCheckpoint, StepSeed
from minigpt.training.resume import checked_resume
from minigpt.training.symptoms import Symptoms

log = logging.getLogger("minigpt")


def build_module(cfg: DictConfig, vocab: list[str] | dict) -> LitGPT:
    """The LightningModule for `cfg`, from plain values only (`vocab`: the serialised tokenizer)."""
    run_config = OmegaConf.to_container(cfg, resolve=True)
    return LitGPT(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        vocab=vocab,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        run_config=run_config,
    )


def build_task(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The data module and LightningModule of `cfg.task`: a language model, from scratch or
    fine-tuned from `init_from` (minigpt/pretrained.py), or a classifier (minigpt/classify.py)."""
    if task_of(cfg) == "classify":
        from minigpt.training.classifier import build_classifier

        return build_classifier(cfg)
    if task_of(cfg) == "caption":  # a vision-language model on the digits (minigpt/training/vlm.py)
        from minigpt.training.vlm import build_vlm

        return build_vlm(cfg)
    pretrained = use_pretrained(cfg)  # with init_from, cfg.model is now the checkpoint's
    if pretrained is None:
        datamodule = build(cfg.data)
    else:  # the checkpoint's vocabulary, not one made from the new corpus
        datamodule = build(cfg.data, tokenizer=pretrained.tokenizer)
    datamodule.prepare_data()
    if pretrained is not None:
        check_vocabulary(datamodule.corpus_path(), pretrained.tokenizer, cfg.init_from)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.tokenizer.serialize())
    if pretrained is not None:
        module.model.load_state_dict(pretrained.model.state_dict())
        log.info("fine-tuning from %s", cfg.init_from)
    return datamodule, module


def task_of(cfg: DictConfig) -> str:
    """A task of `TASKS` (conf/task/), as `TaskChoice` declares it; one clear line for anything else."""
    name = (cfg.get("task") or {}).get("name", "lm")
    check_values(TaskChoice, {"name": name}, "task")
    return name


def resume_path_of(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from: `ckpt_path` if given; with `resume=auto` the run
    directory's `checkpoints/last.ckpt` when it exists; else None (a fresh run)."""
    if cfg.get("ckpt_path"):
        return Path(cfg.ckpt_path).expanduser()
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if cfg.get("resume") == "auto" and last.is_file() else None


def prepare_run_dir(run_dir: Path, resume_from: Path | None) -> None:
    """Make sure `run_dir` can be written and holds no earlier run's checkpoints, unless this run
    continues from one of them: nothing already saved is overwritten by a fresh run."""
    check_run_place(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise RunDirError(
            f"run directory {run_dir} cannot be written ({e.strerror or e}); pass run_dir=... "
            f"(or hydra.run.dir=...) on a writable disk"
        ) from None
    ckpt_dir = run_dir / "checkpoints"
    existing = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    continuing = resume_from is not None and resume_from.resolve().parent == ckpt_dir.resolve()
    if existing and not continuing:
        raise RunDirError(
            f"run directory {run_dir} already holds checkpoints of an earlier run ({', '.join(existing)}); "
            f"pass resume=auto to continue it, or choose another run_dir / hydra.run.dir"
        )
    lock_run_dir(run_dir)  # one run at a time in a directory, until train returns (training/lock.py)


# the run directories (and sweep directories) this process created, resolved
_made: set[Path] = set()
# what a run writes into its directory by itself, besides Hydra's `<job>.log`
RUN_FILES = {".hydra", "tensorboard", "checkpoints", LOCK_FILE}


def note_if_new(folder: Path) -> None:
    """Remember `folder` as made by this process if it does not exist yet (it is about to be)."""
    if not folder.exists():
        _made.add(folder.resolve())


def made_by_this_process(run_dir: Path) -> bool:
    """Whether this process creates `run_dir`: it does not exist yet, or it (or the sweep folder
    holding it) was noted before Hydra made it."""
    resolved = run_dir.resolve()
    return not run_dir.exists() or any(p in _made for p in (resolved, *resolved.parents))


@contextlib.contextmanager
def removed_if_no_step(run_dir: Path, made: bool) -> Iterator[list[L.Trainer]]:
    """Remove `run_dir` when the run fails before its first optimizer step (a corpus that does not
    download, a bad option found late), so no empty run is left for `report` to list. Only a folder
    this process created, holding only what a run writes itself and no checkpoint, is removed."""
    started: list[L.Trainer] = []
    try:
        yield started
    except BaseException:
        if made and rank_zero_only.rank == 0 and not any(t.global_step for t in started):
            remove_unstarted(run_dir)
        raise


def remove_unstarted(run_dir: Path) -> None:
    entries = {p.name for p in run_dir.iterdir() if not p.name.endswith(".log")} if run_dir.is_dir() else set()
    ckpts = list((run_dir / "checkpoints").glob("*")) if (run_dir / "checkpoints").is_dir() else []
    if entries <= RUN_FILES and not ckpts:
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("removed %s: the run failed before its first step", run_dir)


class RunDirCheck(Callback):
    """A Hydra callback (conf/train.yaml, hydra.callbacks) that checks the run directory before
    Hydra creates it and writes `.hydra/` and `train.log` into it: an unwritable directory, or a
    fresh run pointed at an earlier run's directory, is one line and exit code 2 with the earlier
    run's files untouched. `train` checks the same again for callers outside Hydra."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP worker joins rank 0's directory
            return
        check_before_folder(config)
        run_dir = Path(str(config.hydra.run.dir))
        note_if_new(run_dir)
        try:
            prepare_run_dir(run_dir, resume_path_of(config, run_dir))
        except RunDirError as e:
            fail(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        note_if_new(Path(str(config.hydra.sweep.dir)))  # then every job folder in it is this sweep's


def check_before_folder(config: DictConfig) -> None:
    """The composed options against their declarations, before Hydra makes the run folder: a
    wrong value is one line and exit code 2 with nothing written (the traceback with
    HYDRA_FULL_ERROR=1). An interpolation only a running job resolves (`${hydra:...}`) leaves the
    check to the job, which runs it again (`preflight`)."""
    task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    try:
        check_finite_options(task)
        check_composed(task, "train")
    except ConfigError as e:
        if FULL_ERROR_ASKED[0]:  # Hydra turns a callback's exception into a warning: print it here
            traceback.print_exc()
            raise SystemExit(1) from e
        fail(one_line(e))
    except OmegaConfBaseException:
        return


@holds_run_dir
def train(cfg: DictConfig) -> dict:
    """Train one model as `cfg` says and return its summary (best val loss, checkpoint paths)."""
    quiet_libraries()
    run_dir = run_dir_of(cfg)
    made = made_by_this_process(run_dir)
    with removed_if_no_step(run_dir, made) as started:
        preflight(cfg)
        resume_from = resume_path_of(cfg, run_dir)
        prepare_run_dir(run_dir, resume_from)
        set_matmul_precision(cfg.get("matmul_precision", "high"), cfg.trainer.get("accelerator"))
        if cfg.get("keep_freed_memory", True):
            keep_freed_memory()
        L.seed_everything(cfg.seed, workers=True, verbose=False)

        datamodule, module = build_task(cfg)
        check_sample_prompt(cfg, module)
        if cfg.get("compile"):
            module.model.compile()  # in place: state_dict names stay those of the plain model
        log_model(module)
        trainer, parts = make_trainer(cfg, run_dir, module)
        started.append(trainer)
        if resume_from is not None:
            hand_over_checked(cfg, resume_from, trainer, module, parts)
        start = time.perf_counter()
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        except TrainingDiverged as e:
            kept = parts.last.path if parts.last.path.is_file() else None
            raise TrainingDiverged(f"{e}; last good checkpoint: {kept or 'none yet'}") from None
    summary = summarize(cfg, trainer, module, parts, run_dir, time.perf_counter() - start)
    if trainer.is_global_zero:
        finish(cfg, module, run_dir, summary)
        report_results(summary, parts.stop.received, task_of(cfg))
    return summary


def hand_over_checked(cfg: DictConfig, resume_from: Path, trainer: L.Trainer, module: L.LightningModule, parts) -> None:
    """Check the checkpoint a run resumes from and hand Lightning the checked dict, so that it
    resumes from what was validated, not from the file read again (training/resume.py)."""
    vision = getattr(module, "vision_config", None)  # a caption model's image patches
    ckpt = check_resumable(
        resume_from,
        module.tokenizer.serialize(),
        module.config.to_dict(),
        module.state_dict(),
        task_of(cfg),
        vision,
    )
    check_resumed_options(cfg, read_meta(ckpt, resume_from).run_config, resume_from)
    trainer.strategy.checkpoint_io.hand_over(
        resume_from, checked_resume(ckpt, resume_from, trainer, module, parts.best)
    )
    log.info("resuming from %s at step %d", resume_from, ckpt["global_step"])


# the options a resumed run takes from its checkpoint (the optimizer's and the schedule's state,
# the data's position), so a different value on the command line could not apply: the groups and
# keys compared, and the keys of them that change nothing the run computes
RESUMED_OPTIONS = ("seed", "optim", "scheduler", "data", "task", "trainer.accumulate_grad_batches")
FREE_OPTIONS = ("data.path", "data.num_workers", "data.eval_batch_size", "data.val_windows")


def check_resumed_options(cfg: DictConfig, saved: dict | None, path: Path) -> None:
    """A resumed run continues exactly as it was saved: one line naming each option given another
    value than the checkpoint's run had (`optim.lr=3`), which resuming would silently ignore."""
    if not saved:
        return
    mine, was = flat_options(OmegaConf.to_container(cfg, resolve=True)), flat_options(saved)
    changed = [
        f"{name}={value!r} (the checkpoint's run: {printable(repr(was.get(name)), 60)})"
        for name, value in mine.items()
        if any(name == k or name.startswith(f"{k}.") for k in RESUMED_OPTIONS)
        and name not in FREE_OPTIONS
        and was.get(name) != value
    ]
    if changed:
        raise ConfigError(
            f"resuming from {path} continues its run as it was saved, so {', '.join(changed[:4])} would be "
            f"ignored; drop {'them' if len(changed) > 1 else 'it'} to resume, or start a new run in another run_dir"
        )


def flat_options(node: object) -> dict[str, object]:
    """`{"optim.lr": 0.001, ...}`: the leaves of a plain config (nested dicts) under dotted names.
    Walked without recursion: a checkpoint's run config may be nested arbitrarily deep."""
    out: dict[str, object] = {}
    stack: list[tuple[str, object]] = [("", node)]
    while stack:
        prefix, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{prefix}.{key}" if prefix else str(key), value) for key, value in item.items())
        else:
            out[prefix] = item
    return out


def check_sample_prompt(cfg: DictConfig, module: L.LightningModule) -> None:
    """The end-of-run sample's prompt must be in the corpus's vocabulary (checked before training)."""
    sample = cfg.get("sample") or {}
    prompt = sample.get("prompt")
    if task_of(cfg) != "lm" or not sample.get("max_new_tokens") or not prompt:
        return
    unknown = module.tokenizer.unknown_chars(str(prompt))
    if unknown:
        raise VocabularyError(
            f"sample.prompt has {len(unknown)} character(s) outside the corpus's vocabulary: "
            f"{' '.join(repr(c) for c in unknown)}; change sample.prompt (the end-of-run sample)"
        )


def log_model(module: L.LightningModule) -> None:
    """One line: the architecture, its parameter count (without position embeddings, as nanoGPT
    counts) and its shape."""
    keys = ("n_layer", "n_head", "n_embd", "block_size", "pos_encoding", "vocab_size")
    shape = {k: v for k, v in module.config.to_dict().items() if k in keys}
    log.info(
        "model: %s, %s parameters (%s with position embeddings), %s",
        type(module.model).__name__,
        f"{module.model.num_params():,}",
        f"{module.model.num_params(non_embedding=False):,}",
        ", ".join(f"{k}={v}" for k, v in shape.items()),
    )


@dataclass
class RunParts:
    """The callbacks `train` reads after fitting: best and last checkpoints, and the signal stop."""

    best: ModelCheckpoint
    last: LastCheckpoint
    stop: GracefulStop
    monitor: str


def make_trainer(cfg: DictConfig, run_dir: Path, module: L.LightningModule) -> tuple[L.Trainer, RunParts]:
    """The Trainer with the run's logger, checkpoints and callbacks (conf/trainer, conf/callbacks)."""
    monitor = (cfg.get("task") or {}).get("monitor", "val/loss")  # what best.ckpt is best at
    parts = RunParts(
        best=ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode="max" if monitor.endswith("acc") else "min",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        last=LastCheckpoint(run_dir / "checkpoints", (cfg.get("checkpoint") or {}).get("every_n_steps", 100)),
        stop=GracefulStop(),
        monitor=monitor,
    )
    callbacks = [parts.best, parts.last, parts.stop, StepSeed(cfg.seed), ValidateAtEnd(), ValidationLog()]
    callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(TrainProgressBar())
    if rank_zero_only.rank == 0:  # other DDP ranks have no TensorBoard writer
        swept = [o.split("=", 1)[0].lstrip("+~") for o in swept_overrides()]
        callbacks.append(HParamsSummary(module.hparams.run_config, swept))
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = RunLogger(save_dir=str(run_dir), name="tensorboard", version=run_name(), default_hp_metric=False)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[SafeCheckpointIO()],
        _convert_="all",  # max_time={seconds: 90} reaches Lightning as a plain dict
    )
    return trainer, parts


class RunLogger(TensorBoardLogger):
    """TensorBoard without Lightning's `epoch` scalar (the stream of training windows is endless,
    so the epoch is always 0 and its chart would only push the loss charts aside), with each metric
    under its TensorBoard tag (`tensorboard_tag`: `val/loss` as `eval/loss`, the first chart)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics({tensorboard_tag(k): v for k, v in metrics.items() if k != "epoch"}, step)


def run_name() -> str:
    """The TensorBoard run's folder under `tensorboard/`: in a sweep, the job's swept values
    (`model.pos_encoding=rope`), so TensorBoard's legend says which job is which; else none."""
    return ",".join(swept_overrides()).replace("/", "_")[:200]


def summarize(
    cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, parts: RunParts, run_dir: Path, seconds: float
) -> dict:
    """The run's results, as summary.json and the sweepers read them."""
    best = parts.best.best_model_score
    if parts.monitor != "val/loss":  # best.ckpt is the best at another metric; the lowest loss is the module's
        best = module.best_val_loss if math.isfinite(module.best_val_loss) else None
    summary = {
        "best_val_loss": float(best) if best is not None else math.nan,
        "best_val_bpc": float(best) / math.log(2) if best is not None else math.nan,
        "val_loss": float(trainer.callback_metrics["val/loss"]) if "val/loss" in trainer.callback_metrics else None,
        "steps": trainer.global_step,
        "stopped_by": parts.stop.received,
        "train_seconds": round(seconds, 1),
        "matmul_precision": torch.get_float32_matmul_precision(),  # what matmul_precision=auto chose
        "parameters": module.model.num_params(),
        "best_ckpt": parts.best.best_model_path,
        "last_ckpt": str(parts.last.path),
        "run_dir": str(run_dir),
        # what the symptoms callback named (docs/debugging.md): empty when the run looked healthy
        "symptoms": [f.message() for c in trainer.callbacks if isinstance(c, Symptoms) for f in c.findings],
    }
    if task_of(cfg) != "lm":  # a classifier's loss is over labels: bits per character mean nothing
        del summary["best_val_bpc"]
    if parts.monitor != "val/loss":  # e.g. best_val_acc of a classifier
        score = parts.best.best_model_score
        summary[f"best_{parts.monitor.replace('/', '_')}"] = float(score) if score is not None else math.nan
    return summary


# what to run next with a task's best checkpoint
NEXT_COMMAND = {
    "lm": 'python generate.py ckpt={} prompt="ROMEO:"',
    "classify": 'python -m minigpt classify ckpt={} text="..."',
    "caption": "python -m minigpt caption ckpt={}",
}


def report_results(summary: dict, stopped_by: str | None, task: str = "lm") -> None:
    """Tell the user where the results are and what to run next, ready to paste."""
    run_dir = summary["run_dir"]
    if stopped_by:
        log.warning(
            "stopped by %s at step %d; continue with: python train.py resume=auto run_dir=%s",
            stopped_by,
            summary["steps"],
            run_dir,
        )
    log.info("run folder: %s (%d steps in %.0f s)", run_dir, summary["steps"], summary["train_seconds"])
    if summary["best_ckpt"]:
        log.info("best checkpoint: %s (val loss %.4f)", summary["best_ckpt"], summary["best_val_loss"])
        log.info("next: %s", NEXT_COMMAND[task].format(summary["best_ckpt"]))
    log.info("      tensorboard --logdir %s", run_dir)


def finish(cfg: DictConfig, module: LitGPT, run_dir: Path, summary: dict) -> None:
    """Write the run's summary, loss curve and a sample from the final model."""
    # TextSamples wrote the final sample into the run's TensorBoard file before the logger closed;
    # without that callback (callbacks=none) it is made here, for sample.txt only
    sampler = next((c for c in module.trainer.callbacks if isinstance(c, TextSamples)), None)
    text = sampler.final_text if sampler is not None else final_sample(module, cfg.get("sample") or {}, cfg.seed)
    if text is not None:
        (run_dir / "sample.txt").write_text(text)
        summary["sample"] = text
    c = module.config
    title = f"{cfg.get('task_name', 'train')}: {type(module.model).__name__}, {c.n_layer} layers x {c.n_embd}, "
    title += f"{summary['steps']} steps"
    curve = plot_loss_curve(run_dir / "tensorboard", run_dir / "loss_curve.png", title=title)
    summary["loss_curve"] = str(curve) if curve else None
    # a metric that was never measured (no validation before a stop) is null
    (run_dir / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
