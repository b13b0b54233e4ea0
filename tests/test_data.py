"""Corpus resolution, download on loopback, corpus checks, and the batch streams."""

import functools
import hashlib
import http.server
import threading

import pytest
import torch

from minigpt.data.corpus import (
    SHAKESPEARE_SHA256,
    CharDataModule,
    FixedWindows,
    RandomWindows,
    read_corpus,
    resolve_corpus,
)
from minigpt.errors import DataError


@pytest.fixture
def http_dir(tmp_path):
    """A loopback HTTP server over a temporary folder: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_the_hash_and_caches(http_dir, small_corpus, tmp_path):
    www, base = http_dir
    (www / "input.txt").write_bytes(small_corpus.read_bytes())
    sha256 = hashlib.sha256(small_corpus.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    got = resolve_corpus(None, "play", str(cache), f"{base}/input.txt", sha256)
    assert got == cache / "play" / "input.txt"
    assert got.read_bytes() == small_corpus.read_bytes()
    (www / "input.txt").unlink()  # the second call uses the cache, not the network
    assert resolve_corpus(None, "play", str(cache), f"{base}/input.txt", sha256) == got
    assert [p.name for p in got.parent.iterdir()] == ["input.txt"]  # no temporary files left


@pytest.mark.slow  # about Tiny Shakespeare itself: CI seeds it (.ci/run)
def test_tiny_shakespeare_has_the_hash_size_and_split_the_docs_give(shakespeare):
    assert hashlib.sha256(shakespeare.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
    dm = CharDataModule(block_size=64, path=str(shakespeare))
    dm.setup()
    assert len(read_corpus(shakespeare)) == 1_115_394 and dm.tokenizer.vocab_size == 65
    assert len(dm.train_data) == 1_003_854 and len(dm.val_data) == 111_540


def test_download_with_a_wrong_hash_leaves_nothing(http_dir, tmp_path):
    www, base = http_dir
    (www / "input.txt").write_text("not shakespeare")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="SHA-256 .* expected"):
        resolve_corpus(None, "ts", str(cache), f"{base}/input.txt", "0" * 64)
    assert list((cache / "ts").iterdir()) == []


def test_offline_without_cache_says_where_to_put_the_file(http_dir, tmp_path):
    _, base = http_dir
    with pytest.raises(DataError, match=r"could not download.*put the file at .*input.txt.*data.path="):
        resolve_corpus(None, "ts", str(tmp_path), f"{base}/missing.txt", None)
    with pytest.raises(DataError, match="could not download"):
        resolve_corpus(None, "ts", str(tmp_path), "http://127.0.0.1:9/input.txt", None)  # nothing listens


def test_a_corpus_path_with_the_named_corpus_hash_is_kept_for_later_commands(small_corpus, tmp_path):
    sha256 = hashlib.sha256(small_corpus.read_bytes()).hexdigest()
    cache, nowhere = tmp_path / "cache", "http://127.0.0.1:9/input.txt"  # nothing listens on port 9
    assert resolve_corpus(str(small_corpus), "play", str(cache), nowhere, sha256) == small_corpus
    cached = cache / "play" / "input.txt"
    assert cached.read_bytes() == small_corpus.read_bytes()
    assert resolve_corpus(None, "play", str(cache), nowhere, sha256) == cached  # no download attempted
    other = tmp_path / "other.txt"
    other.write_text("another corpus")
    assert resolve_corpus(str(other), "other", str(cache), nowhere, sha256) == other
    assert not (cache / "other").exists()  # a file with another hash is read, never cached


def test_a_missing_corpus_skips_a_slow_test_and_fails_it_under_ci(monkeypatch):
    from conftest import missing_corpus

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must seed it"):
        missing_corpus()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="Tiny Shakespeare not found"):
        missing_corpus()


def test_explicit_path_wins(tmp_path):
    p = tmp_path / "c.txt"
    assert resolve_corpus(str(p), "tinyshakespeare", "nowhere", "http://127.0.0.1:9/x", None) == p


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"  \n\n ", "is empty"),
        (b"caf\xe9 au lait", r"not UTF-8 text \(byte 0xe9 at offset 3\)"),
        (b"abc\x00\x01\x02", "looks binary"),
    ],
)
def test_bad_corpora_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_corpus(path)


def test_directory_and_windows_line_endings(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_corpus(tmp_path)
    p = tmp_path / "crlf.txt"
    p.write_bytes(b"line one\r\nline two\r\n")
    assert read_corpus(p) == "line one\nline two\n"


def test_too_short_corpus_names_the_split_and_the_fix(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("abcdefghij" * 30)  # 300 chars: validation split has 30
    dm = CharDataModule(block_size=64, path=str(p))
    with pytest.raises(DataError, match=r"validation split .* has 30 characters.*smaller model.block_size"):
        dm.setup()


def test_split_is_90_10_and_vocabulary_comes_from_the_corpus(small_corpus):
    text = read_corpus(small_corpus)
    dm = CharDataModule(block_size=64, path=str(small_corpus))
    dm.setup()
    assert dm.tokenizer.chars == sorted(set(text))
    n_train = int(len(text) * 0.9)
    assert len(dm.train_data) == n_train and len(dm.val_data) == len(text) - n_train
    assert dm.tokenizer.decode(dm.val_data.tolist()) == text[n_train:]
    assert dm.tokenizer.decode(dm.train_data[-10:].tolist()) == text[n_train - 10 : n_train]


def test_random_windows_are_a_function_of_the_step():
    data = torch.arange(1000)
    full = RandomWindows(data, 8, 4, seed=5)
    first = [next(it) for it in [iter(full)] for _ in range(6)]
    resumed = RandomWindows(data, 8, 4, seed=5, start_step=3)
    again = [b for b, _ in zip(resumed, range(3))]
    for (x1, y1), (x2, y2) in zip(first[3:], again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x, y = first[0]
    assert x.shape == (4, 8) and torch.equal(y, x + 1)  # targets are inputs shifted by one
    other_seed = next(iter(RandomWindows(data, 8, 4, seed=6)))[0]
    assert not torch.equal(other_seed, x)


def test_ranks_take_disjoint_slices_of_one_global_batch():
    data = torch.arange(100_000)
    r0 = next(iter(RandomWindows(data, 8, 16, seed=1, rank=0, world_size=2)))[0]
    r1 = next(iter(RandomWindows(data, 8, 16, seed=1, rank=1, world_size=2)))[0]
    single = next(iter(RandomWindows(data, 8, 32, seed=1)))[0]
    assert torch.equal(torch.cat([r0, r1]), single)


def test_validation_windows_cover_every_token_once_in_order():
    data = torch.arange(101)
    windows = FixedWindows(data, 10)
    assert len(windows) == 10
    xs = torch.cat([windows[i][0] for i in range(len(windows))])
    assert torch.equal(xs, torch.arange(100))
    assert torch.equal(windows[3][1], torch.arange(31, 41))
    subset = FixedWindows(data, 10, max_windows=3)
    assert [int(subset[i][0][0]) for i in range(3)] == [0, 40, 90]
