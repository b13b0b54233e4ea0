"""What a resumed run reads from its checkpoint: the training state (callbacks, optimizer,
schedule, loop counters) checked against what this run itself writes, or rebuilt from the run
directory, before Lightning sees any of it.

A checkpoint is untrusted input. Lightning restores whatever it finds: a `ModelCheckpoint` state
naming files elsewhere would have its top-k bookkeeping delete them, a best score of -1000 would
keep best.ckpt from ever being rewritten, a NaN learning rate would pass for divergence. So
`checked_resume` builds the dict Lightning restores from, key by key, out of validated values
only; the best-checkpoint bookkeeping is rebuilt from this run's own `checkpoints/best.ckpt`
(never from paths stored in the file). Anything that does not fit is one `CheckpointError` line
naming the checkpoint, the field and the fix.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.callbacks.weight_averaging import WeightAveraging
from packaging.version import InvalidVersion, Version

from minigpt.checkpoint.format import CHECKPOINT_KEY, INT_LIMIT, printable, read_checkpoint, shown
from minigpt.checkpoint.weights import check_tensor_values
from minigpt.errors import CheckpointError

log = logging.getLogger("minigpt")

LOOPS = ("fit_loop", "validate_loop", "test_loop", "predict_loop")
# where Lightning counts the optimizer steps of a run with automatic optimization
STEP_COUNTER = ("fit_loop", "epoch_loop.automatic_optimization.optim_progress", "optimizer", "step", "total")
STANDIN_SIZE = 6  # each dimension of a stand-in parameter: divisible by the 3 parts of a fused c_attn


class ResumeCheck:
    """Checks one checkpoint's training state; every refusal names `path` and the field."""

    def __init__(self, path: Path, global_step: int) -> None:
        self.path, self.global_step = path, global_step

    def error(self, field: str, problem: str) -> CheckpointError:
        """One line: what is wrong with which field, and how to go on from this checkpoint."""
        where = printable(str(self.path), 300)
        return CheckpointError(
            f"checkpoint {where}: field {field} {problem}, which is not the training state this run writes; "
            f"resume from another last.ckpt, or start a new run (another run_dir) from its weights with "
            f"init_from={where}"
        )

    def number(self, value: object, field: str, low: float = 0.0, high: float = math.inf) -> float:
        """`value` as a float if it is a finite number (or a 0-d tensor holding one) in [low, high]."""
        if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
            value = value.item()
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not ok or not low <= value <= high:
            span = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
            raise self.error(field, f"must be a finite number {span}, got {shown(value)}")
        return float(value)

    def count(self, value: object, field: str, high: int = INT_LIMIT - 1) -> int:
        """`value` if it is an integer in [0, high]."""
        if type(value) is not int or not 0 <= value <= high:
            raise self.error(field, f"must be a count between 0 and {high}, got {shown(value)}")
        return value

    def mapping(self, value: object, field: str) -> dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.error(field, f"must be a mapping with text keys, got {shown(value)}")
        return value

    def indexed(self, value: object, size: int, field: str) -> dict:
        """A mapping from parameter indices 0 to `size - 1` (an optimizer's per-parameter state)."""
        if not isinstance(value, dict) or not all(type(k) is int and 0 <= k < size for k in value):
            raise self.error(field, f"must map parameter indices 0 to {size - 1} to their state, got {shown(value)}")
        return value

    def same_keys(self, value: dict, template: dict, field: str) -> None:
        if set(value) != set(template):
            extra, lost = sorted(map(str, set(value) - set(template))), sorted(map(str, set(template) - set(value)))
            detail = f"lacks {', '.join(lost[:3])}" if lost else f"has unknown keys such as {printable(extra[0], 60)}"
            raise self.error(field, detail)

    def like(self, value: object, template: object, field: str) -> None:
        """`value` shaped as `template` (what this run writes there): the same keys, lengths and
        kinds of value; numbers finite and >= 0, counts integers, text and None as the template."""
        if isinstance(template, dict):
            self.same_keys(self.mapping(value, field), template, field)
            for key, child in template.items():
                self.like(value[key], child, f"{field}.{printable(key, 60)}")
        elif isinstance(template, (list, tuple)):
            if not isinstance(value, type(template)) or len(value) != len(template):
                raise self.error(field, f"must be a {type(template).__name__} of {len(template)}, got {shown(value)}")
            for i, (v, t) in enumerate(zip(value, template)):
                self.like(v, t, f"{field}[{i}]")
        else:
            self.like_scalar(value, template, field)

    def like_scalar(self, value: object, template: object, field: str) -> None:
        """`value` of the kind of the scalar `template`: a switch, a count, a number, a tensor of
        its shape, or exactly the template's text or None (a switch may stand for None)."""
        if isinstance(template, bool):
            if not isinstance(value, bool):
                raise self.error(field, f"must be true or false, got {shown(value)}")
        elif isinstance(template, int):
            self.count(value, field)
        elif isinstance(template, float):
            self.number(value, field)
        elif isinstance(template, torch.Tensor):
            self.tensor(value, template.shape, field)
        elif isinstance(value, torch.Tensor) or (
            value != template and not (template is None and isinstance(value, bool))
        ):
            raise self.error(field, f"must be {shown(template)}, got {shown(value)}")

    def tensor(self, value: object, shape: torch.Size | tuple, field: str) -> torch.Tensor:
        """A floating-point tensor of `shape` holding finite values."""
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape):
            raise self.error(field, f"must be a tensor of shape {tuple(shape)}, got {shown(value)}")
        if not value.is_floating_point():
            raise self.error(field, f"must hold floating-point values, got {str(value.dtype).removeprefix('torch.')}")
        if not torch.isfinite(value).all():
            raise self.error(field, "holds NaN or infinite values")
        return value


