"""Rebuilding a model from a checkpoint or a Hugging Face GPT-2 folder, and checking that a
checkpoint can resume a training run."""

from __future__ import annotations

from pathlib import Path

import torch

from minigpt.architectures import build_model
from minigpt.checkpoint import gpt2
from minigpt.checkpoint.format import CHECKPOINT_KEY, FORMAT_VERSION, LoadedModel, read_checkpoint
from minigpt.errors import CheckpointError, ConfigError, MinigptError
from minigpt.tokenizer import serialized_of_meta, tokenizer_from_serialized


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the trained GPT and its tokenizer from a training checkpoint, or from a Hugging
    Face GPT-2 folder (one holding config.json, read by minigpt/gpt2.py)."""
    if gpt2.is_hf_folder(path):
        return gpt2.load_gpt2(path, device)
    ckpt = read_checkpoint(path)
    meta = ckpt.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict) or "model_config" not in meta or serialized_of_meta(meta) is None:
        raise CheckpointError(
            f"checkpoint {path} has no minigpt metadata (model config and vocabulary); "
            f"it was not written by minigpt's train.py"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, this minigpt reads version {FORMAT_VERSION}; "
            f"use the minigpt release that wrote it"
        )
    try:
        model = build_model(meta["model_config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} has an incompatible model config: {e}") from None
    config = model.config
    try:
        tokenizer = tokenizer_from_serialized(serialized_of_meta(meta))
    except MinigptError as e:
        raise CheckpointError(f"checkpoint {path} has an unusable tokenizer: {e}") from None
    if tokenizer.vocab_size != config.vocab_size:
        unit = "characters" if tokenizer.kind == "char" else "tokens"
        raise CheckpointError(
            f"checkpoint {path} is inconsistent: vocabulary of {tokenizer.vocab_size} {unit} "
            f"but a model for {config.vocab_size}"
        )
    state = {k.removeprefix("model."): v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("model.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a weight whose shape differs from the config's
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), "shape mismatch")
        raise CheckpointError(f"checkpoint {path} does not match its model config: {detail[:200]}") from None
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} weight(s) such as {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weight(s) such as {unexpected[0]}")
        raise CheckpointError(f"checkpoint {path} does not match its model config: {'; '.join(parts)}")
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, path=Path(path), meta=meta)


RESUME_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "global_step", CHECKPOINT_KEY)


def check_resumable(path: str | Path, vocab: list[str] | dict, model_config: dict, weight_names: set[str]) -> dict:
    """Read `path` safely and check that training can continue from it with this corpus,
    tokenizer (`vocab`, serialised) and model; each incompatibility is one `CheckpointError`
    line. Returns the checkpoint's dict."""
    ckpt = read_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} cannot resume training: it lacks {', '.join(missing)}; "
            f"resume from a last.ckpt written by minigpt's train.py"
        )
    meta = ckpt[CHECKPOINT_KEY]
    theirs = serialized_of_meta(meta) or []
    if isinstance(theirs, list) and isinstance(vocab, list) and theirs != vocab:
        new = [c for c in vocab if c not in set(theirs)]
        gone = [c for c in theirs if c not in set(vocab)]
        detail = "; ".join(
            part
            for part in (
                f"the corpus adds {' '.join(map(repr, new[:10]))}" if new else "",
                f"the corpus lacks {' '.join(map(repr, gone[:10]))}" if gone else "",
            )
            if part
        )
        raise CheckpointError(
            f"checkpoint {path} was trained on a vocabulary of {len(theirs)} characters, the corpus has "
            f"{len(vocab)} ({detail or 'in another order'}); resume with the same corpus or start a new run"
        )
    if theirs != vocab:  # a BPE tokenizer on either side: trained on another corpus or with other options
        raise CheckpointError(
            f"checkpoint {path} was trained with {_describe_tokenizer(theirs)}, this run has "
            f"{_describe_tokenizer(vocab)}; resume with the same corpus and data.tokenizer options"
        )
    config = meta.get("model_config") or {}
    diff = [f"{k}={config.get(k)!r} vs {v!r}" for k, v in model_config.items() if config.get(k) != v]
    if diff:
        raise CheckpointError(
            f"checkpoint {path} holds another model than the config ({', '.join(diff[:4])}: checkpoint vs config); "
            f"resume with the same model options or start a new run"
        )
    names = set(ckpt["state_dict"])
    if names != weight_names:
        lost, extra = sorted(weight_names - names), sorted(names - weight_names)
        what = f"is missing {len(lost)} weight(s) such as {lost[0]}" if lost else f"has {len(extra)} unknown weight(s)"
        raise CheckpointError(f"checkpoint {path} {what}; it cannot resume this model")
    return ckpt


def _describe_tokenizer(serialized: list[str] | dict) -> str:
    if isinstance(serialized, list):
        return f"a character vocabulary of {len(serialized)}"
    try:
        tokenizer = tokenizer_from_serialized(serialized)
    except MinigptError:
        return "an unreadable tokenizer"
    return f"a {tokenizer.kind} tokenizer of {tokenizer.vocab_size} tokens"
