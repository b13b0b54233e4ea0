"""The checkpoint format: what a minigpt checkpoint holds under its `minigpt` key (one versioned
record, `CheckpointMeta`, written and read here only), and reading a checkpoint file safely
(tensors and plain values only, never code).

Everything read from a file is untrusted: each value is checked against the format before it is
used, and a value that does not fit is one `CheckpointError` line naming the file and the field.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import torch

from minigpt.architectures import ARCHITECTURES
from minigpt.errors import CheckpointError, ConfigError
from minigpt.io import file_problem, printable
from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig
from minigpt.schema import check_values
from minigpt.schema import shown as shown_value
from minigpt.tokenizer import Tokenizer
from minigpt.vlm import VisionConfig

CHECKPOINT_KEY = "minigpt"
FORMAT_VERSION = 1
WRITTEN_BY = "use a checkpoint written by minigpt's train.py"
INT_LIMIT = 2**63  # torch sizes are int64; a larger integer is no size at all


# --------------------------------------------------------------------------- showing untrusted values


def shown(value: object) -> str:
    """A short, printable description of an untrusted value for a message: scalars as Python
    writes them (cut short), containers and tensors by their type."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return shown_value(value)


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, printable; its type name when it has none."""
    text = str(error).strip()
    return printable(text.splitlines()[0], limit) if text else type(error).__name__


def field_error(path: object, name: str, problem: str) -> CheckpointError:
    """One line for a field of a checkpoint's metadata that does not fit the format."""
    name = f"{CHECKPOINT_KEY}.{name}" if name else CHECKPOINT_KEY
    return CheckpointError(f"checkpoint {path}: field {name} {problem}; {WRITTEN_BY}")


def is_number(value: object, finite: bool = True) -> bool:
    """Whether `value` is a real number a float can hold (not a bool); infinities only if not `finite`."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < INT_LIMIT
    return isinstance(value, float) and (math.isfinite(value) or not finite)


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class ClassifierMeta:
    """What a classifier checkpoint (`train.py task=classify`) adds: its labels, its pooling and
    its best validation accuracy. On disk these are keys beside the language model's."""

    labels: list[str]
    pooling: str
    best_val_acc: float = 0.0

    def to_dict(self) -> dict:
        """The entries this record adds to the checkpoint's metadata."""
        return {
            "task": "classify",
            "labels": list(self.labels),
            "pooling": self.pooling,
            "best_val_acc": self.best_val_acc,
        }

    @classmethod
    def from_dict(cls, d: Mapping, path: object) -> ClassifierMeta:
        """The classifier entries of a checkpoint's metadata `d`, each checked."""
        if d.get("task") != "classify":
            raise field_error(path, "task", f"must be 'classify', got {shown(d.get('task'))}")
        labels = d.get("labels")
        if not isinstance(labels, list):
            raise field_error(path, "labels", f"must be a list of label names, got {shown(labels)}")
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label or not label.isprintable() or len(label) > 200:
                raise field_error(
                    path, f"labels[{i}]", f"must be printable text of 1 to 200 characters, got {shown(label)}"
                )
        if len(set(labels)) < 2 or len(set(labels)) != len(labels):
            raise field_error(
                path, "labels", f"must name at least 2 distinct labels, each once, got {len(labels)} name(s)"
            )
        pooling = d.get("pooling")
        if not isinstance(pooling, str):
            raise field_error(path, "pooling", f"must be a pooling name, got {shown(pooling)}")
        acc = d.get("best_val_acc", 0.0)
        if not is_number(acc) or not 0 <= acc <= 1:
            raise field_error(path, "best_val_acc", f"must be an accuracy in [0, 1], got {shown(acc)}")
        return cls(labels=list(labels), pooling=pooling, best_val_acc=float(acc))


