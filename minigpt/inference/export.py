"""Export a checkpoint's logits function to a file that runs without minigpt.

    python -m minigpt export ckpt=.../best.ckpt format=exported   # torch.export program, .pt2
    python -m minigpt export ckpt=.../best.ckpt format=onnx       # ONNX, for any ONNX runtime

What is exported is `model(idx)` without a KV cache: int64 token ids (batch, seq) in, float32
logits (batch, seq, vocab_size) out, for any batch size and any seq from 1 to block_size.
Next to the file, `<file>.json` holds the vocabulary and the model config, so the export is
usable alone: encode text with the vocabulary, run the file, decode the argmax or a sample.

Both formats start from one `torch.export` program. TorchScript is not offered: torch 2.13
deprecates `torch.jit`, `torch.jit.script` cannot compile the model, and `torch.jit.trace`
would freeze the Python branches on the traced length.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig

from minigpt.architectures import arch_of
from minigpt.checkpoint.format import LoadedModel, tokenizer_entry
from minigpt.checkpoint.load import load_model
from minigpt.cli import require
from minigpt.configs import check_composed
from minigpt.errors import ConfigError, MinigptError
from minigpt.io import check_writable

FORMATS = {"exported": ".pt2", "onnx": ".onnx"}
EXPORT_EXTRA = 'pip install -e ".[export]"'


def check_format(fmt: str) -> str:
    """`fmt` if it is a format we export to, else one line listing the choices."""
    if fmt == "torchscript":
        raise ConfigError(
            "format=torchscript is not offered: torch.jit is deprecated and cannot script this model; "
            "use format=exported (torch.export) or format=onnx"
        )
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    return fmt


def require_onnx() -> None:
    """Import the packages ONNX export needs, or say in one line how to install them."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MinigptError(f"format=onnx needs the package(s) {', '.join(missing)}: {EXPORT_EXTRA}")


def export_program(model: nn.Module) -> torch.export.ExportedProgram:
    """`model(idx)` as a torch.export program with a dynamic batch and a dynamic length
    1..block_size (a longer input fails the program's own shape check)."""
    block_size = model.config.block_size
    # an example dimension of size 1 would be taken for a constant, so the example is 2 x block_size/2
    length = min(block_size, max(2, block_size // 2))
    example = torch.zeros(2, length, dtype=torch.long, device=next(model.parameters()).device)
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=1, max=block_size) if block_size > 1 else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch, 1: seq},))


def save_exported(program: torch.export.ExportedProgram, path: Path) -> None:
    # opened here, so a folder that cannot be written is an OSError naming it, not torch's RuntimeError
    with open(path, "wb") as f:
        torch.export.save(program, f)


def save_onnx(program: torch.export.ExportedProgram, path: Path) -> None:
    """The program translated to ONNX, weights inside the one file; input `idx`, output `logits`."""
    # the exporter logs that it skips torchvision's operators, which we do not use
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        onnx_program = torch.onnx.export(
            program, dynamo=True, input_names=["idx"], output_names=["logits"], verbose=False
        )
    onnx_program.save(path, external_data=False)


SAVERS = {"exported": save_exported, "onnx": save_onnx}


def metadata(loaded: LoadedModel, fmt: str, path: Path) -> dict:
    """What a user of the exported file needs besides it: vocabulary, model config, signature."""
    config = loaded.model.config
    return {
        "format": fmt,
        "file": path.name,
        "checkpoint": str(loaded.path),
        "torch_version": torch.__version__,
        "input": {"name": "idx", "dtype": "int64", "shape": ["batch", "seq"], "seq_max": config.block_size},
        "output": {"name": "logits", "dtype": "float32", "shape": ["batch", "seq", config.vocab_size]},
        "arch": arch_of(loaded.model),
        "model_config": config.to_dict(),
        **tokenizer_entry(loaded.meta.tokenizer),  # "vocab" (characters) or "tokenizer" (BPE), as in the checkpoint
    }


