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
import os
import pickle
from pathlib import Path, PurePath

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from minigpt.checkpoint.format import (
    INT_LIMIT,
    CheckpointMeta,
    LoadedModel,
    code_refusal,
    first_line,
    is_number,
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
from minigpt.errors import CheckpointError, ConfigError
from minigpt.io import file_problem, printable
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizer import BPETokenizer

# Hugging Face's activation names -> minigpt's; both tanh spellings are the same function
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
END_OF_TEXT = "<|endoftext|>"


def is_hf_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a Hugging Face config.json (of any kind: `folder_file`
    then says what is wrong with one that is not a file)."""
    path = Path(path).expanduser()
    return path.is_dir() and os.path.lexists(path / "config.json")


def folder_file(directory: Path, name: str) -> Path | None:
    """`directory/name` when it is a regular file of the folder, None when there is no such entry.
    Anything else is refused without being opened (a FIFO would block the reader forever, a
    device never ends): a link leading outside the folder (except a Hugging Face cache
    snapshot's links into its repository's blobs/), a pipe, a device, a folder."""
    path = directory / name
    if not os.path.lexists(path):
        return None
    where = f"GPT-2 folder {printable(str(directory), 300)}: {printable(name, 80)}"
    if path.is_symlink():
        try:
            target = path.resolve(strict=False)
        except (OSError, RuntimeError):
            raise CheckpointError(f"{where} is a symbolic link loop; it was not read") from None
        folder = directory.resolve()
        cache = folder.parent.parent / "blobs" if folder.parent.name == "snapshots" else None
        if not target.is_relative_to(folder) and (cache is None or target.parent != cache):
            raise CheckpointError(
                f"{where} is a link to {printable(str(target), 300)}, outside the folder; it was not read: "
                f"copy the file into the folder"
            )
    problem = file_problem(path)
    if problem is not None:
        raise CheckpointError(f"{where} {problem}; it was not read: put the model's file there")
    return path


def read_hf_config(directory: Path) -> dict:
    """The folder's config.json as a dict (its values are checked by `config_from_hf`)."""
    path = folder_file(directory, "config.json")
    if path is None:
        raise CheckpointError(f"{directory} holds no config.json; pass a GPT-2 folder or a .ckpt file")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({first_line(e, 120)}); re-save the model") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a {type(config).__name__}, not a model config")
    return config


def config_from_hf(hf: dict, where: Path) -> GPTConfig:
    """minigpt's `GPTConfig` for a Hugging Face GPT-2 config; anything GPT-2 can be set to that
    this model does not have is refused with one line rather than silently approximated."""
    model_type = _text(hf, "model_type", "gpt2", where)
    if model_type != "gpt2":
        raise CheckpointError(
            f"{where} describes a {shown(model_type)} model; minigpt reads GPT-2 (model_type gpt2) only"
        )
    sizes = {
        ours: _integer(hf, theirs, where)
        for ours, theirs in (
            ("n_layer", "n_layer"),
            ("n_head", "n_head"),
            ("n_embd", "n_embd"),
            ("block_size", "n_positions" if "n_positions" in hf else "n_ctx"),
            ("vocab_size", "vocab_size"),
        )
    }
    activation = _text(hf, "activation_function", "gelu_new", where)
    n_inner = hf.get("n_inner")
    unsupported = [
        (activation not in ACTIVATIONS, f"activation_function={shown(activation)} (known: {', '.join(ACTIVATIONS)})"),
        (
            n_inner is not None and (type(n_inner) is not int or n_inner != 4 * sizes["n_embd"]),
            f"n_inner={shown(n_inner)} (minigpt's MLP is 4 x n_embd = {4 * sizes['n_embd']})",
        ),
        (
            not math.isclose(_number(hf, "layer_norm_epsilon", 1e-5, where), 1e-5, rel_tol=1e-6),
            f"layer_norm_epsilon={shown(hf.get('layer_norm_epsilon'))} (minigpt's LayerNorm uses 1e-5)",
        ),
        (_flag(hf, "scale_attn_by_inverse_layer_idx", False, where), "scale_attn_by_inverse_layer_idx=true"),
        (_flag(hf, "add_cross_attention", False, where), "add_cross_attention=true"),
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
            scale_attn=_flag(hf, "scale_attn_weights", True, where),
            tie_weights=_flag(hf, "tie_word_embeddings", True, where),
            activation=ACTIVATIONS[activation],
        )
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def _integer(hf: dict, key: str, where: Path) -> int:
    value = hf.get(key)
    if type(value) is not int or abs(value) >= INT_LIMIT:
        raise CheckpointError(f"{where}: {key} must be an integer, got {shown(value)}")
    return value


def _number(hf: dict, key: str, default: float, where: Path) -> float:
    value = hf.get(key, default)
    if not is_number(value):
        raise CheckpointError(f"{where}: {key} must be a number, got {shown(value)}")
    return float(value)


def _flag(hf: dict, key: str, default: bool, where: Path) -> bool:
    value = hf.get(key, default)
    if not isinstance(value, bool):
        raise CheckpointError(f"{where}: {key} must be true or false, got {shown(value)}")
    return value