@dataclass(frozen=True)
class VLMMeta:
    """What a vision-language checkpoint (`train.py task=caption`, minigpt/vlm.py) adds: how its
    images become tokens and its best validation accuracy. On disk these are keys beside the
    language model's (`vision` holds the `VisionConfig`)."""

    vision: VisionConfig
    best_val_acc: float = 0.0

    def to_dict(self) -> dict:
        """The entries this record adds to the checkpoint's metadata."""
        return {"task": "caption", "vision": self.vision.to_dict(), "best_val_acc": self.best_val_acc}

    @classmethod
    def from_dict(cls, d: Mapping, path: object) -> VLMMeta:
        """The vision entries of a checkpoint's metadata `d`, each checked."""
        vision = d.get("vision")
        if not isinstance(vision, dict):
            raise field_error(path, "vision", f"must be a mapping, got {shown(vision)}")
        check_fields(VisionConfig, vision, lambda name, problem: field_error(path, f"vision.{name}", problem))
        try:
            config = VisionConfig.from_dict(vision)
        except ConfigError as e:
            raise field_error(path, "vision", f"is not a valid vision config ({e})") from None
        acc = d.get("best_val_acc", 0.0)
        if not is_number(acc) or not 0 <= acc <= 1:
            raise field_error(path, "best_val_acc", f"must be an accuracy in [0, 1], got {shown(acc)}")
        return cls(vision=config, best_val_acc=float(acc))


def task_record(d: Mapping, path: object, task: str) -> ClassifierMeta | VLMMeta | None:
    """The record of a checkpoint's `task` entry when it is `task` (absent: a language model)."""
    if "task" in d and d["task"] not in ("classify", "caption"):
        raise field_error(path, "task", f"must be 'classify' or 'caption', got {shown(d['task'])}")
    if d.get("task") != task:
        return None
    return ClassifierMeta.from_dict(d, path) if task == "classify" else VLMMeta.from_dict(d, path)


@dataclass(frozen=True)
class CheckpointMeta(Mapping):
    """Everything a minigpt checkpoint holds besides Lightning's keys: the model config (with its
    `arch`), the serialised tokenizer, the resolved run config and the best validation loss, plus
    a classifier's entries. It also reads as the dict stored on disk (`meta["run_config"]`)."""

    model_config: dict
    tokenizer: list[str] | dict  # Tokenizer.serialize(): the characters, or {"kind": "bpe", "json": ...}
    run_config: dict | None = None
    best_val_loss: float | None = None
    classifier: ClassifierMeta | None = None
    vlm: VLMMeta | None = None  # a vision-language model's entries
    source: str | None = None  # where a converted model came from (a Hugging Face GPT-2 folder)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        """The plain dict stored under the checkpoint's `minigpt` key (loadable with weights_only)."""
        d = {
            "format_version": self.format_version,
            "model_config": self.model_config,
            **tokenizer_entry(self.tokenizer),
            "run_config": self.run_config,
        }
        if self.best_val_loss is not None:
            d["best_val_loss"] = self.best_val_loss
        if self.classifier is not None:
            d.update(self.classifier.to_dict())
        if self.vlm is not None:
            d.update(self.vlm.to_dict())
        if self.source is not None:
            d["source"] = self.source
        return d

    @classmethod
    def from_dict(cls, d: object, path: object) -> CheckpointMeta:
        """The record stored in the checkpoint at `path` (named in messages), each field checked
        against the format; a field that does not fit is one `CheckpointError` line."""
        if not isinstance(d, dict):
            raise field_error(path, "", f"must be a mapping, got {shown(d)}")
        version = d.get("format_version")
        if version != FORMAT_VERSION or type(version) is not int:
            raise CheckpointError(
                f"checkpoint {path} has format version {shown(version)}, this minigpt reads version "
                f"{FORMAT_VERSION}; use the minigpt release that wrote it"
            )
        loss = d.get("best_val_loss")
        if loss is not None and (not is_number(loss, finite=False) or not 0 <= loss <= math.inf):
            raise field_error(path, "best_val_loss", f"must be a loss >= 0 (inf: not validated yet), got {shown(loss)}")
        source = d.get("source")
        if source is not None and not isinstance(source, str):
            raise field_error(path, "source", f"must be text, got {shown(source)}")
        return cls(
            model_config=check_model_config(d.get("model_config"), path),
            tokenizer=_serialized_tokenizer(d, path),
            run_config=_run_config(d.get("run_config"), path),
            best_val_loss=None if loss is None else float(loss),
            classifier=task_record(d, path, "classify"),
            vlm=task_record(d, path, "caption"),
            source=source,
        )

    def config(self) -> GPTConfig | LSTMConfig:
        """The model config as its architecture's dataclass (nothing is built)."""
        return config_of(self.model_config)

    def __getitem__(self, key: str) -> object:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def read_meta(ckpt: dict, path: object) -> CheckpointMeta:
    """The checked `CheckpointMeta` of a checkpoint's dict (as `read_checkpoint` returns it)."""
    if CHECKPOINT_KEY not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} has no minigpt metadata (model config and vocabulary); "
            f"it was not written by minigpt's train.py"
        )
    return CheckpointMeta.from_dict(ckpt[CHECKPOINT_KEY], path)


