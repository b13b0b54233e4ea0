"""Rebuilding a model from a checkpoint or a Hugging Face GPT-2 folder, and checking that a
checkpoint can resume a training run. Every value is checked (format.py, weights.py) before a
model is built from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from minigpt.architectures import build_model
from minigpt.checkpoint import gpt2
from minigpt.checkpoint.format import (
    CHECKPOINT_KEY,
    INT_LIMIT,
    CheckpointMeta,
    LoadedModel,
    field_error,
    first_line,
    printable,
    read_checkpoint,
    read_meta,
    shown,
)
from minigpt.checkpoint.weights import (
    check_forward,
    check_memory,
    check_tensor_values,
    check_tensors,
    check_weight_count,
    load_weights,
)
from minigpt.errors import CheckpointError, MinigptError
from minigpt.tokenizer import Tokenizer, tokenizer_from_serialized
from minigpt.vlm import VisionConfig

# the tool that uses a checkpoint of each task other than a language model's
TASK_TOOLS = {"classify": "python -m minigpt classify ckpt={}", "caption": "python -m minigpt caption ckpt={}"}


def load_model(path: str | Path, device: str | torch.device = "cpu", tasks: tuple[str, ...] = ("lm",)) -> LoadedModel:
    """Rebuild the trained model and its tokenizer from a training checkpoint, or from a Hugging
    Face GPT-2 folder (one holding config.json, read by gpt2.py). A checkpoint trained for a task
    not in `tasks` is refused naming its tool (a classifier's holds a language model, its trunk:
    `tasks=("lm", "classify")` takes it)."""
    if gpt2.is_hf_folder(path):
        return gpt2.load_gpt2(path, device)
    ckpt = read_checkpoint(path)
    meta, tokenizer, state = check_loadable(ckpt, path)
    check_task(meta, path, tasks)
    model = build_model(meta.model_config)
    load_weights(model, weights_under(state, "model."), f"checkpoint {path}", "its model config")
    model.eval()
    check_forward(model, f"checkpoint {path}")
    model.to(device)
    return LoadedModel(model=model, tokenizer=tokenizer, path=Path(path), meta=meta)


def task_of_meta(meta: CheckpointMeta) -> str:
    """`lm`, `classify` or `caption`: what the checkpoint was trained for (train.py task=...)."""
    return "classify" if meta.classifier is not None else "caption" if meta.vlm is not None else "lm"


def check_task(meta: CheckpointMeta, path: object, tasks: tuple[str, ...]) -> None:
    """Refuse a checkpoint trained for a task not in `tasks`, naming the tool it is for."""
    theirs = task_of_meta(meta)
    if theirs in tasks:
        return
    where = printable(str(path), 300)
    if theirs == "lm":
        raise CheckpointError(f"checkpoint {where} is a language model's, not a task={tasks[0]} checkpoint")
    raise CheckpointError(
        f"checkpoint {where} is a {'classifier' if theirs == 'classify' else 'caption'} checkpoint (train.py "
        f"task={theirs}), not a language model's: use `{TASK_TOOLS[theirs].format(where)}`"
    )


def check_loadable(ckpt: dict, path: object) -> tuple[CheckpointMeta, Tokenizer, dict[str, torch.Tensor]]:
    """A checkpoint's record, tokenizer and tensors, checked before anything is allocated: the model
    fits in free memory and matches its vocabulary and its stored weights, which are all finite."""
    meta = read_meta(ckpt, path)
    config = meta.config()
    where = f"checkpoint {path}: field {CHECKPOINT_KEY}.model_config"
    check_memory(config, where)
    tokenizer = tokenizer_of(meta, path)
    if tokenizer.vocab_size != config.vocab_size:
        unit = "characters" if tokenizer.kind == "char" else "tokens"
        raise CheckpointError(
            f"checkpoint {path} is inconsistent: vocabulary of {tokenizer.vocab_size} {unit} "
            f"but a model for {config.vocab_size}"
        )
    state = check_tensors(ckpt.get("state_dict", {}), f"checkpoint {path}")
    check_weight_count(config, weights_under(state, "model."), where)
    check_tensor_values(state, f"checkpoint {path}")
    return meta, tokenizer, state


def tokenizer_of(meta: CheckpointMeta, path: object) -> Tokenizer:
    """The tokenizer stored in a checked record; one that cannot be rebuilt is one line."""
    try:
        return tokenizer_from_serialized(meta.tokenizer)
    except MinigptError as e:
        name = "vocab" if isinstance(meta.tokenizer, list) else "tokenizer"
        raise field_error(path, name, f"is not a usable tokenizer ({first_line(e)})") from None


def weights_under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named `prefix...` (Lightning's `model.` for the network), without the prefix."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


RESUME_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "global_step", CHECKPOINT_KEY)


def check_resumable(
    path: str | Path,
    vocab: list[str] | dict,
    model_config: dict,
    weights: Mapping[str, torch.Tensor],
    task: str = "lm",
    vision: VisionConfig | None = None,
) -> dict:
    """Read `path` safely and check that training can continue from it with this corpus,
    tokenizer (`vocab`, serialised), model (`weights`: its state_dict, whose names and shapes
    the stored weights must have), `task` and `vision` (a caption model's image patches); each
    incompatibility is one `CheckpointError` line. Returns the checkpoint's dict (its training
    state is checked by minigpt/training/resume.py)."""
    ckpt = read_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} cannot resume training: it lacks {', '.join(missing)}; "
            f"resume from a last.ckpt written by minigpt's train.py"
        )
    meta = read_meta(ckpt, path)
    theirs = task_of_meta(meta)
    if theirs != task:
        tool = (
            f", or use it with `{TASK_TOOLS[theirs].format(printable(str(path), 300))}`" if theirs in TASK_TOOLS else ""
        )
        raise CheckpointError(
            f"checkpoint {path} was trained with task={theirs}, this run has task={task}; resume it with "
            f"task={theirs}{tool}"
        )
    if vision is not None and meta.vlm is not None and meta.vlm.vision != vision:
        raise CheckpointError(
            f"checkpoint {path} cuts images as {meta.vlm.vision}, this run as {vision}; resume with the same "
            f"task.patch_size or start a new run"
        )
    _check_training_state(ckpt, path)
    _check_same_tokenizer(path, meta.tokenizer, vocab)
    config = meta.model_config
    diff = [f"{k}={shown(config.get(k))} vs {v!r}" for k, v in model_config.items() if config.get(k) != v]
    if diff:
        raise CheckpointError(
            f"checkpoint {path} holds another model than the config ({', '.join(diff[:4])}: checkpoint vs config); "
            f"resume with the same model options or start a new run"
        )
    state = check_tensors(ckpt["state_dict"], f"checkpoint {path}")
    names, expected = set(state), set(weights)
    if names != expected:
        lost, extra = sorted(expected - names), sorted(names - expected)
        what = f"is missing {len(lost)} weight(s) such as {lost[0]}" if lost else f"has {len(extra)} unknown weight(s)"
        raise CheckpointError(f"checkpoint {path} {what}; it cannot resume this model")
    for name, tensor in state.items():
        if tensor.shape != weights[name].shape:
            raise CheckpointError(
                f"checkpoint {path}: weight {name} has shape {tuple(tensor.shape)}, this model's "
                f"{tuple(weights[name].shape)}; it cannot resume this model"
            )
    check_tensor_values(state, f"checkpoint {path}")
    return ckpt


def _check_training_state(ckpt: dict, path: object) -> None:
    """The types of what Lightning reads back to continue: the step, optimizer and scheduler states."""
    step = ckpt["global_step"]
    if type(step) is not int or not 0 <= step < INT_LIMIT:
        raise CheckpointError(f"checkpoint {path}: field global_step must be a step count, got {shown(step)}")
    for key, kind in (("optimizer_states", list), ("lr_schedulers", list), ("loops", dict)):
        value = ckpt[key]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, dict) for v in value)):
            expected = "a mapping" if kind is dict else "a list of mappings"
            raise CheckpointError(f"checkpoint {path}: field {key} must be {expected}, got {shown(value)}")


def _check_same_tokenizer(path: object, theirs: list[str] | dict, vocab: list[str] | dict) -> None:
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


def _describe_tokenizer(serialized: list[str] | dict) -> str:
    if isinstance(serialized, list):
        return f"a character vocabulary of {len(serialized)}"
    try:
        tokenizer = tokenizer_from_serialized(serialized)
    except MinigptError:
        return "an unreadable tokenizer"
    return f"a {tokenizer.kind} tokenizer of {tokenizer.vocab_size} tokens"
