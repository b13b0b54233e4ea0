"""Training the baby vision-language model (minigpt/vlm.py) on the digits (minigpt/data/digits.py):
`python train.py task=caption`. Using it, `python -m minigpt caption ckpt=...`, is
minigpt/inference/caption.py.

Validation counts an answer as right when every one of its tokens is the model's most likely
next token given the ones before: exactly when greedy decoding writes that answer, so the
accuracies are those of greedy captions, measured in one teacher-forced pass.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from minigpt.checkpoint.format import (
    CHECKPOINT_KEY,
    VLMMeta,
    read_meta,
)
from minigpt.cli import build
from minigpt.data.digits import (
    CAPTION_PROMPT,
    IGNORE,
    TASKS,
    answer,
    attention_views,
    caption_of,
)
from minigpt.errors import CheckpointError, ConfigError
from minigpt.figures import plot_captions
from minigpt.training.callbacks import EveryNValidations
from minigpt.training.module import LitGPT
from minigpt.vlm import IMAGE, VLM, VisionConfig

log = logging.getLogger("minigpt")

MONITORS = ("val/acc", "val/caption_acc", "val/plus_acc", "val/loss")


def answers_right(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) True where every answer token (targets != IGNORE) is the argmax of its logits (B, T, V)."""
    return ((logits.argmax(-1) == targets) | (targets == IGNORE)).all(1)


class LitVLM(LitGPT):
    """A LitGPT whose model also reads images (`VLM`): the loss is over the answers' tokens only,
    and validation measures each task's accuracy (`val/caption_acc`, `val/plus_acc`, their mean
    `val/acc`). The checkpoint adds the `VisionConfig` (format.py `VLMMeta`)."""

    hparam_metrics = ("val/loss", "val/acc", "val/caption_acc", "val/plus_acc", "hp/best_val_acc")

    def __init__(
        self,
        model: dict,
        vocab: list[str],
        vision: dict,
        optim: dict,
        scheduler: dict | None = None,
        run_config: dict | None = None,
    ) -> None:
        if model.get("arch", "gpt") != "gpt":
            raise ConfigError(f"task=caption reads images with a GPT; model.arch={model['arch']!r} cannot")
        super().__init__(model, vocab, optim, scheduler, run_config)
        self.vision_config = VisionConfig.from_dict(vision)
        if IMAGE not in self.tokenizer.token_texts():
            raise ConfigError(f"the vocabulary has no image mark {IMAGE!r}: it is not a vision-language vocabulary")
        # LitGPT built the text GPT; the VLM is the same decoder with the patch embedding added
        self.model = VLM(self.config, self.vision_config, self.tokenizer.encode(IMAGE)[0])
        self.accuracy = torch.nn.ModuleDict({f"{s}_{t}": MeanMetric() for s in ("val", "test") for t in TASKS})
        self.best_val_acc = 0.0

    def forward(self, idx: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(idx, images=images)

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        idx, targets, images, task = batch
        logits = self.model(idx, images=images)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        if stage == "train":
            self._log_loss(stage, loss.detach(), on_step=True)
            return loss
        self.eval_loss[stage].update(loss.detach(), weight=(targets != IGNORE).sum())
        right = answers_right(logits.detach(), targets).float()
        for t, name in enumerate(TASKS):
            if (task == t).any():
                self.accuracy[f"{stage}_{name}"].update(right[task == t])
        return loss

    def _end_eval(self, stage: str) -> None:
        super()._end_eval(stage)
        accs = {}
        for name in TASKS:
            accs[name] = float(self.accuracy[f"{stage}_{name}"].compute())
            self.accuracy[f"{stage}_{name}"].reset()
            self.log(f"{stage}/{name}_acc", accs[name], on_step=False, on_epoch=True)
        self.log(f"{stage}/acc", sum(accs.values()) / len(accs), prog_bar=True, on_step=False, on_epoch=True)
        if stage == "val" and not self.trainer.sanity_checking:
            self.best_val_acc = max(self.best_val_acc, sum(accs.values()) / len(accs))
            self.log("hp/best_val_acc", self.best_val_acc, on_step=False, on_epoch=True)
            if self.trainer.is_global_zero:
                shown_accs = " | ".join(f"{task} accuracy {acc:.3f}" for task, acc in accs.items())
                log.info("step %d | %s", self.global_step, shown_accs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY].update(VLMMeta(vision=self.vision_config, best_val_acc=self.best_val_acc).to_dict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        record = read_meta(checkpoint, "being resumed").vlm
        if record is None:
            raise CheckpointError("the checkpoint being resumed is not a vision-language model; start a new run")
        if record.vision != self.vision_config:
            raise CheckpointError(
                f"the checkpoint being resumed cuts images as {record.vision}, this run as {self.vision_config}; "
                f"resume with the same task.patch_size or start a new run"
            )
        self.best_val_acc = record.best_val_acc


def build_vlm(cfg: DictConfig) -> tuple[L.LightningDataModule, LitVLM]:
    """The digits data module and a vision-language model trained from scratch on it."""
    if cfg.get("init_from"):
        raise ConfigError("task=caption trains from scratch: its vocabulary is the captions'; drop init_from")
    if cfg.task.get("monitor") not in MONITORS:
        raise ConfigError(
            f"task.monitor={cfg.task.get('monitor')!r} is not an option; choose one of {', '.join(MONITORS)}"
        )
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = LitVLM(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        vocab=datamodule.tokenizer.serialize(),
        vision=datamodule.vision.to_dict(),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    return datamodule, module


class CaptionViews(EveryNValidations):
    """`view/captions`: validation images with their greedy captions (red when wrong);
    `view/image_attention/caption` and `.../plus`: where the answer's word looks in the images.
    Lightning has no callback that generates text, so this one does."""

    def __init__(self, every_n_val: int = 1, n_images: int = 24, n_attention: int = 6) -> None:
        super().__init__(every_n_val)
        self.n_images, self.n_attention = n_images, n_attention

    def record(self, writer, trainer, pl_module, step) -> None:
        dm = trainer.datamodule
        images, labels = dm.val_images[: self.n_images], dm.val_labels[: self.n_images]
        captions = answer(pl_module.model, pl_module.tokenizer, CAPTION_PROMPT, images[:, None])
        truths = [caption_of(label) for label in labels.tolist()]
        writer.add_figure("view/captions", plot_captions(images[:, 0], captions, truths, f"step {step}"), step)
        k = self.n_attention
        partner = (torch.arange(k) + 1) % k  # pairs among the first k images
        caption_fig, plus_fig = attention_views(pl_module.model, pl_module.tokenizer, images[:k], labels[:k], partner)
        writer.add_figure("view/image_attention/caption", caption_fig, step)
        writer.add_figure("view/image_attention/plus", plus_fig, step)
