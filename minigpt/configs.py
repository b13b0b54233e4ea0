"""Typed configs: the schemas Hydra checks a composed config against, so that a wrong type or a
misspelt key is one line before anything starts (`model.n_layer=abc`, `model.n_layers=4`).

The schemas are made from the dataclasses the code already uses, so a field is declared once:
`GPTConfig` (minigpt/model.py) and `LSTMConfig` (minigpt/lstm.py) give the `model` group's,
`SamplingConfig` (minigpt/sampling.py) the sampling half of `generate`'s. Each YAML file names
its schema first in its defaults list (`defaults: [gpt_schema, _self_]`). Each field declares its
type, choices and range (`0 < top_p <= 1`) with `option(...)` (minigpt/schema.py), checked when the
config is composed; checks that relate several fields (`n_embd` divisible by `n_head`) stay in the
dataclasses' `__post_init__`.

`register()` puts the schemas in Hydra's ConfigStore; every tool calls it before composing, and
`compose("train", [...])` does both for Python code (benchmarks, notebooks).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from minigpt.lstm import LSTMConfig
from minigpt.model import GPTConfig
from minigpt.sampling import SamplingConfig
from minigpt.schema import check_values, declared, option
from minigpt.threads import THREADS
from minigpt.tokenizer import BPE_VOCAB_SIZES, TOKENIZERS


def fields_of(config_cls: type, skip: tuple[str, ...] = ()) -> list[tuple]:
    """(name, type, field) of every field of the dataclass `config_cls` but `skip`, with the same
    types and defaults, for `dataclasses.make_dataclass`."""
    hints = typing.get_type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING:
            default = field(default=f.default, metadata=f.metadata)
        elif f.default_factory is not dataclasses.MISSING:
            default = field(default_factory=f.default_factory, metadata=f.metadata)
        else:
            default = field(default=MISSING, metadata=f.metadata)
        out.append((f.name, hints[f.name], default))
    return out


# the model group: `arch` picks the family (minigpt/architectures.py); vocab_size comes from the
# data's tokenizer, so a model config does not set it (init_from replaces the whole node)
ARCH_DOC = "the model family (minigpt/architectures.py)"
GPTSchema = dataclasses.make_dataclass(
    "GPTSchema",
    [
        ("arch", str, option("gpt", doc="the model family (minigpt/architectures.py)")),
        *fields_of(GPTConfig, skip=("vocab_size",)),
    ],
)
LSTMSchema = dataclasses.make_dataclass(
    "LSTMSchema",
    [
        ("arch", str, option("lstm", doc="the model family (minigpt/architectures.py)")),
        *fields_of(LSTMConfig, skip=("vocab_size",)),
    ],
)


# what every random generator a seed reaches accepts: numpy and Lightning's seed_everything take
# 0 ... 2**32 - 1, torch more
SEED_MAX = 2**32 - 1
# float32 matmul precision: torch's three settings, or auto (minigpt/training/precision.py times this machine)
MATMUL_PRECISIONS = ("highest", "high", "medium", "auto")
SEED_DOC = "seed of the random generators (0 to 2**32 - 1)"


@dataclass
class GenerateOptions:
    """conf/generate.yaml: what to continue, how much, and how (beam search when num_beams > 1)."""

    ckpt: str = MISSING
    prompt: str = "\n"
    prompt_file: str | None = None
    unknown: str = "error"
    max_new_tokens: int = option(500, doc="tokens to add to the prompt", low=0)
    num_samples: int = option(1, doc="continuations to draw", low=1)
    num_beams: int = option(1, doc="beam search with this many beams when > 1", low=1)
    length_penalty: float = option(1.0, doc="beam search: 1.0 ranks by average log-probability per token")
    stop: list[str] = field(default_factory=list)
    seed: int | None = option(None, doc=SEED_DOC + "; null: a random one", low=0, high=SEED_MAX)
    device: str = "auto"
    quantize: str | None = None
    use_cache: bool = True
    # tokens the model reads at most; null = block_size (longer: not with learned positions)
    context: int | None = option(
        None,
        doc="tokens the model reads while it writes; past block_size only where the position encoding allows",
        low=1,
        hint="null = block_size",
    )
    stream: bool = True
    interactive: bool = False
    threads: Any = option("auto", doc="CPU threads: auto (by the work of a step) or a count", **THREADS)


GenerateSchema = dataclasses.make_dataclass("GenerateSchema", [*fields_of(GenerateOptions), *fields_of(SamplingConfig)])


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="gpt_schema", node=GPTSchema)
    cs.store(group="model", name="lstm_schema", node=LSTMSchema)
    cs.store(name="generate_schema", node=GenerateSchema)


# conf/ sits beside the package in the repository, so every tool finds it from any directory
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """A tool's config as its command line would compose it (`compose("train", ["model=tiny"])`),
    checked against the schemas: for Python code that calls the library without a command."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    check_composed(cfg, config_name)
    return cfg


