"""The LightningModule: owns the loss, the metrics, the optimizer and the schedule."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics import MeanMetric

from minigpt.architectures import arch_of, build_model
from minigpt.checkpoint.format import CHECKPOINT_KEY, CheckpointMeta, read_meta
from minigpt.errors import TrainingDiverged
from minigpt.tokenizer import tokenizer_from_serialized
from minigpt.training.budget import budget_progress, budget_timer

LN2 = math.log(2)

log = logging.getLogger("minigpt")


class LitGPT(L.LightningModule):
    """Trains a `GPT` on next-token prediction.

    Only plain values are saved as hyperparameters (dicts and lists), so a checkpoint rebuilds
    its model without any of the objects that made it. `vocab` is the tokenizer in that form
    (`Tokenizer.serialize()`): the character list, or a dict for a BPE tokenizer.
    """

    def __init__(
        self,
        model: dict,
        vocab: list[str] | dict,
        optim: dict,
        scheduler: dict | None = None,
        run_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = tokenizer_from_serialized(vocab)
        self.model = build_model({**model, "vocab_size": self.tokenizer.vocab_size})
        self.config = self.model.config
        # token-weighted mean of the loss over a whole evaluation pass
        self.eval_loss = torch.nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.best_val_loss = math.inf
        # one window of token ids: Lightning's model summary runs it once to count the FLOPs
        self.example_input_array = torch.zeros(1, self.config.block_size, dtype=torch.long)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        if stage == "train":
            self._log_loss(stage, loss.detach(), on_step=True)
        else:
            self.eval_loss[stage].update(loss.detach(), weight=y.numel())
        return loss

    def _log_loss(self, stage: str, loss: torch.Tensor, on_step: bool) -> None:
        """Loss in nats, perplexity e^loss and bits per character loss / ln 2. All three are per
        token: with a BPE tokenizer `bpc` is bits per token (see docs/beyond-training.md)."""
        kw = dict(on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/loss", loss, prog_bar=True, **kw)
        self.log(f"{stage}/ppl", torch.exp(loss), **kw)
        self.log(f"{stage}/bpc", loss / LN2, **kw)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):  # stop before the optimizer spreads it into the weights
            raise TrainingDiverged(
                f"the training loss is {loss.item()} at step {self.global_step}: training diverged; "
                f"lower optim.lr or trainer.gradient_clip_val"
            )
        return loss

    def on_validation_start(self) -> None:
        # losses are measured with full float32 products whatever matmul_precision trains with
        # ("medium" lets a CPU with AMX multiply in bfloat16), so runs that differ in it compare
        self._train_matmul_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def on_validation_end(self) -> None:
        torch.set_float32_matmul_precision(self._train_matmul_precision)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def _end_eval(self, stage: str) -> None:
        loss = self.eval_loss[stage].compute()
        self.eval_loss[stage].reset()
        self._log_loss(stage, loss, on_step=False)
        # plot validation at the step it measured (Lightning would use the count before the step)
        self.log("step", float(self.global_step), on_step=False, on_epoch=True)
        if stage == "val" and not self.trainer.sanity_checking:
            self.best_val_loss = min(self.best_val_loss, float(loss))
            self.log("val/best_loss", self.best_val_loss, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.hparams.optim)(self.param_groups())
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        make_scheduler = instantiate(self.hparams.scheduler)
        timer = budget_timer(self.trainer)
        if timer is not None:  # the schedule follows the clock and ends when the budget does
            scheduler = make_scheduler(optimizer, total_steps=self.trainer.max_steps, progress=budget_progress(timer))
        else:
            scheduler = make_scheduler(optimizer, total_steps=self.trainer.max_steps)
        # LearningRateMonitor (minigpt/training/run.py) logs each group's rate as train/lr/<kind>
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameters in three groups, tagged with `kind` for optimizers that treat them apart
        (MuonAdamW); AdamW and SGD ignore the tag.

        Weight decay applies to matrices only: biases and norm gains are 1-D, and pulling them
        towards zero only hurts; the short convolutions' few weights per channel go with them.
        """
        matrices = {  # the blocks' linear maps: what Muon orthogonalises
            id(m.weight)
            for name, m in self.model.named_modules()
            if name.startswith("transformer.h.") and isinstance(m, nn.Linear)
        }
        # how many linear maps each hidden matrix stacks: the attention's c_attn holds the queries,
        # keys and values (MuonAdamW's split_fused orthogonalises each on its own)
        fused = {id(m.weight) for name, m in self.model.named_modules() if name.endswith("attn.c_attn")}
        hidden, parts, embedding, vector = [], [], [], []
        for name, p in self.model.named_parameters():
            if id(p) in matrices:
                hidden.append(p)  # weight matrices inside the blocks
                parts.append(3 if id(p) in fused else 1)
            elif p.dim() < 2 or name.startswith("transformer.h."):
                vector.append(p)
            else:
                embedding.append(p)  # token/position embeddings and an untied LM head
        return [
            {"params": hidden, "kind": "hidden", "name": "hidden", "parts": parts},
            {"params": embedding, "kind": "embedding", "name": "embedding"},
            {"params": vector, "kind": "vector", "name": "vector", "weight_decay": 0.0},
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # everything generate.py needs, in plain types, independent of Lightning's own keys
        checkpoint[CHECKPOINT_KEY] = CheckpointMeta(
            model_config={"arch": arch_of(self.model), **self.config.to_dict()},
            tokenizer=self.tokenizer.serialize(),
            run_config=self.hparams.run_config,
            best_val_loss=self.best_val_loss,
        ).to_dict()
        # Lightning stores an AttributeDict; a plain dict keeps the file loadable with weights_only
        checkpoint["hyper_parameters"] = dict(checkpoint.get("hyper_parameters", {}))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        best = read_meta(checkpoint, "being resumed").best_val_loss  # checked: a number, or absent
        self.best_val_loss = math.inf if best is None else best
