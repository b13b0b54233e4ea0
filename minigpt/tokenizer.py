"""Tokenizers: characters (the default) or byte-level BPE, behind one small interface.

Both turn text into ids and back, name the characters they cannot encode, and serialise to plain
values that travel in checkpoints: a character tokenizer as its sorted character list (the
checkpoint's `vocab`, as it always was), a BPE tokenizer as `{"kind": "bpe", "json": ...}`, the
`tokenizers` library's own JSON (the checkpoint's `tokenizer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from minigpt.errors import ConfigError, VocabularyError
from minigpt.schema import problem, shown

TOKENIZERS = ("char", "bpe")
# the sizes a BPE vocabulary may have: more than the 256 bytes, at most what uint16 ids hold
BPE_VOCAB_SIZES = {"above": 256, "high": 65536}


def apply_unknown_policy(text: str, missing: list[str], unknown: str, known: Callable[[str], bool]) -> str:
    """`text` after the `unknown` policy for its `missing` characters: 'error' raises, 'skip'
    drops them, a single known character replaces them."""
    if not missing:
        return text
    if unknown == "error":
        shown = " ".join(repr(c) for c in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise VocabularyError(
            f"text contains {len(missing)} character(s) outside the model's vocabulary: "
            f"{shown}{more}; remove them, or pass unknown=skip or unknown=<a known character>"
        )
    gone = set(missing)
    if unknown == "skip":
        return "".join(ch for ch in text if ch not in gone)
    if len(unknown) == 1 and unknown not in gone and known(unknown):
        return "".join(unknown if ch in gone else ch for ch in text)
    raise VocabularyError(
        f"unknown={unknown!r} is not a policy: use 'error', 'skip' or one character of the vocabulary"
    )


class Tokenizer(Protocol):
    """What the rest of minigpt needs from a tokenizer."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, unknown: str = "error") -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def unknown_chars(self, text: str) -> list[str]: ...

    def token_texts(self) -> list[str]: ...

    def stream(self) -> TextStream: ...

    def serialize(self) -> list[str] | dict: ...


class TextStream(Protocol):
    """Turns ids arriving one at a time into text, for printing while generating."""

    def push(self, token: int) -> str: ...

    def flush(self) -> str: ...


# --------------------------------------------------------------------------- characters


class CharTokenizer:
    """Maps each character to an integer id and back; saved in checkpoints as its `chars`."""

    kind = "char"

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
        text = apply_unknown_policy(text, self.unknown_chars(text), unknown, self.stoi.__contains__)
        return [self.stoi[ch] for ch in text]

    def encode_tensor(self, text: str) -> torch.Tensor:
        """Ids of `text` as a 1-D int64 tensor (vectorised over the whole string)."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_texts(self) -> list[str]:
        """The text of every id, in id order (labels for plots)."""
        return list(self.chars)

    def stream(self) -> CharStream:
        return CharStream(self.chars)

    def serialize(self) -> list[str]:
        return list(self.chars)


class CharStream:
    """Every character id is a whole character: each one is printed as it comes."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars

    def push(self, token: int) -> str:
        return self.chars[token]

    def flush(self) -> str:
        return ""


# --------------------------------------------------------------------------- byte-level BPE


class BPETokenizer:
    """Byte-pair encoding over UTF-8 bytes (GPT-2's scheme), run by the `tokenizers` library.

    Trained with the 256 byte values as its first tokens, it can encode any text: nothing is
    unknown. It also wraps tokenizers read from elsewhere (GPT-2's own, see minigpt/gpt2.py).
    """

    kind = "bpe"

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.tokenizer = tokenizer
        self._round_trips: dict[str, bool] = {}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn `vocab_size - 256` merges on top of the 256 bytes from `texts` (an iterator of
        chunks, so a large corpus is never held whole)."""
        words = problem(vocab_size, int, BPE_VOCAB_SIZES)
        if words is not None:
            raise ConfigError(f"data.bpe_vocab_size must be {words}, got {shown(vocab_size)}")
        tok = HFTokenizer(models.BPE())
        # GPT-2's pre-tokenizer: split into words, numbers, punctuation and spaces, mapped to bytes
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        try:
            return cls(HFTokenizer.from_str(text))
        except Exception as e:  # the library raises its own exception type on malformed JSON
            raise VocabularyError(f"the stored BPE tokenizer cannot be read ({str(e)[:120]})") from None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def _round_trips_alone(self, ch: str) -> bool:
        if ch not in self._round_trips:
            self._round_trips[ch] = self.decode(self.tokenizer.encode(ch).ids) == ch
        return self._round_trips[ch]

    def unknown_chars(self, text: str) -> list[str]:
        """Characters that do not survive encoding and decoding, in order of first appearance
        (none for a byte-level tokenizer)."""
        return [ch for ch in dict.fromkeys(text) if not self._round_trips_alone(ch)]

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        text = apply_unknown_policy(text, self.unknown_chars(text), unknown, self._round_trips_alone)
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of several texts at once (the library encodes them in parallel)."""
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_texts(self) -> list[str]:
        return [self.decode([i]) for i in range(self.vocab_size)]

    def stream(self) -> BPEStream:
        return BPEStream(self)

    def serialize(self) -> dict:
        return {"kind": "bpe", "json": self.tokenizer.to_str()}


class BPEStream:
    """A byte-level token may end in the middle of a UTF-8 character (the decoder shows the
    incomplete character as U+FFFD): hold such tokens until the character is complete. A UTF-8
    character has at most 4 bytes and a token at least one, so at most 4 tokens are held."""

    def __init__(self, tokenizer: BPETokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd") and len(self.pending) < 4:
            return ""
        self.pending = []
        return text

    def flush(self) -> str:
        text, self.pending = self.tokenizer.decode(self.pending), []
        return text


# --------------------------------------------------------------------------- checkpoints


def tokenizer_from_serialized(value: list[str] | dict) -> CharTokenizer | BPETokenizer:
    """The tokenizer that `serialize()` wrote: a character list, or a dict naming its kind."""
    if isinstance(value, dict):
        if value.get("kind") == "bpe" and isinstance(value.get("json"), str):
            return BPETokenizer.from_json(value["json"])
        raise VocabularyError(f"unknown tokenizer kind {value.get('kind')!r}; known: {', '.join(TOKENIZERS)}")
    return CharTokenizer(value)
