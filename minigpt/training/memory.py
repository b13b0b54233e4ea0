"""The memory a training run will need, estimated from its config before the corpus is read or a
model is built, so that a model or a batch that cannot fit is one line instead of a crash deep in
PyTorch (or a machine swapping for minutes). The estimates are in `minigpt/checkpoint/weights.py`."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from minigpt.architectures import ARCHITECTURES
from minigpt.checkpoint.weights import (
    activation_bytes,
    estimate_model_bytes,
    memory_shortfall,
    training_bytes,
)
from minigpt.errors import ConfigError
from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig


def training_device(trainer: DictConfig) -> torch.device | None:
    """The CUDA device the run's tensors go to, or None when they stay in this machine's RAM."""
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda") if torch.cuda.is_available() else None
    return None


def model_config_of(cfg: DictConfig) -> GPTConfig | LSTMConfig:
    """The model `cfg.model` describes, as its config dataclass (checked, nothing built). The
    vocabulary is not known before the corpus is read: a BPE tokenizer's size, else the smallest
    there can be, so the estimate never exceeds what the run needs."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    data = cfg.get("data") or {}
    vocab = data.get("bpe_vocab_size", 2) if data.get("tokenizer") == "bpe" else 2
    arch = model.pop("arch", "gpt")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is unknown; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch][0].from_dict({**model, "vocab_size": model.get("vocab_size") or vocab})


def check_training_memory(cfg: DictConfig) -> None:
    """Refuse, in one line saying how much it needs and how much there is, a model, a training
    batch (`data.batch_size`) or a validation batch (`data.eval_batch_size`) that cannot fit. A
    fine-tuned model (`init_from`) is checked when its checkpoint is read."""
    if cfg.get("init_from"):
        return
    config, data, device = model_config_of(cfg), cfg.get("data") or {}, training_device(cfg.trainer)
    sizes = ", ".join(f"model.{key}={getattr(config, key)}" for key in ("n_layer", "n_embd", "block_size"))
    # weights, gradients and AdamW's two moments
    short = memory_shortfall(4 * estimate_model_bytes(config), device)
    if short:
        raise ConfigError(
            f"training the model ({sizes}), with its gradients and optimizer state, {short}; use a smaller model"
        )
    batch, eval_batch = data.get("batch_size"), data.get("eval_batch_size")
    T = config.block_size
    if isinstance(batch, int) and batch > 0 and (short := memory_shortfall(training_bytes(config, batch), device)):
        raise ConfigError(
            f"training on data.batch_size={batch} windows of {T} tokens at once {short}; "
            f"{accumulation_advice(config, batch, device)}"
        )
    if isinstance(eval_batch, int) and eval_batch > 0:
        need = 4 * estimate_model_bytes(config) + activation_bytes(config, eval_batch, T, training=False)
        if short := memory_shortfall(need, device):
            raise ConfigError(f"validating data.eval_batch_size={eval_batch} windows at once {short}; lower it")


def accumulation_advice(config: GPTConfig | LSTMConfig, batch: int, device: torch.device | None) -> str:
    """How to keep the effective batch when `batch` windows do not fit at once: the largest
    power-of-two batch that fits, and the gradient accumulation that adds up to `batch` (Lightning
    sums the gradients of `accumulate_grad_batches` batches before each optimizer step)."""
    fits = 1 << (batch.bit_length() - 1)
    while fits > 1 and memory_shortfall(training_bytes(config, fits), device):
        fits //= 2
    if memory_shortfall(training_bytes(config, fits), device):
        return "lower model.block_size or use a smaller model"
    steps = -(-batch // fits)
    return (
        f"keep the effective batch with data.batch_size={fits} trainer.accumulate_grad_batches={steps} "
        f"(gradient accumulation), or lower data.batch_size or model.block_size"
    )