# --------------------------------------------------------------------------- the train config's groups
# Each dataclass below declares what one group's YAML sets: the type, default, choices and range of
# every key minigpt reads (`minigpt/schema.py`), checked by `check_composed` after Hydra composed
# the config. Hydra's struct mode already refuses a key no YAML file holds; a node with a
# `_target_` takes more of its target's arguments with a leading `+` (`+trainer.limit_val_batches=4`,
# `+optim.amsgrad=true`), which `minigpt/options.py` checks against the target's signature: those
# pass-through arguments are the target's to check, since their meaning is its own.


@dataclass
class CheckpointOptions:
    """train.yaml's `checkpoint`: when checkpoints/last.ckpt is written."""

    every_n_steps: int = option(100, doc="write checkpoints/last.ckpt every N optimizer steps", low=1)


@dataclass
class SampleOptions:
    """train.yaml's `sample`: the text written to sample.txt when training ends."""

    prompt: str = option("\n", doc="the text the sample continues")
    max_new_tokens: int = option(500, doc="tokens of the end-of-run sample", low=0, hint="0: no end-of-run sample")
    temperature: float = option(0.8, doc="sampling temperature of the end-of-run sample", low=0)


@dataclass
class TrainOptions:
    """conf/train.yaml's top level (the groups are typed by their own dataclasses)."""

    task_name: str = option("train", doc="names the outputs folder (outputs/<task_name>/...)")
    seed: int = option(1337, doc=SEED_DOC, low=0, high=SEED_MAX)
    ckpt_path: str | None = option(None, doc="resume: a checkpoint whose run continues")
    init_from: str | None = option(None, doc="fine-tune: a checkpoint or GPT-2 folder a new run starts from")
    resume: str | None = option(
        None,
        doc="auto: continue run_dir's last.ckpt if there is one",
        choices=("auto",),
        hint="pass resume=auto or ckpt_path=/path/to/last.ckpt",
    )
    run_dir: str | None = option(None, doc="where the run writes; null: outputs/train/runs/<time>")
    matmul_precision: str = option(
        "high", doc="float32 matmul precision (auto times this machine)", choices=MATMUL_PRECISIONS
    )
    keep_freed_memory: bool = option(True, doc="keep memory a step frees for the next (glibc malloc)")
    compile: bool = option(False, doc="torch.compile the model (pays off on GPUs)")
    checkpoint: CheckpointOptions = option(factory=CheckpointOptions, doc="when last.ckpt is written")
    sample: SampleOptions = option(factory=SampleOptions, doc="the end-of-run sample")


@dataclass
class TrainerOptions:
    """conf/trainer/*.yaml: the `lightning.pytorch.Trainer` arguments minigpt sets and reads. Other
    Trainer arguments pass through with a leading + (`+trainer.limit_val_batches=4`), checked by
    Lightning; `accelerator`, `devices`, `precision`, `max_time` and `strategy` take what Lightning
    takes (names, counts or objects), so they are Lightning's to check too."""

    accelerator: Any = option("auto", doc="cpu, gpu, mps or auto (a device this machine has)")
    devices: Any = option(1, doc="how many devices (or auto, or a list of ids)")
    precision: Any = option("32-true", doc="Lightning's precision: 32-true, bf16-mixed, 16-mixed, ...")
    max_steps: int = option(3000, doc="optimizer steps of the run", low=1)
    max_time: Any = option(None, doc="a wall-clock budget, e.g. {seconds: 90}, instead of steps")
    max_epochs: int = option(-1, doc="-1: the training stream is endless (steps or time end the run)", low=-1)
    val_check_interval: float | None = option(
        250, doc="validate every N steps (or a fraction in (0, 1])", above=0, hint="a number of steps, or a fraction"
    )
    check_val_every_n_epoch: int | None = option(None, doc="null: validation follows val_check_interval", low=1)
    num_sanity_val_steps: int = option(1, doc="validation batches run before training (-1: all)", low=-1)
    gradient_clip_val: float | None = option(1.0, doc="clip the gradient norm to this (null or 0: no clipping)", low=0)
    accumulate_grad_batches: int = option(1, doc="batches whose gradients make one step", low=1)
    log_every_n_steps: int = option(10, doc="log training metrics every N steps", low=1)
    enable_progress_bar: bool = option(True, doc="Lightning's progress bar")
    enable_model_summary: bool = option(False, doc="Lightning's table of modules at the start")
    deterministic: Any = option(False, doc="true, false or warn: torch's deterministic algorithms")
    strategy: Any = option("auto", doc="Lightning's strategy (trainer=ddp sets DDP)")