def tokenizer_entry(serialized: list[str] | dict) -> dict:
    """A serialised tokenizer's entry in the metadata: `vocab` (characters) or `tokenizer` (BPE)."""
    return {"vocab": serialized} if isinstance(serialized, list) else {"tokenizer": serialized}


@dataclass
class LoadedModel:
    """A model ready for inference with the tokenizer and the checkpoint record it came with."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    path: Path
    meta: CheckpointMeta


# --------------------------------------------------------------------------- checking each field


def check_model_config(value: object, path: object) -> dict:
    """`value` (a checkpoint's `model_config`) checked field by field against its architecture's
    config dataclass, then by the dataclass itself; returned as a plain dict."""
    if not isinstance(value, dict):
        raise field_error(path, "model_config", f"must be a mapping, got {shown(value)}")
    arch = value.get("arch", "gpt")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise field_error(path, "model_config.arch", f"must be one of {', '.join(ARCHITECTURES)}, got {shown(arch)}")
    config_cls = ARCHITECTURES[arch][0]
    rest = {k: v for k, v in value.items() if k != "arch"}
    check_fields(config_cls, rest, lambda name, problem: field_error(path, f"model_config.{name}", problem))
    try:
        config_of(value)
    except ConfigError as e:
        raise field_error(path, "model_config", f"is not a valid model config ({e})") from None
    return dict(value)


def config_of(model_config: dict) -> GPTConfig | LSTMConfig:
    """The config dataclass of a model config dict (`arch` picks it; GPT by default)."""
    config = dict(model_config)
    config_cls = ARCHITECTURES[config.pop("arch", "gpt")][0]
    return config_cls.from_dict(config)


def check_fields(config_cls: type, values: dict, error: Callable[[str, str], CheckpointError]) -> None:
    """Refuse (with `error(field, problem)`) a key of `values` that is not a field of the dataclass
    `config_cls`, a value its field does not take (type, choices and range as the dataclass declares
    them, `minigpt/schema.py`), a missing field."""
    names = {f.name for f in fields(config_cls)}
    for key in values:
        if not isinstance(key, str) or key not in names:
            raise error(printable(str(key), 60), f"is not an option of {config_cls.__name__}")
    check_values(config_cls, values, error=error)
    for f in fields(config_cls):
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise error(f.name, "is missing")


def _serialized_tokenizer(d: dict, path: object) -> list[str] | dict:
    if "vocab" in d and "tokenizer" in d:
        raise field_error(path, "tokenizer", "is stored beside minigpt.vocab; a checkpoint holds one of the two")
    if "tokenizer" in d:
        return check_bpe_entry(d["tokenizer"], path)
    if "vocab" in d:
        return check_vocab(d["vocab"], path)
    raise field_error(path, "vocab", "is missing (and so is minigpt.tokenizer)")


def check_vocab(value: object, path: object) -> list[str]:
    """A character vocabulary as `CharTokenizer.serialize` writes it: distinct single characters
    (no lone surrogates, which no UTF-8 text holds), sorted."""
    if not isinstance(value, list) or not value:
        raise field_error(path, "vocab", f"must be a non-empty list of characters, got {shown(value)}")
    for i, ch in enumerate(value):
        if not isinstance(ch, str) or len(ch) != 1 or "\ud800" <= ch <= "\udfff":
            raise field_error(path, f"vocab[{i}]", f"must be one character, got {shown(ch)}")
        if i and ch <= value[i - 1]:
            raise field_error(
                path, "vocab", f"must be sorted and distinct, but [{i}] is {shown(ch)} after {shown(value[i - 1])}"
            )
    return value


def check_bpe_entry(value: object, path: object) -> dict:
    """A BPE tokenizer as `BPETokenizer.serialize` writes it: {"kind": "bpe", "json": <text>}."""
    if not isinstance(value, dict):
        raise field_error(path, "tokenizer", f"must be a mapping, got {shown(value)}")
    if value.get("kind") != "bpe":
        raise field_error(path, "tokenizer.kind", f"must be 'bpe', got {shown(value.get('kind'))}")
    if not isinstance(value.get("json"), str):
        raise field_error(path, "tokenizer.json", f"must be the tokenizer's JSON text, got {shown(value.get('json'))}")
    return value


PLAIN = (str, int, float, bool, type(None))


def _run_config(value: object, path: object) -> dict | None:
    """The resolved run config: plain data (what OmegaConf.to_container gives), its `data` group a
    mapping. Walked without recursion, so a crafted nesting depth cannot overflow the stack."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise field_error(path, "run_config", f"must be a mapping, got {shown(value)}")
    if not isinstance(value.get("data", {}), (dict, type(None))):
        raise field_error(path, "run_config.data", f"must be a mapping, got {shown(value['data'])}")
    stack: list[tuple[str, object]] = [("run_config", value)]
    while stack:
        name, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise field_error(path, name, f"has a key that is not text: {shown(key)}")
                stack.append((f"{name}.{printable(key, 40)}", child))
        elif isinstance(item, list):
            stack.extend((f"{name}[{i}]", child) for i, child in enumerate(item))
        elif not isinstance(item, PLAIN):
            raise field_error(path, name, f"must be plain data (text, numbers, lists, mappings), got {shown(item)}")
    return value


# --------------------------------------------------------------------------- reading the file


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's dict, loaded with `weights_only=True`: a file that would need to run
    code to unpickle (a crafted payload, or an object we never save) is refused."""
    path = Path(path).expanduser()
    problem = file_problem(path)  # a FIFO, a device or a link loop is named, never opened (which could hang)
    if problem not in (None, "does not exist", "is a directory"):
        raise CheckpointError(f"checkpoint {path} {problem}; pass a .ckpt file")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt=outputs/<run>/checkpoints/last.ckpt")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass the .ckpt file inside it")
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise code_refusal(f"checkpoint {path}", e, "only load checkpoints you trust written by minigpt") from None
    except Exception as e:  # torch.load fails in many ways on a file that is not a checkpoint
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({first_line(e, 200)}); use another checkpoint"
        ) from None
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
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({first_line(e)}); use another checkpoint"
        ) from None
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise CheckpointError(
            f"checkpoint {path} is a zip archive but not a PyTorch checkpoint (an exported .pt2 is for "
            f"deployment, not for minigpt's tools); pass the .ckpt it was exported from"
        )


def code_refusal(what: object, e: pickle.UnpicklingError, fix: str) -> CheckpointError:
    """One line for a file `torch.load(weights_only=True)` refused (`e`): what in it is not plain
    data, when PyTorch names it, and `fix`; PyTorch's own message runs over many lines."""
    if "weights_only" in str(e) or "Unsupported global" in str(e):
        return CheckpointError(
            f"{what} refers to code or objects that are not plain data ({_offender(e)}); it was refused "
            f"because loading it could run code; {fix}"
        )
    return CheckpointError(f"{what} is not a valid PyTorch file ({first_line(e)}); {fix}")


def _offender(e: Exception) -> str:
    for line in str(e).splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return printable(line.strip(), 160)
    return type(e).__name__
