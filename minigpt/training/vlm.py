"""The baby vision-language model trained on the digits: `python train.py task=caption` trains
it (minigpt/vlm.py, minigpt/data/digits.py), `python -m minigpt caption ckpt=...` uses it.

Validation counts an answer as right when every one of its tokens is the model's most likely
next token given the ones before: exactly when greedy decoding writes that answer, so the
accuracies are those of greedy captions, measured in one teacher-forced pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from minigpt.checkpoint.format import (
    CHECKPOINT_KEY,
    VLMMeta,
    field_error,
    first_line,
    read_checkpoint,
    read_meta,
    shown,
)
from minigpt.checkpoint.load import check_loadable
from minigpt.checkpoint.weights import load_weights
from minigpt.cli import build, check_int, check_out_dir, require
from minigpt.data.digits import (
    CAPTION_PROMPT,
    IGNORE,
    PLUS_PROMPT,
    TASKS,
    WORDS,
    DigitsDataModule,
    caption_of,
    expand,
    sum_of,
)
from minigpt.errors import CheckpointError, ConfigError, DataError
from minigpt.figures import plot_captions, plot_image_attention
from minigpt.io import file_problem
from minigpt.tokenizer import Tokenizer
from minigpt.training.callbacks import EveryNValidations
from minigpt.training.module import LitGPT
from minigpt.vlm import IMAGE, VLM, VisionConfig, greedy_answer, image_attention

log = logging.getLogger("minigpt")

MONITORS = ("val/acc", "val/caption_acc", "val/plus_acc", "val/loss")
CHANCE = {"caption": 0.1, "plus": 0.1}  # the most frequent answer: any digit (1 in 10); the sum 9 (10 in 100)


def answers_right(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) True where every answer token (targets != IGNORE) is the argmax of its logits (B, T, V)."""
    return ((logits.argmax(-1) == targets) | (targets == IGNORE)).all(1)


