"""How Lightning writes and reads checkpoint files: atomically, never with non-finite weights,
and reading with `weights_only=True` (the same safe path as generate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from minigpt.checkpoint.format import read_checkpoint
from minigpt.checkpoint.weights import non_finite_weights
from minigpt.errors import CheckpointError, TrainingDiverged
from minigpt.io import atomic_write


def atomic_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through `atomic_write`: a crash or a full disk at any moment leaves either the
    old checkpoint or the new one, never half."""
    atomic_write(path, lambda f: torch.save(obj, f))


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with four guarantees: writes are atomic (`atomic_save`), weights
    with a NaN or an infinity are never written (the last good checkpoint stays), reading for
    resume refuses anything that is not plain data (`read_checkpoint`, weights_only=True), and a
    resume reads the dict `hand_over` gave it (checked by training/resume.py) instead of the file."""

    def __init__(self) -> None:
        super().__init__()
        self._checked: tuple[Path, dict] | None = None

    def hand_over(self, path: str | Path, checkpoint: dict) -> None:
        """Make the next read of `path` return `checkpoint`, the dict a resume checked: Lightning
        then restores what was validated, not what the file holds when it reads it again."""
        self._checked = (Path(path), checkpoint)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        bad = non_finite_weights(checkpoint.get("state_dict", {}))
        if bad:
            step = checkpoint.get("global_step", "?")
            raise TrainingDiverged(
                f"the weights are not finite at step {step} ({len(bad)} tensor(s), e.g. {bad[0]}); "
                f"{Path(path).name} was not written and the previous checkpoint is kept; lower optim.lr"
            )
        try:
            atomic_save(checkpoint, path)
        except OSError as e:
            raise CheckpointError(
                f"could not write checkpoint {path} ({e.strerror or e}); the previous checkpoint is intact; "
                f"free disk space or pass run_dir=... on a writable disk"
            ) from None

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if weights_only is False:
            raise CheckpointError(f"refusing to load {path} with weights_only=False: checkpoints must be plain data")
        if self._checked is not None:
            checked, checkpoint = self._checked
            if Path(path).expanduser().resolve() != checked.expanduser().resolve():
                raise RuntimeError(f"resuming from {path}, but {checked} was the checkpoint checked")
            self._checked = None
            return checkpoint
        return read_checkpoint(path, map_location=map_location if map_location is not None else "cpu")