# --------------------------------------------------------------------------- the whole state


def checked_resume(
    ckpt: dict, path: Path, trainer: L.Trainer, module: L.LightningModule, best: ModelCheckpoint
) -> dict:
    """The dict Lightning resumes from: the model's weights and metadata (checked by
    `check_resumable`) and each part of the training state of `ckpt` checked against what
    `trainer` and `module` write, or rebuilt; nothing else of the file reaches Lightning."""
    check = ResumeCheck(path, ckpt["global_step"])
    out = {key: ckpt[key] for key in ("state_dict", CHECKPOINT_KEY, "global_step")}
    out["epoch"] = check.count(ckpt.get("epoch", 0), "epoch")
    out["pytorch-lightning_version"] = lightning_version(ckpt, check)
    out["loops"] = checked_loops(ckpt["loops"], trainer, check)
    templates = stand_in_templates(module, max(1, trainer.max_steps))
    out["optimizer_states"] = checked_optimizer(ckpt["optimizer_states"], templates, check)
    out["lr_schedulers"] = checked_schedulers(ckpt["lr_schedulers"], templates.schedulers, check)
    out["callbacks"] = checked_callbacks(ckpt.get("callbacks", {}), trainer, best, check)
    out.update(checked_averaging(ckpt, trainer, module, check))
    precision = trainer.precision_plugin
    template = precision.state_dict()
    if template and type(precision).__qualname__ in ckpt:
        check.like(ckpt[type(precision).__qualname__], template, type(precision).__qualname__)
        out[type(precision).__qualname__] = ckpt[type(precision).__qualname__]
    out[CHECKPOINT_KEY] = checked_best_loss(out[CHECKPOINT_KEY], out["callbacks"].get(best.state_key), best)
    return out


def lightning_version(ckpt: dict, check: ResumeCheck) -> str:
    """The Lightning version that wrote the file (Lightning upgrades older checkpoints by it)."""
    version = ckpt.get("pytorch-lightning_version", L.__version__)
    try:
        Version(version if isinstance(version, str) else "")
    except InvalidVersion:
        raise check.error("pytorch-lightning_version", f"must be a version number, got {shown(version)}") from None
    return version


