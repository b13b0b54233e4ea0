"""One declaration per option, one check of it.

A config is a dataclass: each field's annotation is its type, its default the default, and what a
type cannot say (the choices, a range, a line of meaning for --help and docs/configs.md) sits in
the same field, declared with `option(...)`. `check_values` reads those declarations and is the
only check of an option's type, choices and range: it runs when Hydra composes a config
(`minigpt/configs.py` `check_composed`), when Python builds a config dataclass (its
`__post_init__` calls `check_fields`) and when a checkpoint's metadata is read
(`minigpt/checkpoint/format.py`). Checks that relate several fields (`n_embd` divisible by
`n_head`) stay in the dataclass's `__post_init__`, after this one.

Plain Python: the model imports it, so it imports neither Hydra nor OmegaConf nor torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from minigpt.errors import ConfigError
from minigpt.io import printable

INT_LIMIT = 2**63  # torch sizes are int64; a larger integer is no size at all
TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Any: "any value"}


def option(
    default: Any = dataclasses.MISSING,
    *,
    doc: str = "",
    choices: tuple | list | None = None,
    low: float | None = None,
    above: float | None = None,
    high: float | None = None,
    below: float | None = None,
    hint: str = "",
    factory: Callable[[], Any] | None = None,
    names: tuple[str, ...] = (),
    of: Any = None,
) -> Any:
    """A dataclass field with its declaration: `doc` (one line of meaning), the `choices` a value
    must be one of, a range (`low <= v`, `above < v`, `v <= high`, `v < below`) and a `hint` the
    error line ends with (`0 = off`). A field that takes a word beside a typed value (`threads`:
    auto or a count) is annotated `Any`, which OmegaConf accepts, and declares the words in `names`
    and the type in `of` (`names=("auto",), of=int, low=1`)."""
    metadata = {"doc": doc, "hint": hint, "choices": tuple(choices) if choices else None, "names": names, "of": of}
    metadata |= {"low": low, "above": above, "high": high, "below": below}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def shown(value: object) -> str:
    """A value as an error line shows it: short, printable, a huge integer by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT_LIMIT:
        return f"an integer of {value.bit_length()} bits"  # repr() refuses integers of > 4300 digits
    if isinstance(value, str):
        return printable(repr(value[:60]) + ("..." if len(value) > 60 else ""), 400)
    if value is None or isinstance(value, (int, float, bool)):
        return repr(value)
    return type(value).__name__


def _split(hint: Any) -> tuple[list, bool]:
    """The types a hint allows, and whether it allows None (`int | None`)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return [a for a in args if a is not type(None)], type(None) in args
    return [hint], False


def _fits(value: object, kind: Any) -> bool:
    """Whether `value` is of the simple type `kind`; a type this check does not know fits."""
    kind = typing.get_origin(kind) or kind
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return type(value) is int and abs(value) < INT_LIMIT
    if kind is float:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if kind in (str, list, dict):
        return isinstance(value, kind)
    return True


def _in_range(value: float, meta: Mapping) -> bool:
    low, above, high, below = (meta.get(k) for k in ("low", "above", "high", "below"))
    return (
        (low is None or value >= low)
        and (above is None or value > above)
        and (high is None or value <= high)
        and (below is None or value < below)
    )


def expected(hint: Any, meta: Mapping) -> str:
    """What a field takes, in words: `an integer >= 1`, `a number in [0, 1)`, `one of a, b`."""
    if meta.get("of") is not None:
        return " or ".join([*meta["names"], expected(meta["of"], {**meta, "of": None})])
    if meta.get("choices"):
        word = "one of " + ", ".join(map(str, meta["choices"]))
    else:
        kinds, _ = _split(hint)
        word = " or ".join(TYPE_WORDS.get(typing.get_origin(k) or k, getattr(k, "__name__", str(k))) for k in kinds)
        word += _range_words(meta, integers=all((typing.get_origin(k) or k) is int for k in kinds))
    return word + (" (or null)" if _split(hint)[1] else "")


def _range_words(meta: Mapping, integers: bool) -> str:
    low, above, high, below = (meta.get(k) for k in ("low", "above", "high", "below"))
    lower = "[" if low is not None else "(" if above is not None else None
    upper = "]" if high is not None else ")" if below is not None else None
    if integers and low is not None and high is not None:
        return f" from {low} to {high}"
    if lower and upper:
        start, end = (low if low is not None else above), (high if high is not None else below)
        return f" in {lower}{_number(start)}, {_number(end)}{upper}"
    if lower:
        return f" >= {_number(low)}" if low is not None else f" > {_number(above)}"
    if upper:
        return f" <= {_number(high)}" if high is not None else f" < {_number(below)}"
    return ""


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def problem(value: object, hint: Any, meta: Mapping) -> str | None:
    """Why `value` does not fit a field of type `hint` declared with `meta`, or None when it fits."""
    if meta.get("of") is not None:
        fits = value in meta["names"] or problem(value, meta["of"], {**meta, "of": None}) is None
        return None if fits else expected(hint, meta)
    kinds, nullable = _split(hint)
    if value is None:
        return None if nullable or hint is Any else expected(hint, meta)
    fits = [k for k in kinds if _fits(value, k)]
    ok = bool(fits) and (not meta.get("choices") or value in meta["choices"])
    if ok and not isinstance(value, bool) and isinstance(value, (int, float)):
        ok = _in_range(value, meta)
    return None if ok else expected(hint, meta)


def declared(cls: type) -> dict[str, tuple[Any, Mapping]]:
    """name -> (type, declaration) of every field of the dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(cls)}


def check_values(
    cls: type, values: Mapping, prefix: str = "", error: Callable[[str, str], Exception] | None = None
) -> None:
    """Raise one line for the first value of `values` that its field of `cls` does not take:
    `<prefix>.<name> must be <expected>, got <value>[; <hint>]`. Keys `cls` does not declare are
    left to the caller (Hydra refuses them at composition, a checkpoint reader refuses them)."""
    fields = declared(cls)
    for name, value in values.items():
        if name not in fields:
            continue
        hint, meta = fields[name]
        words = problem(value, hint, meta)
        if words is None:
            continue
        if error is not None:
            raise error(name, f"must be {words}, got {shown(value)}")
        tail = f"; {meta['hint']}" if meta.get("hint") else ""
        where = f"{prefix}.{name}" if prefix else name
        if meta.get("choices") and isinstance(value, str):
            raise ConfigError(f"{where}={shown(value)} is unknown; choose {words}{tail}")
        raise ConfigError(f"{where} must be {words}, got {shown(value)}{tail}")


def check_fields(obj: object, prefix: str = "") -> None:
    """`check_values` on the fields of the dataclass instance `obj`: its `__post_init__` calls it."""
    check_values(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, prefix)


def from_mapping(cls: type, values: Mapping, prefix: str) -> Any:
    """The dataclass `cls` built from `values` (a config or a checkpoint's record), refusing keys
    it does not declare in one line: `unknown <prefix> option(s): 'a', 'b'`. Its fields check the rest."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)}, key=str)
    if unknown:
        raise ConfigError(f"unknown {prefix} option(s): {', '.join(map(shown, unknown))}")
    return cls(**values)


def doc_of(cls: type, name: str) -> str:
    """The one line of meaning declared for a field (for --help and docs/configs.md)."""
    return declared(cls)[name][1].get("doc", "")
