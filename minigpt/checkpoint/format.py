"""The checkpoint format: what a minigpt checkpoint holds under its `minigpt` key, and reading
a checkpoint file safely (tensors and plain values only, never code)."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.errors import CheckpointError
from minigpt.model import GPT
from minigpt.tokenizer import Tokenizer

CHECKPOINT_KEY = "minigpt"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A model ready for inference with the tokenizer and run config it was trained with."""

    model: GPT
    tokenizer: Tokenizer
    path: Path
    meta: dict


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's dict, loaded with `weights_only=True`: a file that would need to run
    code to unpickle (a crafted payload, or an object we never save) is refused."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt=outputs/<run>/checkpoints/last.ckpt")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass the .ckpt file inside it")
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"checkpoint {path} refers to code or objects that are not plain data ({_offender(e)}); "
                f"it was refused because loading it could run code. Only load checkpoints you trust "
                f"written by minigpt"
            ) from None
        raise CheckpointError(f"checkpoint {path} is not a valid checkpoint ({first})") from None
    except Exception as e:  # torch.load fails in many ways on a file that is not a checkpoint
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({first}); use another checkpoint") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a minigpt checkpoint")
    return ckpt


def _check_archive(path: Path) -> None:
    """torch.save writes a zip archive holding `<name>/data.pkl`; anything else (a truncated
    download, a text file, an exported .pt2 or .onnx) is named for what it is before torch.load
    tries to unpickle it."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated, or not a checkpoint at all (train.py writes zip "
            f"archives and this is not one); use another checkpoint"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({e}); use another checkpoint") from None
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise CheckpointError(
            f"checkpoint {path} is a zip archive but not a PyTorch checkpoint (an exported .pt2 is for "
            f"deployment, not for minigpt's tools); pass the .ckpt it was exported from"
        )


def _offender(e: Exception) -> str:
    for line in str(e).splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()[:160]
    return type(e).__name__