@dataclass
class AdamWOptions:
    """conf/optim/adamw.yaml: `torch.optim.AdamW`; weight decay applies to matrices only."""

    lr: float = option(1e-3, doc="learning rate (the peak of the schedule)", low=0)
    betas: list[float] = option(factory=lambda: [0.9, 0.99], doc="Adam's two moment decay rates")
    weight_decay: float = option(0.1, doc="decoupled weight decay of the matrices", low=0)
    eps: float = option(1e-8, doc="added to Adam's denominator", above=0)


@dataclass
class SGDOptions:
    """conf/optim/sgd.yaml: `torch.optim.SGD` with momentum, for comparison."""

    lr: float = option(0.1, doc="learning rate (the peak of the schedule)", low=0)
    momentum: float = option(0.9, doc="momentum", low=0)
    weight_decay: float = option(0.0, doc="weight decay", low=0)


@dataclass
class MuonOptions:
    """conf/optim/muon.yaml: `MuonAdamW`, Muon for the blocks' matrices and AdamW for the rest."""

    lr: float = option(0.02, doc="Muon's learning rate", low=0)
    momentum: float = option(0.95, doc="Muon's momentum", low=0)
    nesterov: bool = option(True, doc="Nesterov momentum")
    momentum_warmup_steps: int = option(0, doc="steps over which momentum rises from momentum_start", low=0)
    momentum_start: float = option(0.85, doc="Muon's momentum at step 0 of the warmup", low=0)
    ns_steps: int = option(5, doc="Newton-Schulz iterations of the orthogonalisation", low=1)
    split_fused: bool = option(False, doc="orthogonalise queries, keys and values each on its own")
    adam_lr: float = option(3e-3, doc="AdamW's learning rate (embeddings, head, 1-D parameters)", low=0)
    betas: list[float] = option(factory=lambda: [0.9, 0.99], doc="AdamW's two moment decay rates")
    eps: float = option(1e-8, doc="added to AdamW's denominator", above=0)
    weight_decay: float = option(0.0, doc="AdamW's weight decay", low=0)


@dataclass
class ConstantOptions:
    """conf/scheduler/constant.yaml: a linear warmup, then the optimizer's lr."""

    warmup_steps: int = option(0, doc="steps of linear warmup from 0", low=0)


@dataclass
class CosineOptions:
    """conf/scheduler/cosine.yaml: linear warmup, then cosine decay to min_lr_ratio * lr."""

    warmup_steps: int = option(100, doc="steps of linear warmup from 0", low=0)
    min_lr_ratio: float = option(0.1, doc="the last lr as a fraction of the peak", low=0, high=1)


@dataclass
class WSDOptions:
    """conf/scheduler/wsd.yaml: warmup, a flat lr, then a linear decay over the last decay_fraction."""

    warmup_steps: int = option(100, doc="steps of linear warmup from 0", low=0)
    decay_fraction: float = option(0.2, doc="the share of the run the lr decays over", low=0, high=1)
    min_lr_ratio: float = option(0.0, doc="the last lr as a fraction of the peak", low=0, high=1)


@dataclass
class CorpusOptions:
    """conf/data/shakespeare.yaml and text.yaml: `CharDataModule`, a text corpus cut into windows."""

    path: str | None = option(None, doc="a UTF-8 text file (null: the named corpus, downloaded once)")
    name: str | None = option("tinyshakespeare", doc="the corpus's name in cache_dir")
    cache_dir: str = option("data", doc="where a downloaded corpus is kept")
    url: str | None = option(None, doc="where the corpus is downloaded from")
    sha256: str | None = option(None, doc="the download's checksum")
    block_size: int = option(64, doc="tokens per training window (model.block_size)", low=1)
    batch_size: int = option(32, doc="windows per training batch", low=1)
    batch_ramp_steps: int = option(0, doc="steps over which the batch grows to batch_size", low=0, hint="0 = off")
    batch_ramp_start: int = option(16, doc="windows per batch at step 0 of the ramp", low=1)
    eval_batch_size: int = option(128, doc="windows per validation batch", low=1)
    val_fraction: float = option(0.1, doc="the share of the corpus kept for validation", above=0, below=1)
    val_windows: int | None = option(
        None, doc="validate on N windows (null: every window)", low=1, hint="null: the whole validation split"
    )
    seed: int = option(1337, doc="the order of training batches", low=0, high=SEED_MAX)
    tokenizer: str = option("char", doc="char (one token per character) or bpe", choices=TOKENIZERS)
    bpe_vocab_size: int = option(1024, doc="tokens of the BPE vocabulary (tokenizer=bpe)", **BPE_VOCAB_SIZES)


