"""The weights of a checkpoint or a GPT-2 folder, checked before a model is built from them: the
memory the model config asks for (refused when the machine lacks it, before anything is
allocated), tensors of the right kind, dtype and count, no NaN or infinity, no magnitude a float32
forward pass cannot carry; and, once built, one forward pass that stays finite."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from minigpt.architectures import model_for
from minigpt.checkpoint.format import first_line, shown
from minigpt.errors import CheckpointError
from minigpt.io import printable
from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig

BYTES_PER_VALUE = 4  # models are built in float32


# --------------------------------------------------------------------------- sizes


EXACT_DEPTH = 16  # deeper models are sized from 15 or 16 layers, adding two layers at a time


@dataclass(frozen=True)
class ModelSize:
    """How many values a model holds: `parameters` (a tied LM head counted once), `buffers` (the
    sinusoidal position table, ALiBi's slopes) and `state_dict` (what `state_dict()` stores: a tied
    head twice, no non-persistent buffer)."""

    parameters: int
    buffers: int
    state_dict: int

    def __add__(self, other: ModelSize) -> ModelSize:
        return ModelSize(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __sub__(self, other: ModelSize) -> ModelSize:
        return ModelSize(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __mul__(self, k: int) -> ModelSize:
        return ModelSize(*(k * a for a in astuple(self)))


def model_size(config: GPTConfig | LSTMConfig) -> ModelSize:
    """The sizes of the model `config` describes, read from the model itself built on the meta
    device (shapes without storage: nothing is allocated), so that no option can make them drift.
    Every layer has the same parameters, and a parameter per pair of layers at most (U-net skips),
    so a model deeper than EXACT_DEPTH is sized from one of EXACT_DEPTH - 1 or EXACT_DEPTH layers
    plus (its extra layers / 2) times what two more layers add: a config of 10**8 layers is
    refused without building 10**8 blocks."""
    if config.n_layer <= EXACT_DEPTH:
        with torch.device("meta"):
            model = model_for(config)
        parameters = sum(p.numel() for p in model.parameters())
        buffers = sum(b.numel() for b in model.buffers())
        return ModelSize(parameters, buffers, sum(t.numel() for t in model.state_dict().values()))
    base = EXACT_DEPTH - (config.n_layer - EXACT_DEPTH) % 2  # the same parity as n_layer
    two_layers = model_size(replace(config, n_layer=EXACT_DEPTH)) - model_size(replace(config, n_layer=EXACT_DEPTH - 2))
    return model_size(replace(config, n_layer=base)) + two_layers * ((config.n_layer - base) // 2)


def parameter_count(config: GPTConfig | LSTMConfig) -> int:
    """The number of parameters of the model `config` describes (a tied LM head counted once)."""
    return model_size(config).parameters


def estimate_model_bytes(config: GPTConfig | LSTMConfig) -> int:
    """Bytes the float32 model `config` describes takes: its parameters and its buffers."""
    size = model_size(config)
    return BYTES_PER_VALUE * (size.parameters + size.buffers)


def state_dict_size(config: GPTConfig | LSTMConfig) -> int:
    """The number of values in the model's `state_dict()`, where a tied LM head appears twice."""
    return model_size(config).state_dict


def available_memory(device: str | torch.device | None = None) -> int | None:
    """Bytes this process can still allocate, the one figure every memory estimate is compared
    with: on a CUDA device, its free memory; else the least of /proc/meminfo's MemAvailable (else
    the free pages), what the cgroup's limit leaves (v2 `memory.max`, v1 `memory.limit_in_bytes`)
    and what the address-space limit leaves (`ulimit -v`, RLIMIT_AS, less the process's size);
    None where the system says none of them."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    limits = [n for n in (_free_ram(), _cgroup_room(), _address_space_room()) if n is not None]
    return min(limits) if limits else None


def _free_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# (limit, usage) files of a cgroup v2 and a cgroup v1 memory controller, as a container sees them
CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _cgroup_room() -> int | None:
    """What the cgroup's memory limit leaves this process's group; None without a limit."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 2**60:  # v1 writes "no limit" as a huge number
                continue
            return int(limit) - int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
    return None


def _address_space_room() -> int | None:
    """What `ulimit -v` (RLIMIT_AS) leaves this process: the limit less its virtual size now."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return soft - int(line.split()[1]) * 1024
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return soft


def human_bytes(n: int) -> str:
    """`n` bytes as a short number with a unit: 1.5 GB."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1000
    raise AssertionError("unreachable")