class LitVLM(LitGPT):
    """A LitGPT whose model also reads images (`VLM`): the loss is over the answers' tokens only,
    and validation measures each task's accuracy (`val/caption_acc`, `val/plus_acc`, their mean
    `val/acc`). The checkpoint adds the `VisionConfig` (format.py `VLMMeta`)."""

    hparam_metrics = ("val/loss", "val/acc", "val/caption_acc", "val/plus_acc", "hp/best_val_acc")

    def __init__(
        self,
        model: dict,
        vocab: list[str],
        vision: dict,
        optim: dict,
        scheduler: dict | None = None,
        run_config: dict | None = None,
    ) -> None:
        if model.get("arch", "gpt") != "gpt":
            raise ConfigError(f"task=caption reads images with a GPT; model.arch={model['arch']!r} cannot")
        super().__init__(model, vocab, optim, scheduler, run_config)
        self.vision_config = VisionConfig.from_dict(vision)
        if IMAGE not in self.tokenizer.token_texts():
            raise ConfigError(f"the vocabulary has no image mark {IMAGE!r}: it is not a vision-language vocabulary")
        # LitGPT built the text GPT; the VLM is the same decoder with the patch embedding added
        self.model = VLM(self.config, self.vision_config, self.tokenizer.encode(IMAGE)[0])
        self.accuracy = torch.nn.ModuleDict({f"{s}_{t}": MeanMetric() for s in ("val", "test") for t in TASKS})
        self.best_val_acc = 0.0

    def forward(self, idx: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(idx, images=images)

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        idx, targets, images, task = batch
        logits = self.model(idx, images=images)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        if stage == "train":
            self._log_loss(stage, loss.detach(), on_step=True)
            return loss
        self.eval_loss[stage].update(loss.detach(), weight=(targets != IGNORE).sum())
        right = answers_right(logits.detach(), targets).float()
        for t, name in enumerate(TASKS):
            if (task == t).any():
                self.accuracy[f"{stage}_{name}"].update(right[task == t])
        return loss

    def _end_eval(self, stage: str) -> None:
        super()._end_eval(stage)
        accs = {}
        for name in TASKS:
            accs[name] = float(self.accuracy[f"{stage}_{name}"].compute())
            self.accuracy[f"{stage}_{name}"].reset()
            self.log(f"{stage}/{name}_acc", accs[name], on_step=False, on_epoch=True)
        self.log(f"{stage}/acc", sum(accs.values()) / len(accs), prog_bar=True, on_step=False, on_epoch=True)
        if stage == "val" and not self.trainer.sanity_checking:
            self.best_val_acc = max(self.best_val_acc, sum(accs.values()) / len(accs))
            self.log("hp/best_val_acc", self.best_val_acc, on_step=False, on_epoch=True)
            if self.trainer.is_global_zero:
                shown_accs = " | ".join(f"{task} accuracy {acc:.3f}" for task, acc in accs.items())
                log.info("step %d | %s", self.global_step, shown_accs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY].update(VLMMeta(vision=self.vision_config, best_val_acc=self.best_val_acc).to_dict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        record = read_meta(checkpoint, "being resumed").vlm
        if record is None:
            raise CheckpointError("the checkpoint being resumed is not a vision-language model; start a new run")
        if record.vision != self.vision_config:
            raise CheckpointError(
                f"the checkpoint being resumed cuts images as {record.vision}, this run as {self.vision_config}; "
                f"resume with the same task.patch_size or start a new run"
            )
        self.best_val_acc = record.best_val_acc


def build_vlm(cfg: DictConfig) -> tuple[L.LightningDataModule, LitVLM]:
    """The digits data module and a vision-language model trained from scratch on it."""
    if cfg.get("init_from"):
        raise ConfigError("task=caption trains from scratch: its vocabulary is the captions'; drop init_from")
    if cfg.task.get("monitor") not in MONITORS:
        raise ConfigError(
            f"task.monitor={cfg.task.get('monitor')!r} is not an option; choose one of {', '.join(MONITORS)}"
        )
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = LitVLM(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        vocab=datamodule.tokenizer.serialize(),
        vision=datamodule.vision.to_dict(),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    return datamodule, module


# --------------------------------------------------------------------------- using a trained VLM


@torch.no_grad()
def answer(model: VLM, tokenizer: Tokenizer, prompt: str, images: torch.Tensor, max_new_tokens: int = 24) -> list[str]:
    """The greedy answer to `prompt` (its image marks filled by `images` (B, M, c, H, W)) for each
    row of images, up to and including the first '.'."""
    ids = torch.tensor(expand(prompt, tokenizer, model.vision_config.n_patches))
    device = next(model.parameters()).device
    idx = ids[None].expand(images.size(0), -1).to(device)
    max_new_tokens = min(max_new_tokens, model.config.block_size - idx.size(1))
    was_training = model.training
    model.eval()
    try:
        new = greedy_answer(model, idx, images.to(device), max_new_tokens, stop=tokenizer.encode(".")[0])
    finally:
        model.train(was_training)
    texts = [tokenizer.decode(row.tolist()) for row in new.cpu()]
    return [t[: t.index(".") + 1] if "." in t else t for t in texts]


def attention_views(
    model: VLM, tokenizer: Tokenizer, images: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor
) -> tuple[Figure, Figure]:
    """Two figures of where the model looks while it names a digit: for each caption of `images`
    (K, 1, H, W), and for the plus questions pairing image i < K/2 with `partner[i]`, the attention per
    layer (mean of heads) from the position that predicts the answer word's first letter to the
    patches of each image."""
    captions = answer(model, tokenizer, CAPTION_PROMPT, images[:, None])
    stem = caption_of(0).removesuffix(f"{WORDS[0]}.")  # "a handwritten ": the digit's word follows
    # the last position of the image and the stem predicts the word's first letter; being causal,
    # it attends the same way whatever the model writes after it
    idx = torch.tensor(expand(CAPTION_PROMPT + stem, tokenizer, model.vision_config.n_patches))
    caption_maps, titles = [], []
    for image, label, text in zip(images, labels.tolist(), captions):
        caption_maps.append(image_attention(model, idx, image[None], idx.numel() - 1)[:, 0])  # (L, N)
        titles.append(f"{WORDS[label]}: wrote {text.removeprefix(stem).rstrip('.') or '?'}")
    rows = [f"layer {i}" for i in range(model.config.n_layer)]
    caption_fig = plot_image_attention(
        images[:, 0], torch.stack(caption_maps, 1), titles, rows,
        "attention from the caption's digit word to the image patches",
    )  # fmt: skip
    n_pairs = max(1, len(images) // 2)  # as many images as the caption figure
    pairs = torch.stack([images[:n_pairs], images[partner[:n_pairs]]], 1)  # (K/2, 2, 1, H, W)
    sums = answer(model, tokenizer, PLUS_PROMPT, pairs)
    plus_maps, plus_titles = [], []
    idx = torch.tensor(expand(PLUS_PROMPT, tokenizer, model.vision_config.n_patches))
    for pair, a, b, text in zip(pairs, labels.tolist(), labels[partner].tolist(), sums):
        plus_maps.append(image_attention(model, idx, pair, idx.numel() - 1))  # (L, 2, N)
        truth = "" if text == sum_of(a, b) else f" (true: {WORDS[a + b]})"
        plus_titles += [f"{a} plus", f"{b} is {text.rstrip('.')}{truth}"]
    plus_fig = plot_image_attention(
        pairs.flatten(0, 1)[:, 0], torch.cat(plus_maps, 1), plus_titles, rows,
        "attention from the answer of 'a plus b is' to the patches of both images",
    )  # fmt: skip
    return caption_fig, plus_fig


class CaptionViews(EveryNValidations):
    """`view/captions`: validation images with their greedy captions (red when wrong);
    `view/image_attention/caption` and `.../plus`: where the answer's word looks in the images.
    Lightning has no callback that generates text, so this one does."""

    def __init__(self, every_n_val: int = 1, n_images: int = 24, n_attention: int = 6) -> None:
        super().__init__(every_n_val)
        self.n_images, self.n_attention = n_images, n_attention

    def record(self, writer, trainer, pl_module, step) -> None:
        dm = trainer.datamodule
        images, labels = dm.val_images[: self.n_images], dm.val_labels[: self.n_images]
        captions = answer(pl_module.model, pl_module.tokenizer, CAPTION_PROMPT, images[:, None])
        truths = [caption_of(label) for label in labels.tolist()]
        writer.add_figure("view/captions", plot_captions(images[:, 0], captions, truths, f"step {step}"), step)
        k = self.n_attention
        partner = (torch.arange(k) + 1) % k  # pairs among the first k images
        caption_fig, plus_fig = attention_views(pl_module.model, pl_module.tokenizer, images[:k], labels[:k], partner)
        writer.add_figure("view/image_attention/caption", caption_fig, step)
        writer.add_figure("view/image_attention/plus", plus_fig, step)


# --------------------------------------------------------------------------- loading, the caption tool


@dataclass
class LoadedVLM:
    """A trained vision-language model ready for inference, with its tokenizer and checkpoint record."""

    module: LitVLM
    model: VLM
    tokenizer: Tokenizer
    meta: Any
    path: Path


def load_vlm(path: str | Path, device: str | torch.device = "cpu") -> LoadedVLM:
    """Rebuild a VLM from a checkpoint of `train.py task=caption` (read with weights_only); every
    value is checked before the model is built, the patch embedding's shapes included."""
    ckpt = read_checkpoint(path)
    meta, _, state = check_loadable(ckpt, path)
    if meta.vlm is None:
        raise CheckpointError(
            f"checkpoint {path} is not a vision-language model (no vision entry); "
            f"pass a checkpoint of train.py task=caption"
        )
    vision, C = meta.vlm.vision, meta.model_config.get("n_embd")
    for name, shape in (("proj.weight", (C, vision.patch_dim)), ("wpe.weight", (vision.n_patches, C))):
        stored = state.get(f"model.vision.{name}")
        if stored is None or tuple(stored.shape) != shape:
            raise field_error(path, "vision", f"does not match the weights (model.vision.{name}: {shown(stored)})")
    module = LitVLM(model=meta.model_config, vocab=meta.tokenizer, vision=vision.to_dict(), optim={})
    load_weights(module, state, f"checkpoint {path}", "its model and vision config")
    module.to(device).eval()
    return LoadedVLM(module=module, model=module.model, tokenizer=module.tokenizer, meta=meta, path=Path(path))


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """A picture file as one of the digits: (1, size, size) grey in [0, 1] with bright ink on a
    dark ground (a light ground is inverted); one line for anything that is not a picture."""
    from PIL import Image, UnidentifiedImageError  # Pillow: a dependency of matplotlib

    path = Path(path).expanduser()
    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"image {path} {problem}; pass image=<a PNG file of one digit>")
    try:
        with Image.open(path) as picture:
            grey = picture.convert("L").resize((size, size), Image.Resampling.BOX)  # the mean of each block
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"image {path} cannot be read as a picture ({first_line(e)}); pass a PNG file") from None
    x = torch.tensor(np.asarray(grey), dtype=torch.float32) / 255.0  # (size, size)
    return (1.0 - x if x.mean() > 0.5 else x)[None]


def validation_digits(loaded: LoadedVLM) -> DigitsDataModule:
    """The validation images of the run that wrote the checkpoint (its split seed and fraction)."""
    data = (loaded.meta.run_config or {}).get("data") or {}
    options = {k: data[k] for k in ("val_fraction", "split_seed") if k in data}
    dm = DigitsDataModule(
        block_size=loaded.model.config.block_size, patch_size=loaded.model.vision_config.patch_size, **options
    )
    dm.setup("validate")
    return dm


def evaluate_vlm(loaded: LoadedVLM, dm: DigitsDataModule) -> dict[str, float]:
    """Both tasks' accuracy over the validation images, by greedy decoding: every caption, and
    every plus question pairing image i with `dm.val_partner[i]`."""
    images, labels, partner = dm.val_images, dm.val_labels, dm.val_partner
    captions = answer(loaded.model, loaded.tokenizer, CAPTION_PROMPT, images[:, None])
    sums = answer(loaded.model, loaded.tokenizer, PLUS_PROMPT, torch.stack([images, images[partner]], 1))
    labels_b = labels[partner].tolist()
    return {
        "caption": sum(c == caption_of(y) for c, y in zip(captions, labels.tolist())) / len(labels),
        "plus": sum(s == sum_of(a, b) for s, a, b in zip(sums, labels.tolist(), labels_b)) / len(labels),
        "n": len(labels),
    }


def run(cfg: DictConfig) -> dict[str, float]:
    """What `python -m minigpt caption` does: print the caption of `cfg.image`; without an image,
    print both tasks' validation accuracy and write the figures into `cfg.out_dir`."""
    loaded = load_vlm(require(cfg, "ckpt", "pass ckpt=outputs/<run>/checkpoints/best.ckpt of train.py task=caption"))
    vision = loaded.model.vision_config
    if cfg.get("image"):
        image = read_image(cfg.image, vision.image_size)
        (caption,) = answer(loaded.model, loaded.tokenizer, CAPTION_PROMPT, image[None, None])
        print(caption)
        return {}
    n = check_int(cfg.get("n_examples", 6), "n_examples", 1)
    out_dir = check_out_dir(cfg.out_dir)
    dm = validation_digits(loaded)
    scores = evaluate_vlm(loaded, dm)
    print(f"caption accuracy {scores['caption']:.3f} on {scores['n']} validation images (chance {CHANCE['caption']})")
    print(
        f"plus accuracy    {scores['plus']:.3f} on {scores['n']} pairs of them (chance {CHANCE['plus']}: always 'nine')"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    images, labels = dm.val_images[: max(n, 24)], dm.val_labels[: max(n, 24)]
    captions = answer(loaded.model, loaded.tokenizer, CAPTION_PROMPT, images[:, None])
    figures = {"vlm_captions.png": plot_captions(images[:, 0], captions, [caption_of(y) for y in labels.tolist()])}
    partner = (torch.arange(n) + 1) % n
    figures["vlm_attention_caption.png"], figures["vlm_attention_plus.png"] = attention_views(
        loaded.model, loaded.tokenizer, images[:n], labels[:n], partner
    )
    for name, fig in figures.items():
        fig.savefig(out_dir / name)
    print(f"figures: {', '.join(str(out_dir / name) for name in figures)}")
    return scores
