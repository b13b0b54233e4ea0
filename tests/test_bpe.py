"""The BPE tokenizer option: round trips, chunked corpus encoding, streaming, and a trained
checkpoint that carries its tokenizer to generate.py."""

from pathlib import Path

import pytest
from conftest import ROOT, run_cli, train_cfg

from minigpt.checkpoint.load import check_resumable, load_model
from minigpt.data.corpus import CharDataModule, encode_corpus
from minigpt.errors import CheckpointError, ConfigError, VocabularyError
from minigpt.tokenizer import BPETokenizer, CharTokenizer, tokenizer_from_serialized
from minigpt.training.run import train

ODD = "naïve café — 😀 日本語\r\ttabs  and   spaces\n\n\n"


@pytest.fixture(scope="module")
def bpe(small_corpus: Path) -> BPETokenizer:
    return BPETokenizer.train([small_corpus.read_text()], vocab_size=400)


def test_round_trip_on_the_corpus_and_beyond_it(bpe, small_corpus):
    text = small_corpus.read_text()
    ids = bpe.encode(text)
    assert bpe.vocab_size == 400 and max(ids) < 400
    assert len(ids) < 0.6 * len(text)  # merges learned: far fewer tokens than characters
    assert bpe.decode(ids) == text
    assert bpe.decode(bpe.encode(ODD)) == ODD  # byte-level: no character is unknown
    assert bpe.unknown_chars(ODD) == []


def test_the_tokenizer_serialises_to_plain_values(bpe):
    value = bpe.serialize()
    assert value["kind"] == "bpe" and isinstance(value["json"], str)
    again = tokenizer_from_serialized(value)
    assert again.encode(ODD) == bpe.encode(ODD)
    chars = CharTokenizer.from_text("abc\n")
    assert tokenizer_from_serialized(chars.serialize()).chars == chars.chars
    with pytest.raises(VocabularyError, match="unknown tokenizer kind 'wordpiece'"):
        tokenizer_from_serialized({"kind": "wordpiece"})
    with pytest.raises(ConfigError, match="bpe_vocab_size must be an integer in"):
        BPETokenizer.train(["abc"], vocab_size=100)


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 22])
def test_chunked_corpus_encoding_equals_encoding_it_whole(bpe, small_corpus, tmp_path, chunk):
    """Chunks are cut where the pre-tokenizer starts a new word anyway, so chunking never changes
    the ids; also for a text without newlines and one with odd characters."""
    no_newlines = tmp_path / "one_line.txt"
    no_newlines.write_text(small_corpus.read_text()[:5000].replace("\n", " "))
    odd = tmp_path / "odd.txt"
    odd.write_text((ODD + small_corpus.read_text()[:3000]) * 2)
    for path in (small_corpus, no_newlines, odd):
        ids = encode_corpus(path, bpe, chunk_bytes=chunk, token_dir=str(tmp_path))
        text = path.read_bytes().decode().replace("\r\n", "\n")  # read_text would turn a lone \r into \n
        assert ids.tolist() == bpe.encode(text), (path.name, chunk)


def test_streamed_text_equals_the_decoded_text(bpe):
    """Byte-level tokens can split a character; the stream holds them back until it is whole."""
    ids = bpe.encode(ODD * 3)
    stream = bpe.stream()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == ODD * 3
    assert all("\ufffd" not in p for p in pieces)


def test_data_module_option(small_corpus):
    dm = CharDataModule(block_size=16, path=str(small_corpus), tokenizer="bpe", bpe_vocab_size=300)
    dm.setup()
    assert dm.tokenizer.kind == "bpe" and dm.tokenizer.vocab_size == 300
    assert str(dm.train_data.dtype) == "torch.uint16"  # 2 bytes a token once past 256
    with pytest.raises(ConfigError, match="data.tokenizer='words' is unknown; choose one of char, bpe"):
        CharDataModule(block_size=16, path=str(small_corpus), tokenizer="words")


def test_bpe_training_checkpoint_drives_generate_and_keeps_its_tokenizer(small_corpus, tmp_path):
    cfg = train_cfg(
        tmp_path / "run",
        small_corpus,
        "data.tokenizer=bpe",
        "data.bpe_vocab_size=300",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "data.val_windows=4",
        "callbacks.samples.max_new_tokens=20",
    )
    summary = train(cfg)
    assert summary["steps"] == 4
    loaded = load_model(summary["last_ckpt"])
    assert loaded.tokenizer.kind == "bpe" and loaded.model.config.vocab_size == 300
    assert "vocab" not in loaded.meta and loaded.meta["tokenizer"]["kind"] == "bpe"
    (labels,) = (tmp_path / "run" / "tensorboard").rglob("metadata.tsv")  # the projector: one row a token
    assert len(labels.read_text().splitlines()) == 300
    fresh = BPETokenizer.train([small_corpus.read_text()], vocab_size=300)
    text = small_corpus.read_text()[:2000]
    assert loaded.tokenizer.encode(text) == fresh.encode(text)  # the same ids after reload

    result = run_cli(
        str(ROOT / "generate.py"),
        f"ckpt={summary['last_ckpt']}",
        "prompt=ROMEO:",
        "max_new_tokens=20",
        "seed=1",
        "device=cpu",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:")

    # resuming with another tokenizer is refused before training, in one line
    other = BPETokenizer.train([text], vocab_size=280).serialize()
    with pytest.raises(CheckpointError, match="trained with a bpe tokenizer of 300 tokens, this run has a bpe"):
        check_resumable(summary["last_ckpt"], other, loaded.model.config.to_dict(), set())
    with pytest.raises(CheckpointError, match="this run has a character vocabulary of"):
        check_resumable(summary["last_ckpt"], list("abc"), loaded.model.config.to_dict(), set())