@dataclass
class RepeatsOptions(CorpusOptions):
    """conf/data/repeats.yaml: `RepeatsDataModule`, the corpus cut into segments each written twice."""

    min_len: int = option(4, doc="the shortest segment, in tokens", low=1)
    max_len: int | None = option(None, doc="the longest segment (null: block_size // 2)", low=1)
    repeat_seed: int = option(0, doc="how the text is cut", low=0, high=SEED_MAX)


@dataclass
class LabelledOptions:
    """conf/data/labelled.yaml: `LabelledDataModule`, one `label<TAB>text` example per line."""

    path: str = option(MISSING, doc="the labelled file (label<TAB>text lines)")
    block_size: int = option(64, doc="texts are cut and padded to this many tokens", low=1)
    batch_size: int = option(32, doc="examples per training batch", low=1)
    eval_batch_size: int = option(128, doc="examples per validation batch", low=1)
    val_fraction: float = option(0.2, doc="the share of examples kept for validation", above=0, below=1)
    split_seed: int = option(1337, doc="the fixed shuffle of the split", low=0, high=SEED_MAX)
    seed: int = option(1337, doc="the order of training batches", low=0, high=SEED_MAX)


@dataclass
class DigitsOptions:
    """conf/data/digits.yaml: `DigitsDataModule`, the 8x8 digits as captions and sums (task=caption)."""

    block_size: int = option(32, doc="positions of the longest question", low=1)
    patch_size: int | None = option(4, doc="pixels per side of one image token (task.patch_size)", low=1)
    batch_size: int = option(128, doc="questions per training batch", low=1)
    eval_batch_size: int = option(512, doc="questions per validation batch", low=1)
    val_fraction: float = option(0.2, doc="the share of images kept for validation", above=0, below=1)
    split_seed: int = option(1337, doc="the fixed shuffle of the split", low=0, high=SEED_MAX)
    plus_fraction: float = option(0.5, doc="the share of training questions that are sums", above=0, below=1)
    seed: int = option(1337, doc="the order of training batches", low=0, high=SEED_MAX)


@dataclass
class LMTask:
    """conf/task/lm.yaml: next-token language modelling."""

    name: str = option("lm", doc="what is trained", choices=("lm",))
    monitor: str = option("val/loss", doc="the metric best.ckpt is chosen by", choices=("val/loss",))


@dataclass
class ClassifyTask:
    """conf/task/classify.yaml: a label head on init_from's trunk."""

    name: str = option("classify", doc="what is trained", choices=("classify",))
    monitor: str = option("val/acc", doc="the metric best.ckpt is chosen by", choices=("val/acc", "val/loss"))
    pooling: str = option("last", doc="the text's representation: last position or mean", choices=("last", "mean"))
    freeze_trunk: bool = option(False, doc="train the head only")


@dataclass
class CaptionTask:
    """conf/task/caption.yaml: the baby vision-language model on the digits."""

    name: str = option("caption", doc="what is trained", choices=("caption",))
    monitor: str = option(
        "val/acc",
        doc="the metric best.ckpt is chosen by",
        choices=("val/acc", "val/caption_acc", "val/plus_acc", "val/loss"),
    )
    patch_size: int = option(4, doc="pixels per side of one image token", choices=(1, 2, 4, 8))


@dataclass
class OptimizationStatsOptions:
    """conf/callbacks/default.yaml's `optimization`: gradient norms, weight norms and update ratios."""

    every_n_steps: int | None = option(
        None, doc="record every N optimizer steps", low=1, hint="null = trainer.log_every_n_steps"
    )


@dataclass
class TextSamplesOptions:
    """conf/callbacks/default.yaml's `samples`: seeded samples at a few temperatures, and the final one."""

    every_n_val: int = option(4, doc="sample at the first validation and every N-th after it", low=1)
    temperatures: list[float] = option(factory=lambda: [0.5, 0.8, 1.0], doc="one sample per temperature")
    prompt: str = option("\n", doc="the text the samples continue")
    max_new_tokens: int = option(200, doc="tokens of each sample", low=0)
    final: dict | None = option(None, doc="the end-of-run sample's prompt, max_new_tokens and temperature (sample)")
    seed: int | None = option(None, doc=SEED_DOC + "; null: unseeded", low=0, high=SEED_MAX)


@dataclass
class AttentionMapsOptions:
    """conf/callbacks/default.yaml's `attention`: each layer's attention on the first validation characters."""

    every_n_val: int = option(1, doc="draw at the first validation and every N-th after it", low=1)
    n_chars: int | None = option(32, doc="the first N validation characters (at most block_size)", low=1)


