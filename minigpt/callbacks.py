"""Lightning callbacks that record a run for TensorBoard."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

# the scalars TensorBoard's HPARAMS tab shows next to each run's hyperparameters
HPARAM_METRICS = ("val/loss", "val/ppl", "val/bpc", "hp/best_val_loss")


def flatten(d: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    """{'model': {'n_layer': 4}} -> {'model.n_layer': 4}; other values become strings."""
    out: dict[str, int | float | str | bool] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class HParamsSummary(L.Callback):
    """Writes the run's resolved config into TensorBoard's HPARAMS tab, linked to the
    validation metrics, so every job of a sweep is one comparable row there."""

    def __init__(self, run_config: dict) -> None:
        self.params = flatten({k: v for k, v in run_config.items() if k != "hydra"})

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0:  # a resumed run already has its entry
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                for summary in hparams(self.params, {m: 0.0 for m in HPARAM_METRICS}):
                    writer.add_summary(summary)
