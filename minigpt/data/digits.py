"""scikit-learn's 8x8 handwritten digits as two tasks for the vision-language model (vlm.py).

`caption`: the image alone is the prompt, the answer is its caption: `▦` -> "a handwritten seven.".
`plus`: two images in a sentence, the answer is the sum as a word: `▦ plus ▦ is ` -> "eleven.".
Each `▦` (vlm.IMAGE) becomes one slot per patch of its image. The loss is on the answers only:
the prompt is given, so it is never a prediction target.

The 1,797 images ship inside scikit-learn (no network). A fixed seeded shuffle splits them into
training and validation images; a plus question of the validation set pairs two validation images,
so the validation accuracies are measured on digits the model never saw.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from minigpt.configs import DigitsOptions
from minigpt.data.corpus import UnpaddedShards
from minigpt.errors import ConfigError, DataError
from minigpt.figures import plot_image_attention
from minigpt.schema import check_values
from minigpt.tokenizer import CharTokenizer, Tokenizer
from minigpt.vlm import IMAGE, VLM, VisionConfig, greedy_answer, image_attention

log = logging.getLogger("minigpt")

WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"),
)
TASKS = ("caption", "plus")
CAPTION_PROMPT = IMAGE
PLUS_PROMPT = f"{IMAGE} plus {IMAGE} is "
IGNORE = -100  # the target of a position whose next token is given (prompt, image, padding)


def caption_of(label: int) -> str:
    return f"a handwritten {WORDS[label]}."


def sum_of(a: int, b: int) -> str:
    return f"{WORDS[a + b]}."


def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as images (1797, 1, 8, 8) with values in [0, 1] (ink is bright) and labels (1797,)."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to load

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # pixel values 0..16
    return images, torch.tensor(digits.target, dtype=torch.long)


def make_tokenizer() -> CharTokenizer:
    """The characters of every prompt and answer of both tasks (and the image mark)."""
    return CharTokenizer(
        "".join([CAPTION_PROMPT, PLUS_PROMPT, *map(caption_of, range(10)), *map(sum_of, range(10), range(10))])
    )


def expand(text: str, tokenizer: CharTokenizer, n_patches: int) -> list[int]:
    """Token ids of `text` with each image mark repeated once per patch: its image's slots."""
    slot = tokenizer.encode(IMAGE)[0]
    ids: list[int] = []
    for ch in text:
        ids += [slot] * n_patches if ch == IMAGE else tokenizer.encode(ch)
    return ids


def layout(prompt: str, answer: str, tokenizer: CharTokenizer, n_patches: int, length: int) -> tuple[torch.Tensor, ...]:
    """Inputs and targets (length,) of one question: next-token targets on the answer only,
    IGNORE elsewhere; both padded at the right (a causal model never reads what follows)."""
    given, wanted = expand(prompt, tokenizer, n_patches), tokenizer.encode(answer)
    seq = given + wanted
    idx = torch.zeros(length, dtype=torch.long)
    targets = torch.full((length,), IGNORE, dtype=torch.long)
    idx[: len(seq) - 1] = torch.tensor(seq[:-1])
    # the input at position i predicts token i + 1: the answer's tokens are predicted from len(given) - 1 on
    targets[len(given) - 1 : len(seq) - 1] = torch.tensor(wanted)
    return idx, targets


CHANCE = {"caption": 0.1, "plus": 0.1}  # the most frequent answer: any digit (1 in 10); the sum 9 (10 in 100)