@dataclass
class EmbeddingProjectorOptions:
    """conf/callbacks/default.yaml's `projector`: the token embeddings in TensorBoard's PROJECTOR."""

    every_n_val: int = option(4, doc="record at the first validation and every N-th after it", low=1)


@dataclass
class LogitHistogramsOptions:
    """conf/callbacks/default.yaml's `logits`: histograms of the output logits and probabilities."""

    every_n_val: int = option(1, doc="record at the first validation and every N-th after it", low=1)
    n_windows: int = option(8, doc="validation windows the histograms are drawn from", low=1)


@dataclass
class HeadScoresOptions:
    """conf/callbacks/default.yaml's `heads`: head scores, logit lens, induction and in-context learning."""

    every_n_val: int = option(1, doc="score at the first validation and every N-th after it", low=1)
    n_windows: int = option(8, doc="validation windows of the head scores and the logit lens", low=1)
    n_random: int = option(8, doc="random sequences, each written twice, of the induction score", low=1)
    n_icl_windows: int = option(32, doc="validation windows of the in-context-learning score", low=1)


@dataclass
class CaptionViewsOptions:
    """conf/task/caption.yaml's `captions`: validation images, their captions and image attention."""

    every_n_val: int = option(1, doc="draw at the first validation and every N-th after it", low=1)
    n_images: int = option(24, doc="validation images captioned", low=1)
    n_attention: int = option(6, doc="images whose attention is drawn", low=1)


@dataclass
class SymptomsOptions:
    """conf/callbacks/default.yaml's `symptoms`: the thresholds that name a classic failure
    (docs/debugging.md measures them)."""

    every_n_steps: int = option(10, doc="look at the gradients every N steps", low=1)
    spike_factor: float = option(1.5, doc="a loss above this multiple of its recent minimum is a spike", above=1)
    diverge_factor: float = option(2.0, doc="a loss above this multiple of the first step's is divergence", above=1)
    plateau_steps: int = option(200, doc="the step the plateau test looks at", low=1)
    plateau_drop: float = option(
        0.1, doc="a relative loss drop below this by plateau_steps is a plateau", above=0, below=1
    )
    explode_norm: float = option(100.0, doc="a gradient norm above this is exploding", above=0)
    vanish_ratio: float = option(
        0.01, doc="first over last block's gradient norm below this is vanishing", above=0, below=1
    )
    saturated_rows: float = option(
        0.2, doc="a share of attention rows on one key above this is saturation", low=0, below=1
    )
    dead_units: float = option(0.25, doc="a share of never-active MLP units above this is dead units", low=0, below=1)
    repeat_fraction: float = option(
        0.5, doc="a share of repeated windows of the final sample above this is repetition", low=0, below=1
    )
    n_windows: int = option(4, doc="validation windows the attention and MLP tests read", low=1)


@dataclass
class EMAOptions:
    """conf/callbacks/ema.yaml's `ema`: Lightning's `EMAWeightAveraging`; its other arguments pass
    through with a leading + (`+callbacks.ema.update_every_n_steps=2`), checked by Lightning."""

    decay: float = option(0.98, doc="ema = decay * ema + (1 - decay) * weights after each step", low=0, high=1)


# the options of each `_target_` a group's YAML names
TARGET_OPTIONS: dict[str, type] = {
    "lightning.pytorch.Trainer": TrainerOptions,
    "torch.optim.AdamW": AdamWOptions,
    "torch.optim.SGD": SGDOptions,
    "minigpt.training.optim.MuonAdamW": MuonOptions,
    "minigpt.training.schedules.constant": ConstantOptions,
    "minigpt.training.schedules.cosine": CosineOptions,
    "minigpt.training.schedules.wsd": WSDOptions,
    "minigpt.data.corpus.CharDataModule": CorpusOptions,
    "minigpt.data.repeats.RepeatsDataModule": RepeatsOptions,
    "minigpt.data.labelled.LabelledDataModule": LabelledOptions,
    "minigpt.data.digits.DigitsDataModule": DigitsOptions,
    "minigpt.training.callbacks.OptimizationStats": OptimizationStatsOptions,
    "minigpt.training.callbacks.TextSamples": TextSamplesOptions,
    "minigpt.training.callbacks.AttentionMaps": AttentionMapsOptions,
    "minigpt.training.callbacks.EmbeddingProjector": EmbeddingProjectorOptions,
    "minigpt.training.callbacks.LogitHistograms": LogitHistogramsOptions,
    "minigpt.training.callbacks.HeadScores": HeadScoresOptions,
    "minigpt.training.vlm.CaptionViews": CaptionViewsOptions,
    "minigpt.training.symptoms.Symptoms": SymptomsOptions,
    "lightning.pytorch.callbacks.EMAWeightAveraging": EMAOptions,
}
TASKS: dict[str, type] = {"lm": LMTask, "classify": ClassifyTask, "caption": CaptionTask}


