"""A baby vision-language model: images cut into patches that become tokens of the same GPT.

An image (c, H, W) is cut into p x p squares read row by row; each square, flattened to c*p*p
numbers, is projected to n_embd by one linear layer (as ViT and Fuyu do: no convolutional
encoder) and given a learned embedding of where it sits in the image. These patch vectors take
the places of the image's slots in the token sequence (a placeholder token, `image_token`,
repeated once per patch), and from there on the decoder is the text GPT of model.py: the same
`Block`s, the same causal mask (`GPT.attention_bias`), the same position encoding over the whole
sequence, the same `lm_head`. A caption token therefore sees every patch of an image before it.

Shapes: B batch, T positions, M images per sequence, N = (H/p)*(W/p) patches per image,
P = c*p*p numbers per patch, C = n_embd. Plain PyTorch: no Lightning, no Hydra.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from minigpt.errors import ConfigError
from minigpt.model import GPT, GPTConfig, KVCache
from minigpt.schema import check_fields, from_mapping, option

# the character that marks an image in a text ("▦ plus ▦ is "); the tokenizer gives it an id, the
# `image_token`, and each image's slots repeat that id once per patch
IMAGE = "\u25a6"


@dataclass
class VisionConfig:
    """How images become tokens; travels inside a VLM checkpoint beside the GPTConfig."""

    image_size: int = option(8, doc="images are image_size x image_size pixels", low=1)
    patch_size: int = option(2, doc="each token is one patch_size x patch_size square", low=1)
    channels: int = option(1, doc="1 for grey, 3 for colour", low=1)

    def __post_init__(self) -> None:
        check_fields(self, "vision")  # types and ranges, as declared above
        if self.image_size % self.patch_size != 0:
            divisors = [p for p in range(1, self.image_size + 1) if self.image_size % p == 0]
            raise ConfigError(
                f"patch_size={self.patch_size} does not divide the {self.image_size}x{self.image_size} images; "
                f"choose one of {', '.join(map(str, divisors))}"
            )

    @property
    def grid(self) -> int:
        """Patches per side of the image."""
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        """Tokens per image: N = grid * grid."""
        return self.grid**2

    @property
    def patch_dim(self) -> int:
        """Numbers per patch: P = channels * patch_size^2."""
        return self.channels * self.patch_size**2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VisionConfig:
        return from_mapping(cls, d, "vision")


# --------------------------------------------------------------------------- patches


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(..., c, H, W) -> (..., N, c*p*p): the p x p squares in reading order, each flattened."""
    *lead, c, H, W = images.shape
    p = patch_size
    x = images.reshape(-1, c, H // p, p, W // p, p)  # (L, c, gh, p, gw, p): L = all leading dims
    x = x.permute(0, 2, 4, 1, 3, 5)  # (L, gh, gw, c, p, p): the grid first, each square's pixels last
    return x.reshape(*lead, (H // p) * (W // p), c * p * p)  # (..., N, P)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 1) -> torch.Tensor:
    """The inverse of `patchify`: (..., N, c*p*p) -> (..., c, H, W), for a square image."""
    *lead, N, _ = patches.shape
    p, g = patch_size, math.isqrt(N)
    x = patches.reshape(-1, g, g, channels, p, p)  # (L, gh, gw, c, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (L, c, gh, p, gw, p)
    return x.reshape(*lead, channels, g * p, g * p)


class PatchEmbedding(nn.Module):
    """Image -> tokens: each flattened patch through one linear layer, plus a learned vector for
    its place in the grid (the patches' own position encoding: which square of the image)."""

    def __init__(self, cfg: VisionConfig, n_embd: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.patch_dim, n_embd)  # the whole "vision encoder"
        self.wpe = nn.Embedding(cfg.n_patches, n_embd)  # patch position in the image, 0..N-1
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.wpe.weight, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, M, c, H, W) -> (B, M, N, C)."""
        patches = patchify(images, self.cfg.patch_size)  # (B, M, N, P)
        return self.proj(patches) + self.wpe.weight  # (B, M, N, C); wpe broadcasts over B and M


# --------------------------------------------------------------------------- the model


class VLM(GPT):
    """The GPT of model.py reading images too: every `image_token` in `idx` is a slot that one
    patch embedding fills, in order (a row's first N slots take its first image, and so on).
    Without image slots it is exactly the text GPT it extends (same weights, same logits)."""

    def __init__(self, cfg: GPTConfig, vision: VisionConfig, image_token: int) -> None:
        super().__init__(cfg)
        if not 0 <= image_token < cfg.vocab_size:
            raise ConfigError(f"image_token={image_token} is not a token id of a vocabulary of {cfg.vocab_size}")
        self.vision_config = vision
        self.image_token = image_token
        self.vision = PatchEmbedding(vision, cfg.n_embd)

    def embed(self, idx: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, C) with each image slot replaced by its patch's embedding.
        `images` (B, M, c, H, W) holds each row's images in order; rows with fewer images than M
        are padded with anything (those images are never read)."""
        x = self.transformer.wte(idx)  # (B, T, C); slots hold the placeholder's vector for now
        slots = idx == self.image_token  # (B, T)
        if not slots.any():
            return x
        N = self.vision_config.n_patches
        per_row = slots.sum(1)  # (B,) slots in each row
        n_images = per_row // N
        if images is None or bool((per_row % N).any()) or int(n_images.max()) > images.size(1):
            have = 0 if images is None else images.size(1)
            raise ValueError(
                f"image slots per row {per_row.tolist()} do not make whole images of {N} patches from {have}"
            )
        patches = self.vision(images)  # (B, M, N, C)
        used = torch.arange(images.size(1), device=idx.device)[None, :] < n_images[:, None]  # (B, M)
        # masked_scatter fills the slots row by row, left to right, from the used images in order
        return x.masked_scatter(slots[..., None], patches[used].to(x.dtype))  # (B, T, C)

    def _run(self, idx: torch.Tensor, cache: KVCache | None, need_weights: bool, images: torch.Tensor | None = None):
        """As `GPT._run`, with the patches in their slots: positions, causal bias and blocks are the
        GPT's (image slots count as positions; a text token sees the patches before it)."""
        return super()._run(idx, cache, need_weights, tokens=self.embed(idx, images))

    def forward(
        self, idx: torch.Tensor, cache: KVCache | None = None, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T) whose image slots read `images` (B, M, c, H, W)."""
        return self.logits(self._run(idx, cache, False, images)[0])

    def hidden_states(self, idx: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        """The final hidden states (B, T, C), as `GPT.hidden_states`."""
        return self._run(idx, None, False, images)[0]

    def forward_with_attention(
        self, idx: torch.Tensor, images: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and every layer's attention weights (B, nh, T, T), patches included."""
        x, weights = self._run(idx, None, True, images)
        return self.logits(x), weights


@torch.no_grad()
def greedy_answer(
    model: VLM, idx: torch.Tensor, images: torch.Tensor, max_new_tokens: int, stop: int | None = None
) -> torch.Tensor:
    """Greedy decoding with the KV cache: the prompts `idx` (B, T), images included, are read
    once, then each step feeds only the token just chosen (never the image mark, which only
    images fill). Returns the new ids (B, n); a row that has emitted `stop` repeats it, and
    decoding ends once every row has."""
    cache = model.new_cache(idx.size(1) + max_new_tokens)
    logits = model(idx, cache=cache, images=images)[:, -1]  # (B, V)
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    out: list[torch.Tensor] = []
    while len(out) < max_new_tokens and not bool(done.all()):
        logits[:, model.image_token] = float("-inf")  # the image mark is read, never written
        nxt = torch.where(done, stop if stop is not None else 0, logits.argmax(-1))  # (B,)
        out.append(nxt)
        if stop is not None:
            done = done | (nxt == stop)
        if len(out) < max_new_tokens and not bool(done.all()):
            logits = model(nxt[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1) if out else idx.new_zeros(idx.size(0), 0)


@torch.no_grad()
def image_attention(model: VLM, idx: torch.Tensor, images: torch.Tensor, query: int) -> torch.Tensor:
    """Where the position `query` of one sequence `idx` (T,) looks in its images (M, c, H, W):
    its attention weight on every patch, per layer, averaged over the heads: (n_layer, M', N) for
    the M' images the sequence holds. The rest of each row's weight (to 1) is on text positions."""
    was_training = model.training
    model.eval()
    try:
        _, weights = model.forward_with_attention(idx[None], images[None])  # each (1, nh, T, T)
    finally:
        model.train(was_training)
    slots = (idx == model.image_token).nonzero().squeeze(1)  # (M' * N,) positions of the patches
    rows = torch.stack([w[0, :, query, slots].mean(0) for w in weights])  # (n_layer, M' * N)
    return rows.view(len(weights), -1, model.vision_config.n_patches).float().cpu()