class QuestionBank:
    """Every distinct token sequence of both tasks, laid out once: row `label` is the caption of a
    digit, row 10 + s the plus question whose answer is s. A question is a row plus its images."""

    def __init__(self, tokenizer: CharTokenizer, vision: VisionConfig) -> None:
        N = vision.n_patches
        questions = [(CAPTION_PROMPT, caption_of(d)) for d in range(10)]
        questions += [(PLUS_PROMPT, f"{WORDS[s]}.") for s in range(19)]
        self.length = max(len(expand(p, tokenizer, N)) + len(a) for p, a in questions) - 1
        rows = [layout(p, a, tokenizer, N, self.length) for p, a in questions]
        self.idx = torch.stack([r[0] for r in rows])  # (29, length)
        self.targets = torch.stack([r[1] for r in rows])  # (29, length)

    def questions(
        self, images: torch.Tensor, labels: torch.Tensor, first: torch.Tensor, second: torch.Tensor, plus: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """A batch (idx, targets, images (B, 2, 1, H, W), task (B,)): question b is about
        images[first[b]], and about images[second[b]] too where plus[b]; else its second image is blank."""
        a, b = labels[first], labels[second]
        row = torch.where(plus, 10 + a + b, a)
        pair = torch.stack([images[first], images[second] * plus[:, None, None, None]], 1)
        return self.idx[row], self.targets[row], pair, plus.long()


class RandomQuestions(IterableDataset):
    """An endless stream of batches of random questions on the training images; batch i is a pure
    function of (seed, i), so a resumed run sees the same batches (as data/labelled.py does)."""

    def __init__(
        self, bank: QuestionBank, images, labels, batch_size: int, plus_fraction: float, seed: int, start: int
    ):
        super().__init__()
        self.bank, self.images, self.labels = bank, images, labels
        self.batch_size, self.plus_fraction, self.seed, self.start = batch_size, plus_fraction, seed, start

    def __iter__(self):
        g = torch.Generator()
        step = self.start
        while True:
            g.manual_seed(self.seed * 1_000_003 + step)
            first, second = torch.randint(len(self.labels), (2, self.batch_size), generator=g)
            plus = torch.rand(self.batch_size, generator=g) < self.plus_fraction
            yield self.bank.questions(self.images, self.labels, first, second, plus)
            step += 1


class DigitsDataModule(L.LightningDataModule):
    """The digits split by a fixed seeded shuffle; training draws random questions, validation
    asks a caption of every validation image and one plus question per validation image (paired
    with another validation image by the same seed). Batches are (idx, targets, images, task)."""

    def __init__(
        self,
        block_size: int,
        patch_size: int | None = 2,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        val_fraction: float = 0.2,
        split_seed: int = 1337,
        plus_fraction: float = 0.5,
        seed: int = 1337,
    ) -> None:
        super().__init__()
        if patch_size is None:
            raise ConfigError("data=digits holds the questions of the vision-language model: pass task=caption")
        options = {"batch_size": batch_size, "eval_batch_size": eval_batch_size}
        options |= {"val_fraction": val_fraction, "plus_fraction": plus_fraction}
        check_values(DigitsOptions, options, "data")  # as declared in minigpt/configs.py
        self.vision = VisionConfig(image_size=8, patch_size=patch_size, channels=1)
        self.tokenizer = make_tokenizer()
        self.bank = QuestionBank(self.tokenizer, self.vision)
        if self.bank.length > block_size:
            raise ConfigError(
                f"model.block_size={block_size} is shorter than the longest question ({self.bank.length} positions: "
                f"two images of {self.vision.n_patches} patches and the text); pass model.block_size={self.bank.length}"
            )
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.val_fraction, self.split_seed, self.plus_fraction = val_fraction, split_seed, plus_fraction
        self.train_images: torch.Tensor | None = None
        self.val_set: tuple[torch.Tensor, ...] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        images, labels = load_images()
        g = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(labels), generator=g)
        n_val = round(len(labels) * self.val_fraction)
        if n_val < 2 or len(labels) - n_val < 1:
            raise DataError(f"data.val_fraction={self.val_fraction} leaves too few images on one side; use 0.2")
        val, train = order[:n_val], order[n_val:]
        self.train_images, self.train_labels = images[train], labels[train]
        self.val_images, self.val_labels = images[val], labels[val]
        self.val_partner = torch.randperm(n_val, generator=g)  # the plus question of image i adds image partner[i]
        every = torch.arange(n_val)
        captions = self.bank.questions(
            self.val_images, self.val_labels, every, every, torch.zeros(n_val, dtype=torch.bool)
        )
        sums = self.bank.questions(
            self.val_images, self.val_labels, every, self.val_partner, torch.ones(n_val, dtype=torch.bool)
        )
        # caption i, then the plus question of image i: every validation batch holds both tasks
        self.val_set = tuple(torch.stack(pair, 1).flatten(0, 1) for pair in zip(captions, sums))
        log.info(
            "%d digit images (%d train, %d validation), %d patches of %dx%d pixels each, questions of %d positions",
            len(labels),
            len(train),
            n_val,
            self.vision.n_patches,
            self.vision.patch_size,
            self.vision.patch_size,
            self.bank.length,
        )

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0
        rank = self.trainer.global_rank if self.trainer is not None else 0
        stream = RandomQuestions(
            self.bank, self.train_images, self.train_labels, self.batch_size, self.plus_fraction,
            self.seed + 7919 * rank, start,
        )  # fmt: skip
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        dataset = TensorDataset(*self.val_set)
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=UnpaddedShards(dataset, rank, world))


# --------------------------------------------------------------------------- asking a VLM the questions
# (the training callback CaptionViews and the caption tool, minigpt/inference/caption.py, both ask)


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
