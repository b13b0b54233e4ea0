"""One training run: config -> data, model, trainer -> fit -> checkpoint, sample, loss curve."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from minigpt.callbacks import HParamsSummary
from minigpt.cli import quiet_libraries, run_dir_of
from minigpt.errors import ConfigError
from minigpt.module import LitGPT
from minigpt.plots import plot_loss_curve
from minigpt.sampling import SamplingConfig, generate, make_generator

log = logging.getLogger("minigpt")


def build_module(cfg: DictConfig, vocab: list[str]) -> LitGPT:
    """The LightningModule for `cfg`, from plain values only."""
    run_config = OmegaConf.to_container(cfg, resolve=True)
    return LitGPT(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        vocab=vocab,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        run_config=run_config,
    )


def check_trainer_config(cfg: DictConfig) -> None:
    steps = cfg.trainer.get("max_steps", -1)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"trainer.max_steps must be a positive integer, got {steps!r}")
    interval = cfg.trainer.get("val_check_interval")
    if isinstance(interval, int) and interval > steps:
        raise ConfigError(
            f"trainer.val_check_interval={interval} is larger than trainer.max_steps={steps}: "
            f"the run would never validate; lower it"
        )


def train(cfg: DictConfig) -> dict:
    """Train one model as `cfg` says and return its summary (best val loss, checkpoint paths)."""
    quiet_libraries()
    check_trainer_config(cfg)
    run_dir = run_dir_of(cfg)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.tokenizer.chars)
    log.info(
        "model: %s parameters (%d layers, %d heads, %d wide, block %d, %s positions), vocab %d",
        f"{module.model.num_params():,}",
        module.config.n_layer,
        module.config.n_head,
        module.config.n_embd,
        module.config.block_size,
        module.config.pos_encoding,
        module.config.vocab_size,
    )

    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    best_ckpt = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    callbacks = [best_ckpt, HParamsSummary(module.hparams.run_config)]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir))

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - start

    best = best_ckpt.best_model_score
    summary = {
        "best_val_loss": float(best) if best is not None else math.nan,
        "best_val_bpc": float(best) / math.log(2) if best is not None else math.nan,
        "steps": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "parameters": module.model.num_params(),
        "best_ckpt": best_ckpt.best_model_path,
        "last_ckpt": best_ckpt.last_model_path,
        "run_dir": str(run_dir),
    }
    if trainer.is_global_zero:
        finish(cfg, module, run_dir, summary, logger)
    return summary


def finish(cfg: DictConfig, module: LitGPT, run_dir: Path, summary: dict, logger: TensorBoardLogger) -> None:
    """Write the run's summary, loss curve and a sample from the final model."""
    sample_cfg = cfg.get("sample") or {}
    if sample_cfg.get("max_new_tokens", 0) > 0:
        model = module.model.eval()
        tok = module.tokenizer
        prompt = sample_cfg.get("prompt") or "\n"
        ids = torch.tensor([tok.encode(prompt, unknown="skip") or [0]], device=module.device)
        out = generate(
            model,
            ids,
            sample_cfg.max_new_tokens,
            SamplingConfig(temperature=sample_cfg.temperature),
            generator=make_generator(cfg.seed, module.device),
        )
        text = tok.decode(out[0].tolist())
        (run_dir / "sample.txt").write_text(text)
        logger.experiment.add_text("sample/final", "    " + text.replace("\n", "\n    "), module.global_step)
        summary["sample"] = text
    curve = plot_loss_curve(run_dir / "tensorboard", run_dir / "loss_curve.png", title=f"{run_dir.name}")
    summary["loss_curve"] = str(curve) if curve else None
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
