"""Using a trained vision-language model: `python -m minigpt caption ckpt=... [image=...]` writes
the caption of a picture, or measures both digit tasks on the validation images and draws where
the model looks. Nothing here trains: the model is the plain `VLM` of minigpt/vlm.py, rebuilt
from its checkpoint (`train.py task=caption` writes it, minigpt/training/vlm.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from minigpt.checkpoint.format import field_error, first_line, read_checkpoint, shown
from minigpt.checkpoint.load import check_loadable, weights_under
from minigpt.checkpoint.weights import load_weights
from minigpt.cli import require
from minigpt.configs import check_composed
from minigpt.data.digits import (
    CAPTION_PROMPT,
    CHANCE,
    PLUS_PROMPT,
    DigitsDataModule,
    answer,
    attention_views,
    caption_of,
    sum_of,
)
from minigpt.errors import CheckpointError, DataError
from minigpt.figures import plot_captions
from minigpt.io import check_out_dir, file_problem
from minigpt.model import GPTConfig
from minigpt.tokenizer import Tokenizer
from minigpt.vlm import IMAGE, VLM


@dataclass
class LoadedVLM:
    """A trained vision-language model ready for inference, with its tokenizer and checkpoint record."""

    model: VLM
    tokenizer: Tokenizer
    meta: Any
    path: Path


def load_vlm(path: str | Path, device: str | torch.device = "cpu") -> LoadedVLM:
    """Rebuild a VLM from a checkpoint of `train.py task=caption` (read with weights_only); every
    value is checked before the model is built, the patch embedding's shapes included."""
    ckpt = read_checkpoint(path)
    meta, tokenizer, state = check_loadable(ckpt, path)
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
    if meta.model_config.get("arch", "gpt") != "gpt":
        raise field_error(path, "model_config.arch", "must be gpt: the vision-language model is a GPT")
    if IMAGE not in tokenizer.token_texts():
        raise field_error(path, "vocab", f"has no image mark {IMAGE!r}: it is not a vision-language vocabulary")
    config = GPTConfig.from_dict({k: v for k, v in meta.model_config.items() if k != "arch"})
    model = VLM(config, vision, tokenizer.encode(IMAGE)[0])
    load_weights(model, weights_under(state, "model."), f"checkpoint {path}", "its model and vision config")
    model.to(device).eval()
    return LoadedVLM(model=model, tokenizer=tokenizer, meta=meta, path=Path(path))


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
    check_composed(cfg, "caption")  # types and ranges, as CaptionOptions declares them
    n = cfg.get("n_examples", 6)
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