def describe_sizes(config: GPTConfig | LSTMConfig) -> str:
    """The sizes that decide a model's memory, as `n_layer=2, n_embd=16, ...`."""
    return ", ".join(f"{name}={getattr(config, name)}" for name in ("n_layer", "n_embd", "block_size", "vocab_size"))


def check_memory(config: GPTConfig | LSTMConfig, where: str) -> None:
    """Refuse, before anything is allocated, a model config whose model does not fit in the memory
    this machine has free; `where` names the file and field it came from."""
    need, have = estimate_model_bytes(config), available_memory()
    if have is not None and need > have:
        raise CheckpointError(
            f"{where} describes a model that needs {human_bytes(need)} of memory ({describe_sizes(config)}), "
            f"but this machine has {human_bytes(max(have, 0))} available; use a smaller model or a machine "
            f"with more memory"
        )


def check_weight_count(config: GPTConfig | LSTMConfig, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse a model config describing over twice the values the file's weights hold (up to that,
    the model is built so that the message can name the missing weights: it costs the file's size)."""
    expected, stored = state_dict_size(config), sum(t.numel() for t in state.values())
    if expected > 2 * stored:
        raise CheckpointError(
            f"{where} describes a model of {expected:,} values ({describe_sizes(config)}), but the file holds "
            f"{stored:,}; the model config does not belong to these weights"
        )


# --------------------------------------------------------------------------- memory of a run
# Estimates from the sizes alone, made before anything is allocated, to refuse in one line what
# cannot fit (a batch of 10**7 windows, a million samples) instead of failing deep in PyTorch.
# They count the large tensors only, so a run they let through may still need somewhat more.


def activation_bytes(config: GPTConfig | LSTMConfig, batch: int, tokens: int, training: bool) -> int:
    """Bytes of the activations of one forward pass over `batch` sequences of `tokens` tokens.
    Training keeps every layer's for the backward pass (per token and layer about 5 + 3 * mlp_ratio values of
    width n_embd in a GPT block, 8 in an LSTM layer, and two attention rows per head); inference
    holds one layer's at a time. Logits: 3 values per token and vocabulary entry when training
    (logits, log-softmax, gradient), 2 otherwise."""
    C, V, T = config.n_embd, config.vocab_size, tokens
    if isinstance(config, LSTMConfig):
        per_layer = 8 * C
    else:
        per_layer = (5 + 3 * config.mlp_ratio) * C + 2 * config.n_head * T  # 17 C with the usual 4x MLP
    layers = config.n_layer if training else 1
    per_token = layers * per_layer + 2 * C + (3 if training else 2) * V
    return BYTES_PER_VALUE * batch * T * per_token


def training_bytes(config: GPTConfig | LSTMConfig, batch_size: int) -> int:
    """Bytes a training step of `batch_size` windows needs: the weights, their gradients and two
    optimizer moments (AdamW's), the activations of a block_size window, and the batch's ids."""
    T = config.block_size
    ids = 3 * 8 * batch_size * (T + 1)  # start offsets, the gathered windows, their int64 copy
    return 4 * estimate_model_bytes(config) + activation_bytes(config, batch_size, T, training=True) + ids


def decoding_bytes(config: GPTConfig | LSTMConfig, rows: int, prompt: int, new: int, use_cache: bool) -> int:
    """Bytes decoding `rows` sequences at once needs beyond the model, for a prompt of `prompt`
    tokens and `new` more: the KV cache (keys and values of every layer for block_size
    positions, made in full at the first step), the largest forward pass (with the cache: the
    prompt, or the half window refilled once the text outgrows block_size; without: the whole
    window), and the token ids and text of every sequence (about 12 bytes a token, 256 a row)."""
    block, total = config.block_size, prompt + new
    cached = use_cache and isinstance(config, GPTConfig)
    window = min(total, block)
    if cached:
        window = min(prompt, block) if total <= block else max(min(prompt, block), block // 2)
    cache = BYTES_PER_VALUE * 2 * config.n_layer * rows * block * config.n_embd if cached else 0
    return cache + activation_bytes(config, rows, window, training=False) + rows * (256 + 12 * total)


def memory_shortfall(need: int, device: str | torch.device | None = None) -> str | None:
    """None when `need` bytes fit in the memory free on `device` (None: this machine's RAM), else
    the end of a refusal: `needs about 12 GB of memory, but this machine has 3.1 GB available`."""
    have = available_memory(device)
    if have is None or need <= have:
        return None
    where = f"{device} has" if device is not None and torch.device(device).type == "cuda" else "this machine has"
    return f"needs about {human_bytes(need)} of memory, but {where} {human_bytes(max(have, 0))} available"


# --------------------------------------------------------------------------- tensors


def check_tensors(state: object, where: str, name: str = "state_dict") -> dict[str, torch.Tensor]:
    """`state` as a dict of named tensors, refusing anything else in one line (`where`: the file)."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: field {name} must be a mapping of weights, got {shown(state)}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where}: field {name} has a weight name that is not text: {shown(key)}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: field {name}[{shown(key)}] must be a tensor, got {shown(value)}")
    return dict(state)


def non_finite_weights(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in `state` holding a NaN or an infinity."""
    return [
        name
        for name, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
    ]


# Weights are read to be used, not only stored: a float32 forward pass multiplies them together
# (query by key, one matrix after another, layer after layer), so a value that is finite on disk
# can overflow to infinity in use. scripts/weight_bound.py sets every weight of the real models to
# one magnitude: with a norm in the blocks their forward passes stay finite at 1e3 even with all
# weights positive, and GPT-2 124M's overflows from 1e4 (docs/reliability.md). Trained models
# stay far below: their weights are a few units. A model without norms can overflow below any
# such bound, so loading also runs one forward pass (`check_forward`).
MAX_WEIGHT = 1e3
# what a checkpoint or a GPT-2 folder may store its weights as; half precision is widened to
# float32 exactly when the weights are copied into the model
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor_values(state: Mapping[str, torch.Tensor], where: str, dtypes: tuple = WEIGHT_DTYPES) -> None:
    """Refuse weights a float32 model cannot use: of a dtype not in `dtypes` (integers, booleans,
    complex numbers, float64, ...), holding a NaN or an infinity, or larger than `MAX_WEIGHT`."""
    for name, t in state.items():
        if t.dtype not in dtypes:
            kinds = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
            raise CheckpointError(
                f"{where} holds weight {printable(name, 80)} as {str(t.dtype).removeprefix('torch.')}, "
                f"not as {kinds}; it is not a model's weights: use a file written by minigpt or re-save the model"
            )
    check_finite(state, where)
    for name, t in state.items():
        biggest = float(t.abs().max()) if t.numel() else 0.0
        if biggest > MAX_WEIGHT:
            raise CheckpointError(
                f"{where} holds weight {printable(name, 80)} with a value of magnitude {biggest:.3g}, beyond "
                f"the {MAX_WEIGHT:g} that a float32 forward pass can carry without overflowing (trained "
                f"weights stay within a few units); use another checkpoint"
            )


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding a NaN or an infinity, naming the first such tensor and the count."""
    bad = non_finite_weights(state)
    if bad:
        raise CheckpointError(
            f"{where} holds NaN or infinite weights ({len(bad)} tensor(s), such as {printable(bad[0], 80)}): the run "
            f"diverged before they were saved; use an earlier checkpoint"
        )


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: str, against: str) -> None:
    """Copy `state` into `model`; a missing, unexpected or mis-shaped weight is one line saying
    that `where` does not match `against` (its model config, its config.json)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a weight whose shape differs from the config's
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), None)
        raise CheckpointError(f"{where} does not match {against}: {printable(detail or first_line(e), 240)}") from None
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} weight(s) such as {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weight(s) such as {printable(unexpected[0], 80)}")
    if parts:
        raise CheckpointError(f"{where} does not match {against}: {'; '.join(parts)}")


@torch.no_grad()
def check_forward(model: torch.nn.Module, where: str) -> None:
    """One forward pass over a window of token ids: weights that are finite but whose products
    overflow float32 are refused here, in one line, rather than deep inside a tool."""
    config = model.config
    ids = (torch.arange(min(config.block_size, 64)) % config.vocab_size)[None]
    if not torch.isfinite(model(ids)).all():
        raise CheckpointError(
            f"{where}: a forward pass of its model overflows float32 (its logits are not finite, though every "
            f"weight is); the weights are damaged or not a trained model's: use another checkpoint"
        )