def _text(hf: dict, key: str, default: str, where: Path) -> str:
    value = hf.get(key, default)
    if not isinstance(value, str):
        raise CheckpointError(f"{where}: {key} must be text, got {shown(value)}")
    return value


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors (or all its shards), else of pytorch_model.bin read with
    `weights_only=True` (plain tensors; a file that would run code is refused)."""
    single, index, pickled = (
        folder_file(directory, n) for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )
    try:
        if single is not None:
            return load_file(single)
        if index is not None:
            shards = shard_files(directory, index)
            return {k: v for shard in shards for k, v in load_file(shard).items()}
        if pickled is not None:
            return check_tensors(torch.load(pickled, map_location="cpu", weights_only=True), str(pickled), "weights")
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        raise code_refusal(pickled, e, "re-save the model as model.safetensors") from None
    except Exception as e:  # safetensors, json and pickle each fail in their own way on a bad file
        raise CheckpointError(
            f"the weights in {directory} cannot be read ({first_line(e)}); re-save the model"
        ) from None
    raise CheckpointError(f"{directory} holds a config.json but no model.safetensors or pytorch_model.bin")


def shard_files(directory: Path, index: Path) -> list[Path]:
    """The shard files a model.safetensors.index.json names, each a relative path that stays
    inside `directory` (an index naming /etc/passwd or ../other is refused)."""
    data = json.loads(index.read_text(encoding="utf-8"))
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: field weight_map must map weight names to shard files; re-save the model")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        parts = PurePath(shard).parts
        if not shard or PurePath(shard).is_absolute() or ".." in parts or "\\" in shard or "\0" in shard:
            raise CheckpointError(
                f"{index}: field weight_map names the shard file {shown(shard)}, outside {directory}; "
                f"a shard must be a file inside the model's folder"
            )
    found = [folder_file(directory, shard) for shard in shards]  # a FIFO or a device would hang the reader
    missing = [shard for shard, path in zip(shards, found) if path is None]
    if missing:
        raise CheckpointError(
            f"the weights in {directory} cannot be read: {index.name} names the shard file {shown(missing[0])}, "
            f"which does not exist; re-save the model"
        )
    return found


def state_dict_from_hf(hf: dict[str, torch.Tensor], config: GPTConfig, where: str) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 weights under minigpt's names and layouts; a Conv1D weight that is not a
    matrix is refused (`where`: the folder) before it is transposed."""
    state = {}
    for name, tensor in hf.items():
        if name.endswith(MASK_BUFFERS):
            continue
        if not name.startswith(("transformer.", "lm_head.")):
            name = f"transformer.{name}"
        if name.endswith(CONV1D_WEIGHTS):
            if tensor.dim() != 2:
                raise CheckpointError(
                    f"{where}: weight {printable(name, 80)} must be a matrix, got shape {tuple(tensor.shape)}; "
                    f"re-save the model"
                )
            tensor = tensor.t()  # Conv1D (in, out) -> nn.Linear (out, in)
        state[name] = tensor
    if config.tie_weights and "transformer.wte.weight" in state:
        state.setdefault("lm_head.weight", state["transformer.wte.weight"])
    return state


def load_gpt2_tokenizer(directory: Path) -> BPETokenizer:
    """GPT-2's byte-level BPE from tokenizer.json, or from vocab.json + merges.txt."""
    single, vocab, merges = (folder_file(directory, n) for n in ("tokenizer.json", "vocab.json", "merges.txt"))
    try:
        if single is not None:
            return BPETokenizer(HFTokenizer.from_file(str(single)))
        if vocab is not None and merges is not None:
            tok = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            if tok.token_to_id(END_OF_TEXT) is not None:  # a whole token, never split into bytes
                tok.add_special_tokens([END_OF_TEXT])
            return BPETokenizer(tok)
    except Exception as e:  # the tokenizers library raises its own exception type
        raise CheckpointError(f"the tokenizer in {directory} cannot be read ({first_line(e)})") from None
    raise CheckpointError(f"{directory} holds no tokenizer.json, nor vocab.json and merges.txt; save the tokenizer too")


def load_gpt2(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A Hugging Face GPT-2 folder as a minigpt model with its tokenizer, ready for inference.
    config.json is checked, and its model's size against free memory, before a weight is read."""
    directory = Path(directory).expanduser()
    config = config_from_hf(read_hf_config(directory), directory / "config.json")
    check_memory(config, str(directory / "config.json"))
    tokenizer = load_gpt2_tokenizer(directory)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer in {directory} has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}"
        )
    where = f"GPT-2 folder {directory}"
    state = state_dict_from_hf(check_tensors(read_hf_weights(directory), where, "weights"), config, where)
    check_weight_count(config, state, str(directory / "config.json"))
    check_tensor_values(state, where)
    model = GPT(config)
    load_weights(model, state, where, "its config.json")
    model.eval()
    check_forward(model, where)
    model.to(device)
    meta = CheckpointMeta(
        model_config={"arch": "gpt", **config.to_dict()},
        tokenizer=tokenizer.serialize(),
        source=f"huggingface gpt2: {directory}",
    )
    return LoadedModel(model=model, tokenizer=tokenizer, path=directory, meta=meta)