@dataclass
class TaskChoice:
    """`task.name`, whichever task is chosen: one of `TASKS` (each task's own schema then types the rest)."""

    name: str = option("lm", doc="what is trained", choices=tuple(TASKS), hint="pick it with task=<name>")


# the model group's declarations by its `arch` (the ranges OmegaConf's schema cannot hold)
MODEL_CONFIGS = {"gpt": GPTConfig, "lstm": LSTMConfig}


def check_composed(cfg: DictConfig, config_name: str) -> None:
    """Every declared option of a composed config against its declaration (`minigpt/schema.py`):
    the tool's top level, each group with a `_target_` by its target's options, each callback of
    `callbacks` by its own `_target_`'s options, and the task. One
    `ConfigError` line for the first value that does not fit. Values are read resolved, so an
    interpolation (`${model.block_size}`) is checked as what it gives."""
    values = OmegaConf.to_container(cfg, resolve=True)
    model = values.get("model")
    if config_name == "train" and isinstance(model, dict):  # first: other groups read its sizes
        check_values(MODEL_CONFIGS.get(model.get("arch", "gpt"), GPTConfig), model, "model")
    if config_name in TOOL_OPTIONS:
        _check_node(TOOL_OPTIONS[config_name], values, "")
    for group in ("trainer", "optim", "scheduler", "data"):
        node = values.get(group)
        if isinstance(node, dict) and node.get("_target_") in TARGET_OPTIONS:
            _check_node(TARGET_OPTIONS[node["_target_"]], node, group)
    callbacks = values.get("callbacks")
    for name, node in callbacks.items() if isinstance(callbacks, dict) else []:
        if isinstance(node, dict) and node.get("_target_") in TARGET_OPTIONS:
            _check_node(TARGET_OPTIONS[node["_target_"]], node, f"callbacks.{name}")
    task = values.get("task")
    if config_name == "train" and isinstance(task, dict):
        check_values(TaskChoice, {"name": task.get("name", "lm")}, "task")
        _check_node(TASKS[task.get("name", "lm")], task, "task")


def _check_node(cls: type, node: dict, prefix: str) -> None:
    """`check_values` on `node`, then on each nested node a field of `cls` declares as a dataclass."""
    check_values(cls, node, prefix)
    for name, (hint, _) in declared(cls).items():
        if dataclasses.is_dataclass(hint) and isinstance(node.get(name), dict):
            _check_node(hint, node[name], f"{prefix}.{name}" if prefix else name)


# --------------------------------------------------------------------------- the tools' configs


@dataclass
class TextSource:
    """The `data` of evaluate and interpret: the text measured."""

    path: str | None = option(None, doc="a text file (null: the checkpoint's own validation split)")
    split: str | None = option(
        None, doc="val (the last val_fraction) or all; null: val without data.path, all with it", choices=("val", "all")
    )
    val_fraction: float | None = option(None, doc="null: the checkpoint's own", above=0, below=1)


@dataclass
class GenerationQuality:
    """evaluate's `generation`: the table of generation quality across decoding strategies."""

    prompts: int = option(20, doc="prompts cut from the text", low=1)
    prompt_chars: int = option(32, doc="characters of each prompt", low=1)
    new_chars: int = option(100, doc="characters each strategy adds", low=1)
    seed: int = option(1337, doc=SEED_DOC, low=0, high=SEED_MAX)
    strategies: Any = option(None, doc="name: decoding options (temperature, top_k, top_p, num_beams, ...)")


@dataclass
class EvaluateOptions:
    """conf/evaluate.yaml: loss, perplexity and generation quality of a checkpoint."""

    ckpt: str = option(MISSING, doc="the checkpoint to evaluate")
    data: TextSource = option(factory=TextSource, doc="the text measured")
    unknown: str = option("error", doc="characters outside the vocabulary: error, skip or one replacement")
    stride: int | None = option(None, doc="windows start every stride tokens", low=1, hint="null = block_size")
    batch_size: int = option(64, doc="windows scored at once", low=1)
    context: int | None = option(
        None,
        doc="tokens in each scored window; past block_size only where the position encoding allows",
        low=1,
        hint="null = block_size",
    )
    device: str = option("auto", doc="auto, cpu, cuda, cuda:1, mps")
    threads: Any = option("auto", doc="CPU threads: auto (by the work of a step) or a count", **THREADS)
    quantize: str | None = option(None, doc="null (float32) or int8")
    out_dir: str = option(MISSING, doc="a new or empty folder for the results")
    generation: GenerationQuality = option(factory=GenerationQuality, doc="the generation-quality table")