def sidecar(path: Path) -> Path:
    """The JSON written next to an export: `best.onnx` -> `best.onnx.json`."""
    return path.with_name(path.name + ".json")


def check_out(out: Path, ckpt: Path, fmt: str, force: bool) -> None:
    """One line for an `out` that would lose something or be misnamed: the checkpoint itself, an
    existing file (unless `force`), a suffix of the other format, or a place that cannot be written."""
    suffix = FORMATS[fmt]
    if out.is_dir():
        raise ConfigError(f"out={out} is a directory; give a file name such as {out / ('model' + suffix)}")
    for target in (out, sidecar(out)):
        if target.resolve() == ckpt.resolve() or (target.exists() and ckpt.exists() and target.samefile(ckpt)):
            raise ConfigError(
                f"out={out} would overwrite the checkpoint {ckpt}; pass out= another file, such as "
                f"{ckpt.with_suffix(suffix)}"
            )
    if out.suffix.lower() != suffix:
        other = next((f for f, s in FORMATS.items() if s == out.suffix.lower()), None)
        if other:
            raise ConfigError(
                f"out={out} ends in {out.suffix}, the suffix of format={other}, but format={fmt} writes a "
                f"{suffix} file; pass out={out.with_suffix(suffix)}, or format={other}"
            )
        raise ConfigError(
            f"out={out} must end in {suffix} for format={fmt}; pass out={out.with_name(out.name + suffix)}"
        )
    existing = [str(p) for p in (out, sidecar(out)) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise ConfigError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass force=true to "
            f"overwrite, or another out="
        )
    check_writable(out, "out")


def export(loaded: LoadedModel, fmt: str, path: Path) -> Path:
    """Write `loaded.model`'s logits function as `fmt` to `path`, and its metadata next to it.
    Both files are written under temporary names first, so a failure leaves neither behind."""
    check_format(fmt)
    if fmt == "onnx":
        require_onnx()
    if arch_of(loaded.model) != "gpt":
        raise ConfigError(
            f"export takes GPT checkpoints; this one is model.arch={arch_of(loaded.model)}, whose nn.LSTM "
            f"torch.export fixes to the example's length"
        )
    program = export_program(loaded.model)
    info = sidecar(path)
    # hidden temporary names beside the targets, renamed when complete: an interrupted or failed
    # export leaves no partial file and an earlier export (force=true) intact until then
    tmp_model, tmp_info = (p.with_name(f".tmp-{p.name}") for p in (path, info))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        SAVERS[fmt](program, tmp_model)
        tmp_info.write_text(json.dumps(metadata(loaded, fmt, path), indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp_model, path)
        os.replace(tmp_info, info)
    except OSError as e:
        raise MinigptError(
            f"cannot write out={path} ({e.strerror or e}); pass out= in a writable folder with free space"
        ) from None
    finally:
        for tmp in (tmp_model, tmp_info):
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return path


def run(cfg: DictConfig) -> Path:
    """Export `cfg.ckpt` as `cfg.format` to `cfg.out` (default: next to the checkpoint)."""
    ckpt = require(cfg, "ckpt", "pass ckpt=outputs/train/runs/<time>/checkpoints/best.ckpt")
    fmt = check_format(cfg.format)
    if fmt == "onnx":
        require_onnx()  # before the (slower) checkpoint load
    check_composed(cfg, "export")  # types and choices, as ExportOptions declares them
    force = cfg.get("force", False)
    ckpt_path = Path(ckpt).expanduser()
    out = Path(cfg.out).expanduser() if cfg.get("out") else ckpt_path.with_suffix(FORMATS[fmt])
    check_out(out, ckpt_path, fmt, force)  # before the checkpoint load and the export
    loaded = load_model(ckpt, "cpu")
    export(loaded, fmt, out)
    block_size = loaded.model.config.block_size
    print(
        f"[minigpt] wrote {out} ({out.stat().st_size:,} bytes) and {sidecar(out).name}: "
        f"logits = f(idx), idx int64 (batch, 1..{block_size})",
        file=sys.stderr,
    )
    return out
