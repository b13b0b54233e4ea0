"""The weights of a checkpoint or a GPT-2 folder, checked before a model is built from them: the
memory the model config asks for (refused when the machine lacks it, before anything is
allocated), tensors of the right kind and count, and no NaN or infinity."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from minigpt.checkpoint.format import first_line, shown
from minigpt.errors import CheckpointError
from minigpt.io import printable
from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig

BYTES_PER_VALUE = 4  # models are built in float32


# --------------------------------------------------------------------------- sizes


def parameter_count(config: GPTConfig | LSTMConfig) -> int:
    """The number of parameters of the model `config` describes (a tied LM head counted once),
    from the config alone: nothing is built."""
    C, V = config.n_embd, config.vocab_size
    head = 0 if config.tie_weights else V * C
    if isinstance(config, LSTMConfig):
        return V * C + config.n_layer * (8 * C * C + 8 * C) + head  # 4 gates x (W_ih, W_hh, b_ih, b_hh)
    norm = {"layernorm": C + (C if config.bias else 0), "rmsnorm": C, "none": 0}[config.norm]
    # attention: c_attn (C -> 3C) and c_proj (C -> C); MLP: c_fc (C -> 4C) and c_proj (4C -> C)
    block = 2 * norm + 12 * C * C + (9 * C if config.bias else 0)
    positions = config.block_size * C if config.pos_encoding == "learned" else 0
    return V * C + positions + config.n_layer * block + norm + head


def estimate_model_bytes(config: GPTConfig | LSTMConfig) -> int:
    """Bytes the float32 model `config` describes takes: its parameters and the buffers it builds
    (the sinusoidal position table, ALiBi's slopes)."""
    buffers = 0
    if isinstance(config, GPTConfig) and config.pos_encoding == "sinusoidal":
        buffers = config.block_size * config.n_embd
    elif isinstance(config, GPTConfig) and config.pos_encoding == "alibi":
        buffers = config.n_head
    return BYTES_PER_VALUE * (parameter_count(config) + buffers)


def state_dict_size(config: GPTConfig | LSTMConfig) -> int:
    """The number of values in the model's `state_dict()`, where a tied LM head appears twice."""
    return parameter_count(config) + (config.vocab_size * config.n_embd if config.tie_weights else 0)


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
