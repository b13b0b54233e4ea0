"""GPT-2 from a local Hugging Face folder: its config, weights and BPE tokenizer as a minigpt model.

The folder is what `GPT2LMHeadModel.save_pretrained` writes (or a hub download made beforehand):
config.json; model.safetensors (or its shards) or pytorch_model.bin; tokenizer.json or
vocab.json + merges.txt. Nothing is fetched from the network.

minigpt's GPT uses GPT-2's parameter names, so the mapping is almost the identity:
- Hugging Face's `Conv1D` stores its weight as (in, out), `nn.Linear` as (out, in): the weights of
  c_attn, c_proj and c_fc are transposed;
- checkpoints of the bare GPT2Model (OpenAI's originals on the hub) lack the `transformer.` prefix;
- older files carry each layer's causal mask as `attn.bias` / `attn.masked_bias`: buffers, dropped;
- a tied `lm_head.weight` is usually left out: it is the token embedding.
GPT-2's MLP uses the tanh approximation of GELU (`activation_function: gelu_new`), which is
minigpt's `activation: gelu_tanh`; with exact GELU the logits would differ in the 4th decimal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from minigpt.checkpoint.format import FORMAT_VERSION, LoadedModel
from minigpt.errors import CheckpointError, ConfigError
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizer import BPETokenizer

# Hugging Face's activation names -> minigpt's; both tanh spellings are the same function
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
END_OF_TEXT = "<|endoftext|>"


def is_hf_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a Hugging Face config.json."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / "config.json").is_file()


def read_hf_config(directory: Path) -> dict:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({str(e).splitlines()[0][:120]}); re-save the model") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a {type(config).__name__}, not a model config")
    return config


def config_from_hf(hf: dict, where: Path) -> GPTConfig:
    """minigpt's `GPTConfig` for a Hugging Face GPT-2 config; anything GPT-2 can be set to that
    this model does not have is refused with one line rather than silently approximated."""
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise CheckpointError(f"{where} describes a {model_type!r} model; minigpt reads GPT-2 (model_type gpt2) only")
    sizes = {}
    for ours, theirs in (
        ("n_layer", "n_layer"),
        ("n_head", "n_head"),
        ("n_embd", "n_embd"),
        ("block_size", "n_positions"),
        ("vocab_size", "vocab_size"),
    ):
        value = hf.get(theirs, hf.get("n_ctx")) if theirs == "n_positions" else hf.get(theirs)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: {theirs} must be an integer, got {value!r}")
        sizes[ours] = value
    activation = hf.get("activation_function", "gelu_new")
    unsupported = [
        (activation not in ACTIVATIONS, f"activation_function={activation!r} (known: {', '.join(ACTIVATIONS)})"),
        (
            hf.get("n_inner") not in (None, 4 * sizes["n_embd"]),
            f"n_inner={hf.get('n_inner')!r} (minigpt's MLP is 4 x n_embd = {4 * sizes['n_embd']})",
        ),
        (
            not math.isclose(_number(hf, "layer_norm_epsilon", 1e-5, where), 1e-5, rel_tol=1e-6),
            f"layer_norm_epsilon={hf.get('layer_norm_epsilon')!r} (minigpt's LayerNorm uses 1e-5)",
        ),
        (bool(hf.get("scale_attn_by_inverse_layer_idx")), "scale_attn_by_inverse_layer_idx=true"),
        (bool(hf.get("add_cross_attention")), "add_cross_attention=true"),
    ]
    problems = [what for bad, what in unsupported if bad]
    if problems:
        raise CheckpointError(f"{where} sets options minigpt's GPT does not have: {'; '.join(problems)}")
    try:
        return GPTConfig(
            **sizes,
            dropout=_number(hf, "resid_pdrop", 0.1, where),  # minigpt has one dropout rate for all three
            bias=True,
            pos_encoding="learned",
            norm="layernorm",
            scale_attn=bool(hf.get("scale_attn_weights", True)),
            tie_weights=bool(hf.get("tie_word_embeddings", True)),
            activation=ACTIVATIONS[activation],
        )
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def _number(hf: dict, key: str, default: float, where: Path) -> float:
    value = hf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors (or all its shards), else of pytorch_model.bin read with
    `weights_only=True` (plain tensors; a file that would run code is refused)."""
    single, index, pickled = (
        directory / n for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(directory / shard).items()}
        if pickled.is_file():
            state = torch.load(pickled, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise CheckpointError(f"{pickled} holds a {type(state).__name__}, not a dict of weights")
            return state
    except CheckpointError:
        raise
    except Exception as e:  # safetensors, json and pickle each fail in their own way on a bad file
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"the weights in {directory} cannot be read ({first}); re-save the model") from None
    raise CheckpointError(f"{directory} holds a config.json but no model.safetensors or pytorch_model.bin")


def state_dict_from_hf(hf: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 weights under minigpt's names and layouts."""
    state = {}
    for name, tensor in hf.items():
        if name.endswith(MASK_BUFFERS):
            continue
        if not name.startswith(("transformer.", "lm_head.")):
            name = f"transformer.{name}"
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()  # Conv1D (in, out) -> nn.Linear (out, in)
        state[name] = tensor
    if config.tie_weights and "transformer.wte.weight" in state:
        state.setdefault("lm_head.weight", state["transformer.wte.weight"])
    return state


def load_gpt2_tokenizer(directory: Path) -> BPETokenizer:
    """GPT-2's byte-level BPE from tokenizer.json, or from vocab.json + merges.txt."""
    try:
        if (directory / "tokenizer.json").is_file():
            return BPETokenizer(HFTokenizer.from_file(str(directory / "tokenizer.json")))
        vocab, merges = directory / "vocab.json", directory / "merges.txt"
        if vocab.is_file() and merges.is_file():
            tok = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            if tok.token_to_id(END_OF_TEXT) is not None:  # a whole token, never split into bytes
                tok.add_special_tokens([END_OF_TEXT])
            return BPETokenizer(tok)
    except Exception as e:  # the tokenizers library raises its own exception type
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"the tokenizer in {directory} cannot be read ({first})") from None
    raise CheckpointError(f"{directory} holds no tokenizer.json, nor vocab.json and merges.txt; save the tokenizer too")


def load_gpt2(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A Hugging Face GPT-2 folder as a minigpt model with its tokenizer, ready for inference."""
    directory = Path(directory).expanduser()
    config = config_from_hf(read_hf_config(directory), directory / "config.json")
    tokenizer = load_gpt2_tokenizer(directory)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer in {directory} has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}"
        )
    state = state_dict_from_hf(read_hf_weights(directory), config)
    model = GPT(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a weight whose shape differs from config.json's
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), "shape mismatch")
        raise CheckpointError(f"the weights in {directory} do not match its config.json: {detail[:200]}") from None
    if missing or unexpected:
        what = f"missing {len(missing)} weight(s) such as {missing[0]}" if missing else ""
        what += "; " if missing and unexpected else ""
        what += f"{len(unexpected)} unknown weight(s) such as {unexpected[0]}" if unexpected else ""
        raise CheckpointError(f"the weights in {directory} are not GPT-2's: {what}")
    model.to(device).eval()
    meta = {
        "format_version": FORMAT_VERSION,
        "model_config": {"arch": "gpt", **config.to_dict()},
        "tokenizer": tokenizer.serialize(),
        "run_config": None,
        "source": f"huggingface gpt2: {directory}",
    }
    return LoadedModel(model=model, tokenizer=tokenizer, path=directory, meta=meta)