def checked_loops(loops: object, trainer: L.Trainer, check: ResumeCheck) -> dict:
    """The loops' progress counters: the structure this trainer's loops write, every counter an
    integer >= 0, and the optimizer steps equal to the checkpoint's global_step."""
    template = {name: getattr(trainer, name).state_dict() for name in LOOPS}
    check.like(loops, template, "loops")
    steps = loops
    for key in STEP_COUNTER:
        steps = steps[key]
    if steps["completed"] != check.global_step:
        raise check.error(
            "loops.fit_loop",
            f"counts {steps['completed']} optimizer steps, but the checkpoint's global_step is {check.global_step}",
        )
    return loops


# --------------------------------------------------------------------------- optimizer and schedule


@dataclass
class Templates:
    """What this run's optimizer and schedule write (see `stand_in_templates`)."""

    fresh: dict  # the optimizer's state before its first step
    stepped: dict  # and after one
    schedulers: list[dict]  # each scheduler's state when made
    shapes: list[torch.Size]  # the real parameters' shapes, in the optimizer's order


def stand_in_templates(module: L.LightningModule, max_steps: int) -> Templates:
    """What this run's optimizer and schedule write, measured on stand-ins: the same optimizer
    class, options and parameter groups over small zero tensors of the same dimensions, before
    (`fresh`) and after (`stepped`) one step; the scheduler's fresh states; the real shapes."""
    groups = module.param_groups()
    shapes = [p.shape for g in groups for p in g["params"]]
    stand_ins = [
        {**g, "params": [torch.zeros([STANDIN_SIZE] * p.dim(), requires_grad=True) for p in g["params"]]}
        for g in groups
    ]
    optimizer = instantiate(module.hparams.optim)(stand_ins)
    schedulers = []
    if module.hparams.scheduler:
        schedulers.append(instantiate(module.hparams.scheduler)(optimizer, total_steps=max_steps))
    scheduler_states = [copy.deepcopy(s.state_dict()) for s in schedulers]
    fresh = copy.deepcopy(optimizer.state_dict())
    for group in stand_ins:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    optimizer.step()
    return Templates(fresh, optimizer.state_dict(), scheduler_states, shapes)


