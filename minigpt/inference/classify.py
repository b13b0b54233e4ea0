"""Using a trained classifier: `python -m minigpt classify ckpt=... text="..."` prints the most
likely label of a text and every label's probability. Nothing here trains: the classifier is the
plain `Classifier` of minigpt/classifier.py, rebuilt from its checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from minigpt.architectures import build_model
from minigpt.checkpoint.format import field_error, read_checkpoint, shown
from minigpt.checkpoint.load import check_loadable
from minigpt.checkpoint.weights import load_weights
from minigpt.classifier import POOLINGS, Classifier
from minigpt.cli import require
from minigpt.data.labelled import encode_texts
from minigpt.errors import CheckpointError, VocabularyError
from minigpt.tokenizer import Tokenizer


@dataclass
class LoadedClassifier:
    """A trained classifier ready for inference, with its tokenizer and labels."""

    model: Classifier
    tokenizer: Tokenizer
    labels: list[str]
    path: Path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> LoadedClassifier:
    """Rebuild a classifier from a checkpoint of `train.py task=classify` (read with weights_only);
    every value is checked (`check_loadable`) before the classifier is built."""
    ckpt = read_checkpoint(path)
    meta, tokenizer, state = check_loadable(ckpt, path)
    if meta.classifier is None:
        raise CheckpointError(
            f"checkpoint {path} is not a classifier (no labels); pass a checkpoint of train.py task=classify"
        )
    pooling = meta.classifier.pooling
    if pooling not in POOLINGS:
        raise field_error(path, "pooling", f"must be one of {', '.join(POOLINGS)}, got {shown(pooling)}")
    if meta.model_config.get("arch", "gpt") != "gpt":
        raise field_error(path, "model_config.arch", "must be gpt: a classifier reads a GPT trunk's hidden states")
    model = Classifier(build_model(meta.model_config), len(meta.classifier.labels), pooling)
    load_weights(model, state, f"checkpoint {path}", "its classifier config")
    model.to(device).eval()
    return LoadedClassifier(model=model, tokenizer=tokenizer, labels=list(meta.classifier.labels), path=Path(path))


@torch.no_grad()
def classify_texts(classifier: LoadedClassifier, texts: list[str]) -> list[dict[str, float]]:
    """Each text's probability of every label, cut to block_size like the training texts; a
    character outside the vocabulary is one `VocabularyError` line."""
    for text in texts:
        if not text:
            raise VocabularyError("the text to classify is empty; pass some text")
        classifier.tokenizer.encode(text)  # raises, naming the unknown characters
    model = classifier.model
    device = next(model.parameters()).device
    ids, mask = encode_texts(texts, classifier.tokenizer, model.config.block_size)
    probs = model(ids.to(device), mask.to(device)).softmax(-1).cpu()
    return [dict(zip(classifier.labels, row.tolist(), strict=True)) for row in probs]


def run(cfg: DictConfig) -> dict[str, float]:
    """What `python -m minigpt classify` does: print the most likely label and every label's
    probability for `cfg.text`; return the probabilities."""
    classifier = load_classifier(require(cfg, "ckpt", "pass ckpt=outputs/<run>/checkpoints/best.ckpt"))
    text = require(cfg, "text", 'pass text="..."')
    (probs,) = classify_texts(classifier, [str(text)])
    best = max(probs, key=probs.get)
    width = max(len(label) for label in probs)
    print(best)
    for label, p in sorted(probs.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<{width}}  {p:.3f}")
    return probs
