"""Hostile paths: anything that is not a regular file (a FIFO, /dev/zero, a socket, a directory,
a symbolic link loop, a pipe from a process substitution) is named for what it is in one line,
before anything opens it, wherever a tool reads a file; a token file that cannot be written names
where; the corpus download goes through torch.hub and still fails in one line."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import urllib.error
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from minigpt.analysis.diagnose import read_text
from minigpt.analysis.metrics import evaluation_ids
from minigpt.checkpoint.gpt2 import shard_files
from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import CharDataModule, download, encode_corpus, iter_corpus, resolve_corpus
from minigpt.data.labelled import read_labelled
from minigpt.errors import CheckpointError, DataError, MinigptError
from minigpt.inference.generation import read_prompt
from minigpt.io import file_problem
from minigpt.tokenizer import CharTokenizer

PIPE = "is a pipe (a FIFO, or a process substitution such as <(cat file)), which can be read only once"


@pytest.fixture(scope="module")
def specials(tmp_path_factory) -> dict[str, Path]:
    """One path of each kind that must never be opened as a file."""
    folder = tmp_path_factory.mktemp("specials")
    os.mkfifo(folder / "fifo")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dangling").symlink_to(folder / "nowhere.txt")
    (folder / "dir").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))  # the file stays after the socket is closed
    sock.close()
    return {
        "fifo": folder / "fifo",
        "zero": Path("/dev/zero"),
        "loop": folder / "loop",
        "dangling": folder / "dangling",
        "dir": folder / "dir",
        "sock": folder / "sock",
    }


# the start of what each kind is called, as a regular expression
KINDS = {
    "fifo": re.escape(PIPE),
    "zero": "is a character device, not a file",
    "loop": "is a symbolic link loop",
    "dangling": r"is a symbolic link to \S+nowhere.txt, which does not exist",
    "dir": "is a directory",
    "sock": "is a socket, not a file",
}


@pytest.mark.parametrize("kind", KINDS)
def test_file_problem_names_each_kind_without_opening_it(specials, kind):
    """Returning at all shows nothing was opened: opening the FIFO would wait for a writer forever."""
    assert re.match(KINDS[kind], file_problem(specials[kind]))


def test_a_regular_file_and_a_link_to_one_have_no_problem(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    assert file_problem(tmp_path / "a.txt") is None and file_problem(tmp_path / "link") is None
    assert file_problem(tmp_path / "missing") == "does not exist"
    assert file_problem(tmp_path / "a.txt" / "b").startswith("does not exist (a part of the path")


@pytest.mark.parametrize("kind", ["fifo", "zero", "loop", "sock"])
def test_special_files_as_the_corpus_are_one_line(specials, kind):
    with pytest.raises(DataError, match=f"corpus file {specials[kind]} {KINDS[kind]}") as error:
        CharDataModule(block_size=8, path=str(specials[kind])).setup()
    assert "\n" not in str(error.value) and "data.path=" in str(error.value)


def test_a_process_substitution_is_refused_as_a_pipe(small_corpus):
    """`data.path=<(cat corpus)` hands the program /dev/fd/N, the read end of a pipe: reading it for
    the vocabulary would leave nothing for the encoding, so it is refused, not read twice."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, small_corpus.read_bytes()[:1000])
        with pytest.raises(DataError, match=re.escape(f"corpus file /dev/fd/{read_end} {PIPE}")):
            list(iter_corpus(Path(f"/dev/fd/{read_end}")))
    finally:
        os.close(read_end)
        os.close(write_end)


def test_evaluate_classify_generate_and_diagnose_refuse_special_files(specials, tiny_run):
    fifo, zero = specials["fifo"], specials["zero"]
    loaded = load_model(tiny_run["last_ckpt"])
    with pytest.raises(DataError, match=f"corpus file {fifo} is a pipe"):
        evaluation_ids(loaded, {"path": str(fifo)})  # evaluate's data.path, the whole file
    with pytest.raises(DataError, match=f"corpus file {zero} is a character device"):
        evaluation_ids(loaded, {"path": str(zero), "split": "val"})  # and its validation split
    with pytest.raises(DataError, match=f"labelled file {fifo} is a pipe"):
        read_labelled(fifo)  # train.py task=classify data.path=...
    for kind in ("fifo", "zero", "loop"):
        with pytest.raises(MinigptError, match=f"prompt_file {specials[kind]} {KINDS[kind]}"):
            read_prompt(OmegaConf.create({"prompt_file": str(specials[kind])}))
        with pytest.raises(MinigptError, match=f"text_file {specials[kind]} {KINDS[kind]}"):
            read_text(OmegaConf.create({"text_file": str(specials[kind])}))


