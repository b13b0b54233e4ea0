"""Character tokenizer: the vocabulary is the sorted set of characters of the corpus."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from minigpt.errors import VocabularyError


class CharTokenizer:
    """Maps each character to an integer id and back; saved in checkpoints as its `chars`."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = sorted(set(chars))
        if not self.chars:
            raise VocabularyError("the vocabulary is empty: the corpus has no characters")
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` outside the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.stoi))

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        """Ids of `text`. `unknown`: 'error' raises on characters outside the vocabulary,
        'skip' drops them, or a single in-vocabulary character replaces them."""
        missing = self.unknown_chars(text)
        if missing:
            if unknown == "error":
                shown = " ".join(repr(c) for c in missing[:20])
                more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
                raise VocabularyError(
                    f"text contains {len(missing)} character(s) outside the model's vocabulary: "
                    f"{shown}{more}; remove them, or pass unknown=skip or unknown=<a known character>"
                )
            if unknown == "skip":
                text = "".join(ch for ch in text if ch in self.stoi)
            elif len(unknown) == 1 and unknown in self.stoi:
                text = "".join(ch if ch in self.stoi else unknown for ch in text)
            else:
                raise VocabularyError(
                    f"unknown={unknown!r} is not a policy: use 'error', 'skip' or one character of the vocabulary"
                )
        return [self.stoi[ch] for ch in text]

    def encode_tensor(self, text: str) -> torch.Tensor:
        """Ids of `text` as a 1-D int64 tensor (vectorised over the whole string)."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)