@dataclass
class DiagnoseOptions:
    """conf/diagnose.yaml: figures of what a trained model does with a text."""

    ckpt: str = option(MISSING, doc="the checkpoint to diagnose")
    text: str = option("", doc="the text the figures show")
    text_file: str | None = option(None, doc="a file whose text is used instead of text")
    unknown: str = option("error", doc="characters outside the vocabulary: error, skip or one replacement")
    temperatures: Any = option(None, doc="sampling temperatures of the samples (0 = greedy)")
    max_new_tokens: int = option(200, doc="tokens of each sample", low=0)
    seed: int | None = option(1337, doc=SEED_DOC, low=0, high=SEED_MAX)
    device: str = option("auto", doc="auto, cpu, cuda, cuda:1, mps")
    out_dir: str = option(MISSING, doc="a new or empty folder for the figures")


@dataclass
class InterpretOptions:
    """conf/interpret.yaml: head scores, ablations, logit lens and the attention explorer."""

    ckpt: str = option(MISSING, doc="the checkpoint to interpret")
    text: str = option("", doc="the text of the attention explorer and the logit lens")
    text_file: str | None = option(None, doc="a file whose text is used instead of text")
    max_chars: int = option(256, doc="the characters the explorer shows", low=2)
    unknown: str = option("error", doc="characters outside the vocabulary: error, skip or one replacement")
    data: TextSource = option(factory=TextSource, doc="the text the scores are measured on")
    windows: int | None = option(256, doc="windows of block_size characters", low=1, hint="null = all of them")
    n_random: int = option(16, doc="random sequences for the induction score", low=1)
    ablate: list[str] = option(factory=list, doc="heads removed together, as L<layer>H<head>")
    batch_size: int = option(64, doc="windows run at once", low=1)
    device: str = option("auto", doc="auto, cpu, cuda, cuda:1, mps")
    out_dir: str = option(MISSING, doc="a new or empty folder for the results")


@dataclass
class ExportOptions:
    """conf/export.yaml: a checkpoint as a torch.export program or an ONNX model."""

    ckpt: str = option(MISSING, doc="the checkpoint to export")
    format: str = option("exported", doc="exported (.pt2) or onnx (.onnx)", choices=("exported", "onnx"))
    out: str | None = option(None, doc="the file to write (null: beside the checkpoint)")
    force: bool = option(False, doc="replace an existing out")


@dataclass
class ClassifyOptions:
    """conf/classify.yaml: the label a task=classify checkpoint gives a text."""

    ckpt: str = option(MISSING, doc="a checkpoint of train.py task=classify")
    text: str = option(MISSING, doc="the text to classify")


@dataclass
class CaptionOptions:
    """conf/caption.yaml: a digit's caption, or both tasks measured on the validation images."""

    ckpt: str = option(MISSING, doc="a checkpoint of train.py task=caption")
    image: str | None = option(None, doc="a picture of one digit (null: measure the validation images)")
    out_dir: str = option(MISSING, doc="a new or empty folder for the figures")
    n_examples: int = option(6, doc="validation images shown in the figures", low=1)


@dataclass
class ReportOptions:
    """conf/report.yaml: a table and plots of a sweep's jobs."""

    dir: str = option(MISSING, doc="the Hydra multirun folder to summarise")
    out: str | None = option(None, doc="where report.csv and the plots go (null: the sweep folder)")
    curves: list[str] = option(factory=list, doc="TensorBoard scalars overlaid for every job")
    log_y: bool = option(False, doc="log scale for the curves plots")


# the top level of each tool's config
TOOL_OPTIONS: dict[str, type] = {
    "train": TrainOptions,
    "generate": GenerateSchema,
    "evaluate": EvaluateOptions,
    "diagnose": DiagnoseOptions,
    "interpret": InterpretOptions,
    "export": ExportOptions,
    "classify": ClassifyOptions,
    "caption": CaptionOptions,
    "report": ReportOptions,
}


# --------------------------------------------------------------------------- --help from the schemas


