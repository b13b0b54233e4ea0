"""Training the sequence classifier (minigpt/classifier.py) on a pre-trained GPT:
`python train.py task=classify init_from=...`. Using it, `python -m minigpt classify`, is
minigpt/inference/classify.py.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics.classification import MulticlassAccuracy

from minigpt.checkpoint.format import CHECKPOINT_KEY, ClassifierMeta, read_meta
from minigpt.checkpoint.init_from import use_pretrained
from minigpt.classifier import POOLINGS, label_head, pool
from minigpt.cli import build
from minigpt.errors import ConfigError
from minigpt.training.module import LitGPT

MONITORS = ("val/acc", "val/loss")


class LitClassifier(LitGPT):
    """A LitGPT whose loss is over labels: the GPT trunk (`model`, its `lm_head` unused) reads
    the text, `pool` makes one vector of it and `head` scores each label, as `Classifier`
    (minigpt/classifier.py) does with the same weight names.

    Optimizer, schedule, the stop on a non-finite loss and checkpoint metadata are LitGPT's; the checkpoint
    adds the labels and the pooling, so `load_classifier` (minigpt/inference/classify.py) rebuilds
    a `Classifier` from it alone, and it still holds a complete language model (`generate.py` and
    `init_from` read the trunk).
    """

    # what TensorBoard's HPARAMS tab shows beside each run (minigpt/callbacks.py HParamsSummary)
    hparam_metrics = ("val/loss", "val/acc", "val/best_loss", "val/best_acc")

    def __init__(
        self,
        model: dict,
        vocab: list[str] | dict,
        labels: list[str],
        optim: dict,
        scheduler: dict | None = None,
        run_config: dict | None = None,
        pooling: str = "last",
        freeze_trunk: bool = False,
    ) -> None:
        super().__init__(model, vocab, optim, scheduler, run_config)
        if pooling not in POOLINGS:
            raise ConfigError(f"task.pooling={pooling!r} is unknown; choose one of {', '.join(POOLINGS)}")
        if not hasattr(self.model, "hidden_states"):
            raise ConfigError(f"task=classify needs a GPT trunk; {type(self.model).__name__} has no hidden states")
        self.labels, self.pooling, self.freeze_trunk = list(labels), pooling, freeze_trunk
        self.head = label_head(self.config.n_embd, len(self.labels))
        if freeze_trunk:
            self.model.requires_grad_(False)
        self.accuracy = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes=len(self.labels), average="micro") for stage in ("val", "test")}
        )
        self.best_val_acc = 0.0
        # one unpadded window and its mask: the model summary's FLOP count (LitGPT's has no mask)
        ids = self.example_input_array
        self.example_input_array = (ids, torch.ones_like(ids, dtype=torch.bool))

    def forward(self, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Label logits (B, n_labels) for right-padded token ids (B, T) and their mask (B, T)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_trunk):
            hidden = self.model.hidden_states(idx)  # (B, T, C)
        return self.head(pool(hidden, mask, self.pooling))

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        idx, mask, y = batch
        logits = self(idx, mask)
        loss = F.cross_entropy(logits, y)
        if stage == "train":
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        else:
            self.eval_loss[stage].update(loss.detach(), weight=y.numel())
            self.accuracy[stage].update(logits.detach(), y)
        return loss

    def _end_eval(self, stage: str) -> None:
        loss, acc = self.eval_loss[stage].compute(), self.accuracy[stage].compute()
        self.eval_loss[stage].reset()
        self.accuracy[stage].reset()
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{stage}/acc", acc, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        if stage == "val" and not self.trainer.sanity_checking:
            self.best_val_loss = min(self.best_val_loss, float(loss))
            self.best_val_acc = max(self.best_val_acc, float(acc))
            self.log("val/best_loss", self.best_val_loss, on_step=False, on_epoch=True)
            self.log("val/best_acc", self.best_val_acc, on_step=False, on_epoch=True)

    def param_groups(self) -> list[dict[str, Any]]:
        """LitGPT's groups for the trunk (none when it is frozen), plus the head: its matrix with
        the embeddings and the untied LM head (AdamW under Muon), its bias with the vectors."""
        groups = {g["kind"]: g for g in ([] if self.freeze_trunk else super().param_groups())}
        groups.setdefault("embedding", {"params": [], "kind": "embedding"})["params"].append(self.head.weight)
        groups.setdefault("vector", {"params": [], "kind": "vector", "weight_decay": 0.0})["params"].append(
            self.head.bias
        )
        return list(groups.values())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        record = ClassifierMeta(labels=self.labels, pooling=self.pooling, best_val_acc=self.best_val_acc)
        checkpoint[CHECKPOINT_KEY].update(record.to_dict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        record = read_meta(checkpoint, "being resumed").classifier
        self.best_val_acc = record.best_val_acc if record is not None else 0.0


def build_classifier(cfg: DictConfig) -> tuple[Any, LitClassifier]:
    """The labelled data module and a classifier whose trunk is `cfg.init_from`'s model."""
    if not cfg.get("init_from"):
        raise ConfigError(
            "task=classify needs init_from=<checkpoint>: the head is trained on a pre-trained trunk; "
            "train a language model first (python train.py ...) and pass its best.ckpt"
        )
    task = cfg.task
    if task.get("monitor") not in MONITORS:
        raise ConfigError(f"task.monitor={task.get('monitor')!r} is not an option; choose one of {', '.join(MONITORS)}")
    pretrained = use_pretrained(cfg)  # cfg.model is now the checkpoint's
    datamodule = build(cfg.data, tokenizer=pretrained.tokenizer)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = LitClassifier(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        vocab=pretrained.tokenizer.serialize(),
        labels=datamodule.labels,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        pooling=task.get("pooling", "last"),
        freeze_trunk=bool(task.get("freeze_trunk", False)),
    )
    module.model.load_state_dict(pretrained.model.state_dict())
    return datamodule, module