def checked_optimizer(states: list, templates: Templates, check: ResumeCheck) -> list[dict]:
    """The one optimizer's state: its parameter groups as this run's optimizer writes them
    (keys, parameter indices, names), with finite hyperparameters, and per-parameter state
    tensors of the parameters' shapes."""
    fresh, stepped, shapes = templates.fresh, templates.stepped, templates.shapes
    if len(states) != 1:
        raise check.error("optimizer_states", f"must hold one optimizer's state, got {len(states)}")
    state = check.mapping(states[0], "optimizer_states[0]")
    check.same_keys(state, stepped, "optimizer_states[0]")
    groups = state["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(stepped["param_groups"]):
        raise check.error(
            "optimizer_states[0].param_groups",
            f"must be a list of {len(stepped['param_groups'])} parameter groups, got {shown(groups)}",
        )
    for i, (group, before, after) in enumerate(zip(groups, fresh["param_groups"], stepped["param_groups"])):
        check_param_group(group, before, after, check, f"optimizer_states[0].param_groups[{i}]")
    per_param = check.indexed(state["state"], len(shapes), "optimizer_states[0].state")
    for index, values in per_param.items():
        field = f"optimizer_states[0].state[{index}]"
        if values:  # empty: a parameter that has not been stepped yet
            check_param_state(values, stepped["state"][index], shapes[index], check, field)
    return [state]


def check_param_group(group: object, fresh: dict, stepped: dict, check: ResumeCheck, field: str) -> None:
    """A parameter group: the keys of the fresh group at least, of the stepped one at most; the
    parameter indices, names, lists and switches (amsgrad, maximize, nesterov, ...) as the run
    writes them; betas in [0, 1), other numbers finite and >= 0."""
    group = check.mapping(group, field)
    if not set(fresh) <= set(group) <= set(stepped):
        check.same_keys(group, stepped if set(group) > set(fresh) else fresh, field)
    for key, value in group.items():
        template, name = stepped[key], f"{field}.{printable(key, 60)}"
        if key == "betas":
            check.like(value, template, name)
            for j, beta in enumerate(value):
                check.number(beta, f"{name}[{j}]", high=math.nextafter(1.0, 0.0))
        elif isinstance(template, (str, list, bool)) and (type(value) is not type(template) or value != template):
            raise check.error(name, f"must be {shown(template)} as this run's optimizer writes it, got {shown(value)}")
        else:
            check.like(value, template, name)


def check_param_state(values: object, template: dict, shape: torch.Size, check: ResumeCheck, field: str) -> None:
    """One parameter's optimizer state: the keys one step writes, scalars where it writes
    scalars and tensors of the parameter's shape where it writes the stand-in's."""
    values = check.mapping(values, field)
    check.same_keys(values, template, field)
    for key, expected in template.items():
        name = f"{field}.{printable(key, 60)}"
        if isinstance(expected, torch.Tensor):
            value = check.tensor(values[key], shape if expected.dim() else (), name)
            if key == "step":  # how often this parameter was updated: bias corrections divide by it
                check.number(value, name, high=check.global_step)
        else:
            check.like(values[key], expected, name)


def checked_schedulers(states: list, templates: list[dict], check: ResumeCheck) -> list:
    """The schedule's state as this run's scheduler writes it (its multipliers are functions of
    the config, stored as None), counting the checkpoint's global_step."""
    if len(states) != len(templates):
        raise check.error("lr_schedulers", f"must hold {len(templates)} scheduler state(s), got {len(states)}")
    for i, (state, template) in enumerate(zip(states, templates)):
        field = f"lr_schedulers[{i}]"
        check.like(state, template, field)
        if state.get("last_epoch", check.global_step) != check.global_step:
            raise check.error(
                f"{field}.last_epoch",
                f"is {state['last_epoch']}, but the checkpoint's global_step is {check.global_step}",
            )
    return states


# --------------------------------------------------------------------------- callbacks


def checked_callbacks(states: object, trainer: L.Trainer, best: ModelCheckpoint, check: ResumeCheck) -> dict:
    """The states of this run's callbacks: the best-checkpoint bookkeeping rebuilt from the run
    directory, the time budget and weight averaging checked; states of callbacks this run does
    not have are dropped, as Lightning would ignore them."""
    states = check.mapping(states, "callbacks")
    out: dict[str, Any] = {best.state_key: rebuilt_best_state(best)}
    for callback in trainer.callbacks:
        key = callback.state_key
        if key not in states:
            continue
        field = f"callbacks[{type(callback).__name__}]"
        if callback is best:
            check_model_checkpoint_state(states[key], check, field)
        elif isinstance(callback, Timer):
            elapsed = check.mapping(check.mapping(states[key], field).get("time_elapsed"), f"{field}.time_elapsed")
            for stage, seconds in elapsed.items():
                check.number(seconds, f"{field}.time_elapsed.{printable(stage, 40)}")
            out[key] = {"time_elapsed": elapsed}
        elif isinstance(callback, WeightAveraging):
            check.like(states[key], callback.state_dict(), field)
            check.count(states[key]["latest_update_step"], f"{field}.latest_update_step", check.global_step)
            out[key] = states[key]
        elif callback.state_dict():
            check.like(states[key], callback.state_dict(), field)
            out[key] = states[key]
    return out


MODEL_CHECKPOINT_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path", "dirpath")
MODEL_CHECKPOINT_SCORES = ("best_model_score", "current_score", "kth_value")


def check_model_checkpoint_state(state: object, check: ResumeCheck, field: str) -> None:
    """The types of a `ModelCheckpoint` state (its values are not used: see `rebuilt_best_state`)."""
    state = check.mapping(state, field)
    for key in MODEL_CHECKPOINT_PATHS:
        if state.get(key) is not None and not isinstance(state[key], str):
            raise check.error(f"{field}.{key}", f"must be a path, got {shown(state[key])}")
    scores = [(f"{field}.{key}", state.get(key)) for key in MODEL_CHECKPOINT_SCORES]
    top_k = check.mapping(state.get("best_k_models", {}), f"{field}.best_k_models")
    scores += [(f"{field}.best_k_models[{printable(k, 80)}]", v) for k, v in top_k.items()]
    for name, score in scores:  # a score is a number, infinite before the first validation
        if isinstance(score, torch.Tensor) and score.dim() == 0 and score.is_floating_point():
            continue
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise check.error(name, f"must be a number, got {shown(score)}")


def rebuilt_best_state(best: ModelCheckpoint) -> dict:
    """`best`'s state rebuilt from the run directory alone: best.ckpt in its own folder and the
    score that file was saved with (none when there is no best.ckpt yet)."""
    state = best.state_dict()  # this run's: its dirpath, its monitor, no best yet
    path = Path(best.format_checkpoint_name({}))
    score = best_score_of(path, best)
    if score is not None:
        value = torch.tensor(score)
        state.update(
            best_model_score=value,
            best_model_path=str(path),
            current_score=value,
            best_k_models={str(path): value},
            kth_best_model_path=str(path),
            kth_value=value,
        )
        log.info("best checkpoint so far: %s (%s %.4f)", printable(str(path), 300), best.monitor, score)
    return state


def best_score_of(path: Path, best: ModelCheckpoint) -> float | None:
    """The score `path` (this run's best.ckpt) was saved with, as its own `ModelCheckpoint` state
    records it; None when there is no such file or it records none. A loss is >= 0, an
    accuracy in [0, 1]."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file() or path.resolve().parent != Path(best.dirpath).resolve():
        raise CheckpointError(
            f"this run's best checkpoint {printable(str(path), 300)} is not a file of its checkpoints folder "
            f"(a link or another kind of file); remove it to resume (the next validation writes a new one)"
        )
    state = read_checkpoint(path).get("callbacks", {})
    state = state.get(best.state_key) if isinstance(state, dict) else None
    score = state.get("best_model_score") if isinstance(state, dict) else None
    if score is None:
        return None
    high = 1.0 if best.monitor.endswith("acc") else math.inf
    return ResumeCheck(path, 0).number(score, f"callbacks[ModelCheckpoint].best_model_score of {path.name}", 0, high)


def checked_best_loss(meta: dict, best_state: dict | None, best: ModelCheckpoint) -> dict:
    """The metadata with the module's lowest validation loss no higher than best.ckpt's score when
    best.ckpt is chosen by the loss (a last.ckpt written before a validation lags behind it)."""
    score = None if best_state is None else best_state.get("best_model_score")
    if best.monitor != "val/loss" or score is None:
        return meta
    stored = meta.get("best_val_loss")
    lowest = float(score) if stored is None else min(float(stored), float(score))
    return {**meta, "best_val_loss": lowest}


# --------------------------------------------------------------------------- weight averaging


def checked_averaging(ckpt: dict, trainer: L.Trainer, module: L.LightningModule, check: ResumeCheck) -> dict:
    """Weight averaging's two extra entries (the current weights beside the averaged ones, and the
    average's count), checked like the weights, when this run averages; else none."""
    keys = ("current_model_state", "averaging_state")
    if not any(isinstance(c, WeightAveraging) for c in trainer.callbacks) or not any(k in ckpt for k in keys):
        return {}
    if not all(k in ckpt for k in keys):
        raise check.error(keys[0] if keys[0] not in ckpt else keys[1], "is missing beside the other")
    weights = module.state_dict()
    current = check.mapping(ckpt["current_model_state"], "current_model_state")
    check.same_keys(current, weights, "current_model_state")
    for name, tensor in current.items():
        check.tensor(tensor, weights[name].shape, f"current_model_state[{printable(name, 80)}]")
    check_tensor_values(current, f"checkpoint {printable(str(check.path), 300)}: field current_model_state")
    averaging = check.mapping(ckpt["averaging_state"], "averaging_state")
    check.same_keys(averaging, {"n_averaged": None}, "averaging_state")
    count = averaging["n_averaged"]
    if not isinstance(count, torch.Tensor) or count.dim() != 0 or count.is_floating_point() or count.is_complex():
        raise check.error("averaging_state.n_averaged", f"must be an integer tensor, got {shown(count)}")
    check.count(int(count), "averaging_state.n_averaged", check.global_step + 1)
    return {k: ckpt[k] for k in keys}
