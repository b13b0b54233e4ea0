"""Sequence classification on a pre-trained GPT: a pooling of its final hidden states and a
linear layer over the labels, trained by `python train.py task=classify init_from=...`, used by
`python -m minigpt classify ckpt=... text="..."`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics.classification import MulticlassAccuracy

from minigpt.checkpoint.format import CHECKPOINT_KEY, ClassifierMeta, field_error, read_checkpoint, read_meta, shown
from minigpt.checkpoint.init_from import use_pretrained
from minigpt.checkpoint.load import check_loadable
from minigpt.checkpoint.weights import load_weights
from minigpt.cli import build, require
from minigpt.data.labelled import encode_texts
from minigpt.errors import CheckpointError, ConfigError, VocabularyError
from minigpt.tokenizer import Tokenizer
from minigpt.training.module import LitGPT

POOLINGS = ("last", "mean")
MONITORS = ("val/acc", "val/loss")


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector (B, C) per text from hidden states (B, T, C) and its mask of real tokens (B, T).

    `last`: the last real position, the only one that has read the whole text in a causal model.
    `mean`: the average over real positions. Texts are right-padded, so padding never reaches a
    real position and both ignore it exactly.
    """
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1)
    last = mask.sum(1) - 1  # (B,) index of each text's last real token
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class LitClassifier(LitGPT):
    """A LitGPT whose loss is over labels: the GPT trunk (`model`, its `lm_head` unused) reads
    the text, `pool` makes one vector of it and `head` scores each label.

    Optimizer, schedule, divergence check and checkpoint metadata are LitGPT's; the checkpoint
    adds the labels and the pooling, so `load_classifier` rebuilds it alone, and it still holds a
    complete language model (`generate.py` and `init_from` read the trunk).
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
        self.head = nn.Linear(self.config.n_embd, len(self.labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
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


# --------------------------------------------------------------------------- using a classifier


@dataclass
class LoadedClassifier:
    """A trained classifier ready for inference, with its tokenizer and labels."""

    module: LitClassifier
    tokenizer: Tokenizer
    labels: list[str]
    path: Path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> LoadedClassifier:
    """Rebuild a classifier from a checkpoint of `train.py task=classify` (read with weights_only);
    every value is checked (`check_loadable`) before the classifier is built."""
    ckpt = read_checkpoint(path)
    meta, _, state = check_loadable(ckpt, path)
    if meta.classifier is None:
        raise CheckpointError(
            f"checkpoint {path} is not a classifier (no labels); pass a checkpoint of train.py task=classify"
        )
    pooling = meta.classifier.pooling
    if pooling not in POOLINGS:
        raise field_error(path, "pooling", f"must be one of {', '.join(POOLINGS)}, got {shown(pooling)}")
    if meta.model_config.get("arch", "gpt") != "gpt":
        raise field_error(path, "model_config.arch", "must be gpt: a classifier reads a GPT trunk's hidden states")
    module = LitClassifier(
        model=meta.model_config,
        vocab=meta.tokenizer,
        labels=meta.classifier.labels,
        optim={},
        pooling=pooling,
    )
    load_weights(module, state, f"checkpoint {path}", "its classifier config")
    module.to(device).eval()
    return LoadedClassifier(module=module, tokenizer=module.tokenizer, labels=module.labels, path=Path(path))


@torch.no_grad()
def classify_texts(classifier: LoadedClassifier, texts: list[str]) -> list[dict[str, float]]:
    """Each text's probability of every label, cut to block_size like the training texts; a
    character outside the vocabulary is one `VocabularyError` line."""
    for text in texts:
        if not text:
            raise VocabularyError("the text to classify is empty; pass some text")
        classifier.tokenizer.encode(text)  # raises, naming the unknown characters
    module = classifier.module
    device = next(module.parameters()).device
    ids, mask = encode_texts(texts, classifier.tokenizer, module.config.block_size)
    probs = module(ids.to(device), mask.to(device)).softmax(-1).cpu()
    return [dict(zip(classifier.labels, row.tolist(), strict=True)) for row in probs]


def run(cfg: DictConfig) -> dict[str, float]:
    """What `python -m minigpt classify` does: print the most likely label and every label's
    probability for `cfg.text`; return the probabilities."""
    classifier = load_classifier(require(cfg, "ckpt", "pass ckpt=outputs/<run>/checkpoints/best.ckpt"))
    text = require(cfg, "text", 'pass text="..."')
    (probs,) = classify_texts(classifier, [str(text)])
    best = max(probs, key=probs.get)
    width = max(len(label) for label in probs)
    print(best)
    for label, p in sorted(probs.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<{width}}  {p:.3f}")
    return probs
