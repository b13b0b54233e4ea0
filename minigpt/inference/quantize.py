"""Dynamic int8 quantization of a trained model, for faster and smaller inference on CPU.

Every `nn.Linear` (attention, MLP, output head) is replaced by PyTorch's dynamically quantized
linear layer: its weight is stored as int8 with one scale per output row, and each call
quantizes the incoming activations to int8 on the fly, multiplies in integers and returns
float32. Embeddings, norms and the attention arithmetic stay float32.

With `tie_weights` the output head shares its matrix with the token embedding: the head gets
an int8 copy and the embedding keeps its float32 matrix, so the input side is unchanged.

We use `torch.ao.quantization.quantize_dynamic`, which torch 2.13 still ships but marks as
deprecated in favour of torchao; a torch without it gets one line saying so.
"""

from __future__ import annotations

import io
import warnings

import torch
import torch.nn as nn

from minigpt.errors import ConfigError

QUANTIZE_MODES = ("int8",)


def check_quantize(mode: str | None, device: torch.device) -> str | None:
    """The quantization mode to apply (None for none), or one clear error for an unknown mode
    or a device the quantized kernels do not run on."""
    if mode is None:
        return None
    if mode not in QUANTIZE_MODES:
        raise unknown_mode(mode)
    if torch.device(device).type != "cpu":
        raise ConfigError(f"quantize={mode} runs on CPU only (dynamic int8 kernels); add device=cpu")
    return mode


def unknown_mode(mode) -> ConfigError:
    return ConfigError(f"quantize={mode!r} is unknown; choose null (float32) or {', '.join(QUANTIZE_MODES)}")


def device_for(mode: str | None, device: str) -> str:
    """The device to run on: `device=auto` means the CPU when quantizing, whose kernels are CPU-only."""
    return "cpu" if mode is not None and device == "auto" else device


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose `nn.Linear` layers compute in int8; `model` itself is unchanged."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        raise ConfigError(
            f"quantize=int8 needs torch.ao.quantization.quantize_dynamic, which torch {torch.__version__} "
            f"no longer has; use torch 2.13 or earlier, or quantize=null"
        ) from None
    with warnings.catch_warnings():
        # the deprecation notices point at torchao; they are about torch's roadmap, not this run
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor, torch.quantize_per_channel.*")
        # one scale per output row rather than per matrix: a row of small weights keeps all 255
        # levels instead of the few that the matrix's largest weight would leave it
        quantized = quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, inplace=False)
    return quantized.eval()


def quantize_model(model: nn.Module, mode: str | None) -> nn.Module:
    """`model` quantized as `mode` says (see `check_quantize`); `model` itself when mode is None."""
    if mode is None:
        return model
    if mode == "int8":
        return quantize_int8(model)
    raise unknown_mode(mode)


def is_quantized(model: nn.Module) -> bool:
    """True when some layer of `model` computes with quantized weights."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def state_dict_bytes(model: nn.Module) -> int:
    """Size of `model.state_dict()` as `torch.save` writes it (shared tensors counted once)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
