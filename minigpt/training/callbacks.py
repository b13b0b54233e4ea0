"""Lightning callbacks that record a run for TensorBoard.

`HParamsSummary` is always on; the others are listed in conf/callbacks/default.yaml and can be
switched off one by one (`~callbacks.attention`) or all together (`callbacks=none`):

- `OptimizationStats`: gradient norm (before clipping), weight norm and update/weight ratio per
  layer group, every few steps;
- `TextSamples`: samples at a few temperatures every few validations, and the run's final sample;
- `AttentionMaps`: attention heatmaps of a fixed validation snippet, per layer and averaged;
- `EmbeddingProjector`: the character embeddings in TensorBoard's PROJECTOR tab;
- `LogitHistograms`: histograms of the logits and of the next-character entropy;
- `HeadScores`: what each attention head does (previous-token, induction, ... scores) and the
  logit-lens loss after each block, as scalars, to watch heads form during training.

Tags are named so that TensorBoard, which sorts groups and cards by name and opens the first two
groups, opens on the losses: `eval/*` (the validation metrics, `val/*` in the code, written under
`minigpt.figures.tensorboard_tag`) then `train/*`, each with `loss` first, then `view/*`
(attention and logits) and `weights/*` (gradient, weight and update norms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from minigpt.errors import ConfigError
from minigpt.figures import plot_attention, plot_attention_mean, show_char, tensorboard_tag
from minigpt.model import GPT
from minigpt.probes import (
    HEAD_SCORES,
    attention_maps,
    entropy,
    head_scores,
    icl_score,
    lens_losses,
    lens_points,
    mark_ids,
    next_token_logits,
    position_losses,
    repeat_losses,
    repeated_windows,
    sample_text,
    text_windows,
)
from minigpt.schema import problem, shown

# the scalars TensorBoard's HPARAMS tab shows next to each run's hyperparameters (a language
# model's; a LightningModule with its own `hparam_metrics` attribute, the classifier, overrides it)
HPARAM_METRICS = ("val/loss", "val/ppl", "val/bpc", "val/best_loss")


def flatten(d: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    """{'model': {'n_layer': 4}} -> {'model.n_layer': 4}; other values become strings."""
    out: dict[str, int | float | str | bool] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


# the config groups a run is compared by in TensorBoard's HPARAMS tab; callbacks, paths and
# Hydra's own settings are the same for every run of a sweep and would push the swept value aside
HPARAM_GROUPS = ("model", "optim", "scheduler", "data", "trainer", "seed", "task", "ablation")
HPARAM_SKIP = ("_target_", "_partial_", "path", "url", "sha256", "cache_dir", "name", "accelerator", "devices")
HPARAM_SKIP_KEYS = (
    "data",  # the data module's class; data.* says what differs
    "trainer",
    "data.block_size",  # = model.block_size
    "data.seed",  # = seed
    "trainer.max_epochs",
    "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps",
)


def hparam_values(run_config: dict) -> dict[str, int | float | str | bool]:
    """The run's hyperparameters as HPARAMS columns: model, optimizer, schedule, data, budget and
    seed, each class named by its last component (`optim=MuonAdamW`), internals left out."""
    values = {}
    for key, value in flatten({k: run_config[k] for k in HPARAM_GROUPS if k in run_config}).items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "_target_" and key.count(".") == 1:
            values[key.split(".")[0]] = str(value).rsplit(".", 1)[-1]  # optim=AdamW, scheduler=cosine
        elif leaf not in HPARAM_SKIP and not key.startswith(("trainer.strategy", "trainer.enable", "trainer.log")):
            values[key] = value
    return {k: v for k, v in values.items() if k not in HPARAM_SKIP_KEYS}


class HParamsSummary(L.Callback):
    """Writes the run's hyperparameters (`hparam_values`) into TensorBoard's HPARAMS tab, linked to
    the validation metrics, so every job of a sweep is one comparable row there.

    Not `TensorBoardLogger.log_hyperparams(params, metrics)`: it also logs each metric as a scalar
    at step 0, a false first point on every val/loss chart; here only the HPARAMS summary is written."""

    def __init__(self, run_config: dict, swept: Sequence[str] = ()) -> None:
        self.params = hparam_values(run_config)
        self.swept = [key for key in swept if key in self.params]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0:  # a resumed run already has its entry
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                metrics = getattr(pl_module, "hparam_metrics", HPARAM_METRICS)
                experiment, *sessions = hparams(self.params, {tensorboard_tag(m): 0.0 for m in metrics})
                for summary in (swept_first(experiment, self.swept), *sessions):
                    writer.add_summary(summary)


def swept_first(experiment, swept: Sequence[str]):
    """The HPARAMS experiment summary with the sweep's keys marked as differing: TensorBoard lists
    (and ticks) the hyperparameters that differ first, but cannot tell from one run which do."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in swept
    value.metadata.plugin_data.content = data.SerializeToString()
    return experiment


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The SummaryWriter of the run's TensorBoard logger (None without one, or off rank zero)."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def markdown_code(text: str) -> str:
    """Text as a Markdown code block, so TensorBoard's TEXT tab keeps its newlines and spaces."""
    return "    " + text.replace("\n", "\n    ")