def tool_help(config_name: str) -> str:
    """A tool's --help: its header, its config groups (train only), every option of its schema
    with its type, default and meaning, and its footer. The defaults are those of the tool's
    YAML; the full composed config stays one flag away (--cfg job)."""
    raw = OmegaConf.load(Path(CONF_DIR) / f"{config_name}.yaml")
    texts = raw.hydra.help if "hydra" in raw and "help" in raw.hydra else {}
    lines = [str(texts.get("header", f"minigpt {config_name}")).rstrip(), ""]
    groups = [
        d for d in raw.get("defaults", []) if isinstance(d, DictConfig) and (Path(CONF_DIR) / next(iter(d))).is_dir()
    ]
    if groups:
        lines.append("Groups (group=option; the default first):")
        for entry in groups:
            group, chosen = next(iter(entry.items()))
            others = sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml") if p.stem != chosen)
            lines.append(f"  {group:<15}{chosen or 'none'} | {' | '.join(others)}")
        lines.append("")
    lines.append("Options (key=value): default, what it takes, meaning")
    values = OmegaConf.to_container(raw, resolve=False)
    lines += option_lines(TOOL_OPTIONS[config_name], values)
    footer = str(texts.get("footer", "")).rstrip()
    lines += ["", *([footer] if footer else [])]
    lines.append("The composed config, every group's options included: --cfg job; all options: docs/configs.md")
    return "\n".join(lines)


def option_lines(cls: type, values: dict, prefix: str = "") -> list[str]:
    """One line per option of the schema `cls`: `  key  default  type: meaning`."""
    from minigpt.schema import expected

    out = []
    for name, (hint, meta) in declared(cls).items():
        value = values.get(name, "???")
        if dataclasses.is_dataclass(hint):
            out += option_lines(hint, value if isinstance(value, dict) else {}, f"{prefix}{name}.")
            continue
        doc = f": {meta['doc']}" if meta.get("doc") else ""
        out.append(f"  {prefix + name:<24} {shown_default(value):<12} {expected(hint, meta)}{doc}")
    return out


def shown_default(value: object, limit: int = 12) -> str:
    """A default as one would type it on the command line: a newline as \\n, null, true."""
    import json

    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) or "\n" in value else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- docs/configs.md from the schemas

# (heading, schema) of every table of docs/configs.md's option reference
REFERENCE: list[tuple[str, type]] = [
    ("train.yaml (top level)", TrainOptions),
    ("model (GPT: tiny, mini, small, wide, medium)", GPTSchema),
    ("model=lstm", LSTMSchema),
    *[
        (f"{group} ({target})", TARGET_OPTIONS[target])
        for group, target in [
            ("trainer", "lightning.pytorch.Trainer"),
            ("optim=adamw", "torch.optim.AdamW"),
            ("optim=sgd", "torch.optim.SGD"),
            ("optim=muon", "minigpt.training.optim.MuonAdamW"),
            ("scheduler=constant", "minigpt.training.schedules.constant"),
            ("scheduler=cosine", "minigpt.training.schedules.cosine"),
            ("scheduler=wsd", "minigpt.training.schedules.wsd"),
            ("data=shakespeare, data=text", "minigpt.data.corpus.CharDataModule"),
            ("data=repeats", "minigpt.data.repeats.RepeatsDataModule"),
            ("data=labelled", "minigpt.data.labelled.LabelledDataModule"),
            ("data=digits", "minigpt.data.digits.DigitsDataModule"),
            ("callbacks.optimization", "minigpt.training.callbacks.OptimizationStats"),
            ("callbacks.samples", "minigpt.training.callbacks.TextSamples"),
            ("callbacks.attention", "minigpt.training.callbacks.AttentionMaps"),
            ("callbacks.projector", "minigpt.training.callbacks.EmbeddingProjector"),
            ("callbacks.logits", "minigpt.training.callbacks.LogitHistograms"),
            ("callbacks.heads", "minigpt.training.callbacks.HeadScores"),
            ("callbacks.symptoms", "minigpt.training.symptoms.Symptoms"),
            ("callbacks.ema (callbacks=ema)", "lightning.pytorch.callbacks.EMAWeightAveraging"),
            ("callbacks.captions (task=caption)", "minigpt.training.vlm.CaptionViews"),
        ]
    ],
    *[(f"task={name}", cls) for name, cls in TASKS.items()],
    *[(f"{tool}.yaml", cls) for tool, cls in TOOL_OPTIONS.items() if tool != "train"],
]


def config_reference() -> str:
    """The option reference of docs/configs.md: one table per group option and tool, every row
    from its schema (`scripts/config_reference.py` writes it, a test checks it is current)."""
    from minigpt.schema import expected

    parts = []
    for heading, cls in REFERENCE:
        rows = ["| option | default | takes | meaning |", "|---|---|---|---|"]
        for name, hint, meta, default in _flat_fields(cls):
            cells = [f"`{name}`", f"`{shown_default(default, 40)}`", expected(hint, meta), meta.get("doc", "")]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        parts.append(f"### {heading}\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def _flat_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dict, Any]]:
    """(dotted name, type, declaration, default) of every field of `cls`, nested schemas flattened."""
    hints, out = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(hints[f.name]):
            out += _flat_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, hints[f.name], dict(f.metadata), "???" if default is MISSING else default))
    return out
