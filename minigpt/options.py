"""What an option may hold beyond what its type says, checked the same way by every tool: a `+key`
something reads, numbers that are finite, counts, seeds and the policy for unknown characters."""

from __future__ import annotations

import math

from omegaconf import DictConfig, ListConfig, OmegaConf

from minigpt.configs import check_composed
from minigpt.errors import ConfigError


def check_added_keys(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """A key added with a leading `+` (`+trainer.limit_val_batches=4`) must be one something
    reads: an argument of the `_target_` of the node it lands in, or a new object of its own (a
    node with a `_target_`, such as `+callbacks.ema._target_=...`). Anything else (`+unknown=1`)
    would be accepted and ignored: one line naming it. `overrides` defaults to this job's."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return
        overrides = list(HydraConfig.get().overrides.task)
        groups = set(HydraConfig.get().runtime.choices)
    else:
        groups = set()
    for override in overrides:
        key = override.split("=", 1)[0]
        if not key.startswith("+") or key.startswith("++"):
            continue  # ++ sets a key whether or not it exists: Hydra's own choice
        key = key[1:]
        if key.startswith("hydra.") or "/" in key or key in groups or "@" in key:
            continue  # Hydra's settings, or a config group added to the defaults
        problem = _added_key_problem(cfg, key)
        if problem:
            raise ConfigError(f"+{key}: {problem}; see the keys with --cfg job (+ adds an argument of a _target_)")


def _added_key_problem(cfg: DictConfig, key: str) -> str | None:
    """Why nothing reads the added `key` of `cfg`, or None when something does."""
    parts = key.split(".")
    for i, name in enumerate(parts):
        parent = OmegaConf.select(cfg, ".".join(parts[:i])) if i else cfg
        child = OmegaConf.select(cfg, ".".join(parts[: i + 1]))
        if name.startswith("_") and name.endswith("_"):  # _target_, _partial_: Hydra's own keys
            continue
        target = parent.get("_target_") if isinstance(parent, DictConfig) else None
        if target is not None and not _takes(str(target), name):
            return f"{target} takes no argument {name}"
        if isinstance(child, DictConfig) and "_target_" in child:
            continue  # an object (a new one, or a target's argument): its keys are checked against its target
        if target is not None or _is_collection(parent):
            return None  # an argument's value; or named entries (evaluate's strategies), which the tool checks
        if i == len(parts) - 1:
            where = ".".join(parts[:i]) or "the config"
            return f"{where} has no option {name}, and nothing would read it"
    return None


def _is_collection(node: object) -> bool:
    """Whether `node` is a mapping of named entries, each a mapping (or null, switched off)."""
    if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
        return False
    values = [node._get_node(key) for key in node]
    return any(isinstance(v, DictConfig) for v in values) and all(
        isinstance(v, DictConfig) or v._is_none() for v in values
    )


def _takes(target: str, name: str) -> bool:
    """Whether the callable `target` (a dotted path) takes an argument `name`; True when that
    cannot be told (instantiating it then reports what is wrong)."""
    import inspect

    from hydra.utils import get_object

    try:
        parameters = inspect.signature(get_object(target)).parameters.values()
    except Exception:  # an import error or a builtin without a signature: instantiate will say
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == name for p in parameters)


def check_finite_options(cfg: object, prefix: str = "") -> None:
    """NaN and infinity are no setting of any tool (`trainer.gradient_clip_val=nan` would turn every
    gradient into NaN, `temperature=inf` sample uniformly): one line naming the first option that
    holds one, before the tool does anything."""
    if isinstance(cfg, DictConfig | ListConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)  # interpolations stay strings: nothing is resolved
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg) if isinstance(cfg, list) else ()
    for key, value in items:
        name = f"{prefix}.{key}" if prefix and isinstance(key, str) else f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        check_finite_options(value, name)


def check_unknown(unknown) -> str:
    """The policy for characters outside the vocabulary: error, skip or one replacement character."""
    if unknown not in ("error", "skip") and len(str(unknown)) != 1:  # a string: the tools' schemas say so
        raise ConfigError(f"unknown={unknown!r} is not a policy: use error, skip or one character of the vocabulary")
    return unknown


def check_job(cfg: DictConfig) -> None:
    """What every Hydra job checks before its tool starts: no NaN or infinity anywhere, every
    `+key` read by something, and every declared option against its declaration
    (`minigpt/configs.py` `check_composed`, the same check `configs.compose` runs)."""
    from hydra.core.hydra_config import HydraConfig

    check_finite_options(cfg)
    check_added_keys(cfg)
    if HydraConfig.initialized():
        check_composed(cfg, HydraConfig.get().job.config_name)