def layer_groups(model: GPT) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """Parameters by layer group: `embedding` (token and position tables), `layer<i>` (block i),
    `final_norm`, and `lm_head` when it is not tied to the embedding."""
    groups: dict[str, list[tuple[str, torch.nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if name.startswith("transformer.h."):
            group = f"layer{name.split('.')[2]}"
        elif name.startswith(("transformer.wte", "transformer.wpe")):
            group = "embedding"
        elif name.startswith("transformer.ln_f"):
            group = "final_norm"
        else:
            group = name.split(".")[0]
        groups.setdefault(group, []).append((name, p))
    return groups


def _norm(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.float().pow(2).sum()) for t in tensors))


class OptimizationStats(L.Callback):
    """Every `every_n_steps` optimizer steps (default: the trainer's log_every_n_steps), per layer
    group and in total: `weights/grad_norm/*` before clipping, `weights/weight_norm/*`, and `weights/update_ratio/*` =
    ||w_after - w_before|| / ||w_before||, the relative size of the step (around 1e-3 is healthy
    for Adam; much larger means a too-high learning rate, much smaller a stalled layer)."""

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._before: dict[str, list[torch.Tensor]] | None = None

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % (self.every_n_steps or trainer.log_every_n_steps or 1) == 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Lightning calls this hook before it clips the gradients
        self._before = None
        writer = tensorboard_writer(trainer)
        if writer is None or not self._due(trainer):
            return
        step = trainer.global_step
        groups = layer_groups(pl_module.model)
        all_grads, all_weights = [], []
        for group, params in groups.items():
            grads = [p.grad for _, p in params if p.grad is not None]
            weights = [p.detach() for _, p in params]
            all_grads += grads
            all_weights += weights
            if grads:
                writer.add_scalar(f"weights/grad_norm/{group}", _norm(grads), step)
            writer.add_scalar(f"weights/weight_norm/{group}", _norm(weights), step)
        writer.add_scalar("weights/grad_norm/total", _norm(all_grads), step)
        writer.add_scalar("weights/weight_norm/total", _norm(all_weights), step)
        self._before = {g: [p.detach().clone() for _, p in params] for g, params in groups.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._before is None:
            return
        writer = tensorboard_writer(trainer)
        step = trainer.global_step - 1  # the optimizer has stepped: report it at the step it took
        deltas, befores = [], []
        for group, params in layer_groups(pl_module.model).items():
            before = self._before[group]
            delta = [p.detach() - b for (_, p), b in zip(params, before)]
            deltas += delta
            befores += before
            writer.add_scalar(f"weights/update_ratio/{group}", _norm(delta) / max(_norm(before), 1e-12), step)
        writer.add_scalar("weights/update_ratio/total", _norm(deltas) / max(_norm(befores), 1e-12), step)
        self._before = None


class EveryNValidations(L.Callback):
    """Base of the callbacks that look at the model after validation: they act on the first
    validation and then on every `every_n_val`-th one (sanity checks excluded)."""

    def __init__(self, every_n_val: int = 4) -> None:
        if problem(every_n_val, int, {"low": 1}) is not None:
            raise ConfigError(f"every_n_val must be an integer >= 1, got {shown(every_n_val)}")
        self.every_n_val = every_n_val
        self.rounds = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.rounds += 1
        writer = tensorboard_writer(trainer)
        if writer is not None and (self.rounds == 1 or self.rounds % self.every_n_val == 0):
            self.record(writer, trainer, pl_module, trainer.global_step)

    def record(self, writer: SummaryWriter, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        raise NotImplementedError


def validation_ids(trainer: L.Trainer, n: int) -> torch.Tensor | None:
    """The first `n` token ids of the validation split (fixed, so figures compare across steps)."""
    data = getattr(trainer.datamodule, "val_data", None)
    return None if data is None else data[:n].long()


class TextSamples(EveryNValidations):
    """`samples/temperature_<t>`: a sample at each temperature every few validations, seeded, so
    the same prompt and randomness show how the text improves. At the end of training it writes
    the run's final sample (`sample/final`) from the `final` settings (train.yaml's `sample`)."""

    def __init__(
        self,
        every_n_val: int = 4,
        temperatures: Sequence[float] = (0.5, 0.8, 1.0),
        prompt: str = "\n",
        max_new_tokens: int = 200,
        final: Mapping | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(every_n_val)
        self.temperatures = [float(t) for t in temperatures]
        self.prompt, self.max_new_tokens, self.seed = prompt, max_new_tokens, seed
        self.final = dict(final or {})
        self.final_text: str | None = None

    def record(self, writer, trainer, pl_module, step) -> None:
        for t in self.temperatures:
            text = sample_text(pl_module.model, pl_module.tokenizer, self.prompt, self.max_new_tokens, t, self.seed)
            writer.add_text(f"samples/temperature_{t}", markdown_code(text), step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final_text = final_sample(pl_module, self.final, self.seed)
        writer = tensorboard_writer(trainer)
        if self.final_text is not None and writer is not None:
            writer.add_text("sample/final", markdown_code(self.final_text), trainer.global_step)


def final_sample(pl_module: L.LightningModule, settings: Mapping, seed: int | None) -> str | None:
    """The end-of-run sample that train.yaml's `sample` asks for (None when max_new_tokens is 0)."""
    n = settings.get("max_new_tokens", 0)
    if not n:
        return None
    return sample_text(
        pl_module.model, pl_module.tokenizer, settings.get("prompt") or "\n", n, settings.get("temperature", 0.8), seed
    )


class AttentionMaps(EveryNValidations):
    """`view/attention/layer<i>` (a grid of the layer's heads and their mean) and `view/attention/mean`
    (averaged over heads, per layer and over all layers) on the first `n_chars` validation
    characters, one panel per row: few and large enough that each character stays readable at
    TensorBoard's default card width."""

    def __init__(self, every_n_val: int = 1, n_chars: int | None = 32) -> None:
        super().__init__(every_n_val)
        self.n_chars = n_chars

    def record(self, writer, trainer, pl_module, step) -> None:
        if not hasattr(pl_module.model, "forward_with_attention"):  # the LSTM baseline has none
            return
        block_size = pl_module.model.config.block_size
        ids = validation_ids(trainer, min(self.n_chars or block_size, block_size))
        if ids is None:
            return
        chars = [pl_module.tokenizer.decode([i]) for i in ids.tolist()]  # the text of each position
        layers = attention_maps(pl_module.model, ids)
        # one panel per row: TensorBoard scales an image to its card's width (about 340 pixels by
        # default), where a panel in a row of two or more no longer shows its characters
        for i, w in enumerate(layers):
            writer.add_figure(f"view/attention/layer{i}", plot_attention(w, chars, f"layer {i}, step {step}", 1), step)
        writer.add_figure("view/attention/mean", plot_attention_mean(layers, chars, 1), step)


class EmbeddingProjector(EveryNValidations):
    """The token embedding table in TensorBoard's PROJECTOR tab, each point labelled with its
    character or BPE token (newline and space spelled out)."""

    def record(self, writer, trainer, pl_module, step) -> None:
        model = pl_module.model
        wte = model.transformer.wte if hasattr(model, "transformer") else model.wte  # GPT or LSTM
        weight = wte.weight.detach().float().cpu()
        labels = [show_char(c) for c in pl_module.tokenizer.token_texts()]
        writer.add_embedding(weight, metadata=labels, tag="char_embedding", global_step=step)


class LogitHistograms(EveryNValidations):
    """`view/logits/values` and `view/logits/entropy` histograms (and `view/logits/mean_entropy`, nats) over the
    first `n_windows` validation windows: a collapsing or exploding logit scale shows here."""

    def __init__(self, every_n_val: int = 1, n_windows: int = 8) -> None:
        super().__init__(every_n_val)
        self.n_windows = n_windows

    def record(self, writer, trainer, pl_module, step) -> None:
        T = pl_module.model.config.block_size
        ids = validation_ids(trainer, self.n_windows * T)
        if ids is None:
            return
        ids = ids[: (ids.numel() // T) * T].view(-1, T)
        logits = next_token_logits(pl_module.model, ids)  # (n, T, V)
        ent = entropy(logits)
        writer.add_histogram("view/logits/values", logits.flatten(), step)
        writer.add_histogram("view/logits/entropy", ent.flatten(), step)
        writer.add_scalar("view/logits/mean_entropy", float(ent.mean()), step)


class HeadScores(EveryNValidations):
    """`view/heads/<score>/L<layer>H<head>`: the head scores of `minigpt.probes.head_scores`
    (previous-token, current-token, first-position, last newline and space, distance, induction) on the
    first `n_windows` validation windows and `n_random` repeated random sequences; and
    `view/lens/<point>`: the logit-lens loss of those windows after the embeddings and after each
    block; `view/icl/score`: the in-context-learning score (`probes.icl_score`) of the first
    `n_icl_windows` validation windows; `view/icl/loss_first_copy` and `view/icl/loss_repeated_copy`:
    the loss on the first half of those windows written twice, first and repeated copy
    (`probes.repeat_losses`). A CUSTOM SCALARS layout draws each score's heads as lines, one chart
    per layer, so the step at which a previous-token or an induction head forms shows beside the
    loss it buys. Lightning has no callback that measures attention heads."""

    def __init__(self, every_n_val: int = 1, n_windows: int = 8, n_random: int = 8, n_icl_windows: int = 32) -> None:
        super().__init__(every_n_val)
        self.n_windows, self.n_random, self.n_icl_windows = n_windows, n_random, n_icl_windows
        self._layout_written = False

    def record(self, writer, trainer, pl_module, step) -> None:
        model = pl_module.model
        if not hasattr(model, "forward_with_attention"):  # the LSTM baseline has no heads
            return
        T = model.config.block_size
        ids = validation_ids(trainer, max(self.n_windows, self.n_icl_windows) * T + 1)
        if ids is None or ids.numel() < T + 1:
            return
        windows = text_windows(ids, T, self.n_windows)
        scores = head_scores(model, windows[:, :-1], mark_ids(pl_module.tokenizer), self.n_random)
        write_head_scores(writer, scores, step)
        for point, loss in zip(lens_points(model.config.n_layer), lens_losses(model, windows)):
            writer.add_scalar(f"view/lens/{point}", loss, step)
        write_icl(writer, model, text_windows(ids, T, self.n_icl_windows), step)
        if not self._layout_written:
            writer.add_custom_scalars(head_layout(model.config.n_layer))
            self._layout_written = True


def write_head_scores(writer: SummaryWriter, scores: dict[str, torch.Tensor], step: int) -> None:
    """One scalar per score, layer and head (NaN scores, such as newline without newlines, skipped)."""
    for name, values in scores.items():
        for layer, row in enumerate(values.tolist()):
            for head, value in enumerate(row):
                if not math.isnan(value):
                    writer.add_scalar(f"view/heads/{name}/L{layer}H{head}", value, step)


def write_icl(writer: SummaryWriter, model: GPT, windows: torch.Tensor, step: int) -> None:
    """The in-context-learning score of `windows` (B, T + 1), and the loss on the first and the
    repeated copy of their first halves written twice."""
    writer.add_scalar("view/icl/score", icl_score(position_losses(model, windows)), step)
    period = model.config.block_size // 2
    first, again = repeat_losses(position_losses(model, repeated_windows(windows, period)), period)
    writer.add_scalar("view/icl/loss_first_copy", first, step)
    writer.add_scalar("view/icl/loss_repeated_copy", again, step)


def head_layout(n_layer: int) -> dict:
    """The CUSTOM SCALARS charts of `HeadScores`: first the induction story on one screen (the
    previous-token heads, the induction heads, the loss on repeated text and the in-context-
    learning score, which move at the same step when an induction head forms), then per head score
    a section with one chart per layer, that layer's heads as lines (so a chart holds n_head lines
    per run, few enough to tell apart), and the logit-lens loss with every layer as a line."""
    story = {
        "1. previous-token score per head": ["Multiline", ["view/heads/previous/.*"]],
        "2. induction score per head": ["Multiline", ["view/heads/induction/.*"]],
        "3. loss on text written twice: first copy, repeated copy": ["Multiline", ["view/icl/loss_.*"]],
        "4. in-context learning: loss late minus early in the context": ["Multiline", ["view/icl/score"]],
    }
    layout = {
        f"heads: {name}": {f"layer {i}": ["Multiline", [f"view/heads/{name}/L{i}H.*"]] for i in range(n_layer)}
        for name in HEAD_SCORES
    }
    return {"induction": story, **layout, "logit lens": {"loss after each block": ["Multiline", ["view/lens/.*"]]}}