@pytest.mark.parametrize("kind", ["fifo", "zero", "loop", "sock"])
def test_special_files_as_a_checkpoint_are_one_line(specials, kind):
    """generate, evaluate, diagnose, export, classify, init_from and ckpt_path all read through here."""
    with pytest.raises(CheckpointError, match=f"checkpoint {specials[kind]} {KINDS[kind]}.*; pass a .ckpt file"):
        load_model(specials[kind])


def test_a_gpt2_shard_index_naming_a_fifo_is_refused(specials, tmp_path):
    os.mkfifo(tmp_path / "model-00001.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"wte.weight": "model-00001.safetensors"}}))
    with pytest.raises(CheckpointError, match=f"model-00001.safetensors {PIPE[:10]}.*it was not read"):
        shard_files(tmp_path, index)


def test_a_symlink_loop_as_corpus_is_not_called_missing(specials):
    with pytest.raises(DataError, match="is a symbolic link loop") as error:
        list(iter_corpus(specials["loop"]))
    assert "does not exist" not in str(error.value)


# --------------------------------------------------------------------------- the token file


def test_an_unwritable_token_folder_is_named(small_corpus):
    if os.access("/sys", os.W_OK) and not Path("/sys/fs").exists():
        pytest.skip("no read-only folder to write to here")
    tok = CharTokenizer.from_text(small_corpus.read_text())
    with pytest.raises(DataError, match=r"cannot write the corpus's token file in /sys \(.*set TMPDIR to a writable"):
        encode_corpus(small_corpus, tok, token_dir="/sys")


def test_a_full_disk_under_the_token_file_is_named(small_corpus, tmp_path):
    """A full disk, provoked with a file-size limit: the write fails with the path, and no file is left."""
    tok = CharTokenizer.from_text(small_corpus.read_text())
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, limits[1]))
    try:
        with pytest.raises(
            DataError, match=rf"cannot write the corpus's token file {tmp_path}/minigpt-tokens-\S+\.bin"
        ):
            encode_corpus(small_corpus, tok, token_dir=str(tmp_path))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the download (no network)


def test_download_is_torch_hubs_with_the_hash(monkeypatch, tmp_path):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix, progress))
        Path(dst).write_text("text")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    got = resolve_corpus(None, "ts", str(tmp_path), "https://example.org/input.txt", "ab" * 32)
    assert got == tmp_path / "ts" / "input.txt" and got.read_text() == "text"
    assert calls == [("https://example.org/input.txt", str(got), "ab" * 32, False)]
    assert resolve_corpus(None, "ts", str(tmp_path), "https://example.org/input.txt", "ab" * 32) == got
    assert len(calls) == 1  # the cached copy is used


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (urllib.error.URLError("[Errno -3] Temporary failure in name resolution"), "could not download the corpus"),
        (TimeoutError("timed out"), "could not download the corpus from .* \\(timed out\\)"),
        (RuntimeError('invalid hash value (expected "00", got "ff")'), "has SHA-256 ff, expected 00; the file was"),
    ],
)
def test_download_failures_are_one_line(monkeypatch, tmp_path, error, message):
    def failing(url, dst, hash_prefix=None, progress=True):
        raise error

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing)
    with pytest.raises(DataError, match=message) as raised:
        download("https://example.org/input.txt", tmp_path / "ts" / "input.txt", "00")
    assert "\n" not in str(raised.value)
    if "could not" in message:
        assert f"put the file at {tmp_path / 'ts' / 'input.txt'} or pass data.path=" in str(raised.value)
