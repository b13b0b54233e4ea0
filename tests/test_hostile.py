"""Hostile input: each bad corpus, prompt, override, checkpoint or run directory gets one clear
error (or is handled correctly), and nothing already saved is touched. Property-based tests
cover the tokenizer, the chunked corpus reader and the sampler's arguments."""

import os
import string
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli, train_cfg
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minigpt.checkpoint.load import load_model
from minigpt.data.corpus import CharDataModule, encode_corpus, iter_corpus, read_corpus
from minigpt.errors import CheckpointError, ConfigError, DataError, RunDirError, VocabularyError
from minigpt.sampling import SamplingConfig, generate, make_generator
from minigpt.tokenizer import CharTokenizer
from minigpt.training.run import train

# text with the characters that break naive readers: line endings, multi-byte UTF-8, emoji
PIECES = list(string.printable) + ["\r\n", "\r", "é", "€", "中", "🙂"]
TEXT = st.lists(st.sampled_from(PIECES), min_size=1, max_size=60).map("".join)


@given(text=TEXT)
def test_tokenizer_round_trips_any_text(text):
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.chars == sorted(set(text))


@given(known=st.text(min_size=1), text=st.text())
def test_skip_drops_exactly_the_unknown_characters(known, text):
    tok = CharTokenizer.from_text(known)
    assert tok.decode(tok.encode(text, unknown="skip")) == "".join(c for c in text if c in set(known))
    if any(c not in set(known) for c in text):
        with pytest.raises(VocabularyError, match="outside the model's vocabulary"):
            tok.encode(text)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, chunk=st.integers(1, 17))
def test_chunked_reading_and_encoding_equal_the_whole_text(text, chunk):
    """Chunks split multi-byte characters and \\r\\n pairs anywhere; the result must not notice."""
    assume(not text.isspace())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.txt"
        path.write_bytes(text.encode("utf-8"))
        expected = text.replace("\r\n", "\n")
        assert "".join(iter_corpus(path, chunk_bytes=chunk)) == expected
        tok = CharTokenizer.from_text(expected)
        ids = encode_corpus(path, tok, chunk_bytes=chunk, token_dir=tmp)
        assert ids.tolist() == tok.encode(expected)
        assert os.listdir(tmp) == ["c.txt"]  # the token file is unlinked once mapped


@settings(max_examples=15, deadline=None)
@given(
    temperature=st.just(0.0) | st.floats(1e-300, 3),
    top_k=st.none() | st.integers(1, 100),
    top_p=st.none() | st.floats(0.01, 1),
    min_p=st.none() | st.floats(0.01, 1),
    penalty=st.floats(0.5, 2),
    n=st.integers(0, 20),
)
def test_any_valid_sampler_arguments_give_valid_tokens(tiny_model, temperature, top_k, top_p, min_p, penalty, n):
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=penalty)
    prompt = torch.tensor([[0, 1, 2]])
    out = generate(tiny_model, prompt, n, cfg, generator=make_generator(0, "cpu"))
    assert out.shape == (1, 3 + n) and torch.equal(out[:, :3], prompt)
    assert int(out.min()) >= 0 and int(out.max()) < tiny_model.config.vocab_size


def test_a_tiny_positive_temperature_behaves_like_greedy(tiny_model):
    """Found by hypothesis: logits / 1e-300 used to overflow and softmax gave NaN."""
    prompt = torch.tensor([[0, 1, 2]])
    out = generate(tiny_model, prompt, 5, SamplingConfig(temperature=1e-300), generator=make_generator(0, "cpu"))
    assert torch.equal(out, generate(tiny_model, prompt, 5, SamplingConfig(temperature=0)))


@given(
    field=st.sampled_from(["temperature", "top_k", "top_p", "min_p", "repetition_penalty"]),
    value=st.one_of(st.floats(-5, 0, exclude_max=True), st.floats(1.01, 5), st.just("abc")),
)
def test_invalid_sampler_arguments_are_refused(field, value):
    if field == "top_k":
        value = -3 if not isinstance(value, str) else value
    if field in ("temperature", "repetition_penalty") and not isinstance(value, str) and value > 1:
        value = -value  # large values are valid there
    with pytest.raises(ConfigError, match=field):
        SamplingConfig(**{field: value})


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    return load_model(tiny_run["last_ckpt"]).model


def test_prompt_longer_than_the_context(tiny_run):
    loaded = load_model(tiny_run["last_ckpt"])
    block = loaded.model.config.block_size
    prompt = torch.tensor([loaded.tokenizer.encode(("ROMEO: but soft, what light " * 10)[: 3 * block])])
    cached = generate(loaded.model, prompt, 20, SamplingConfig(temperature=0))
    full = generate(loaded.model, prompt, 20, SamplingConfig(temperature=0), use_cache=False)
    assert cached.shape == (1, 3 * block + 20) and torch.equal(cached, full)


def test_single_character_corpus_and_binary_corpus(tmp_path, tiny_run):
    same = tmp_path / "a.txt"
    same.write_text("a" * 5000)
    with pytest.raises(DataError, match=r"single distinct character \('a'\).*nothing to learn"):
        CharDataModule(block_size=8, path=str(same)).setup()
    binary = Path(tiny_run["last_ckpt"])  # a zip archive of tensors
    with pytest.raises(DataError, match="not UTF-8 text|looks binary"):
        read_corpus(binary)


def test_corpus_tokens_are_memory_mapped_not_in_ram(small_corpus):
    dm = CharDataModule(block_size=32, path=str(small_corpus))
    dm.setup()
    assert dm.train_data.dtype == torch.uint8  # 1 byte a character, not 8
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs Linux /proc to see mappings")
    ptr = dm.train_data.untyped_storage().data_ptr()
    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(a, 16) for a in line.split()[0].split("-"))
        if lo <= ptr < hi:
            mapped.append(line)
    assert mapped and "minigpt-tokens-" in mapped[0] and "(deleted)" in mapped[0]
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.long and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("model.n_head=-2", ConfigError, "model.n_head must be an integer >= 1, got -2"),
        ("model.n_layer=0", ConfigError, "model.n_layer must be an integer >= 1, got 0"),
        ("data.batch_size=0", ConfigError, "data.batch_size must be an integer >= 1, got 0"),
        ("checkpoint.every_n_steps=-5", ConfigError, "checkpoint.every_n_steps must be an integer >= 1, got -5"),
        ("checkpoint.every_n_steps=ten", ConfigError, "checkpoint.every_n_steps must be an integer >= 1"),
        ("resume=yes", ConfigError, "resume='yes' is unknown; choose one of auto (or null); pass resume=auto"),
        ("trainer.max_steps=-1", ConfigError, "trainer.max_steps must be an integer >= 1"),
        (
            "trainer.val_check_interval=0",
            ConfigError,
            "trainer.val_check_interval must be a number > 0 (or null), got 0",
        ),
        ("trainer.val_check_interval=1.5", ConfigError, "(or a fraction in (0, 1]), got 1.5"),
        ("trainer.gradient_clip_val=-1", ConfigError, "trainer.gradient_clip_val must be a number >= 0"),
        ("matmul_precision=low", ConfigError, "matmul_precision='low' is unknown; choose one of highest, high, medium"),
        ("keep_freed_memory=sometimes", ConfigError, "keep_freed_memory must be true or false, got 'sometimes'"),
        ("optim.lr=-1", ConfigError, "optim.lr must be a number >= 0, got -1"),
        ("optim.lr=abc", ConfigError, "optim.lr must be a number >= 0, got 'abc'"),
        ("optim.weight_decay=-0.1", ConfigError, "optim.weight_decay must be a number >= 0"),
        ("data.val_windows=0", ConfigError, "data.val_windows must be an integer >= 1"),
        ("sample.temperature=-1", ConfigError, "sample.temperature must be a number >= 0, got -1"),
        ("sample.max_new_tokens=-5", ConfigError, "sample.max_new_tokens must be an integer >= 0"),
    ],
)
def test_bad_sizes_and_types_are_refused_before_anything_is_written(override, error, message, tmp_path, small_corpus):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(train_cfg(tmp_path, small_corpus, override))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "tensorboard").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.split_fused=maybe", "optim.split_fused must be true or false, got 'maybe'"),
        ("optim.nesterov=1", "optim.nesterov must be true or false, got 1"),
        ("optim.momentum_warmup_steps=-1", "optim.momentum_warmup_steps must be an integer >= 0, got -1"),
        ("optim.ns_steps=0", "optim.ns_steps must be an integer >= 1, got 0"),
    ],
)
def test_bad_muon_settings_are_refused_before_anything_is_written(override, message, tmp_path, small_corpus):
    with pytest.raises(ConfigError, match=message):
        train(train_cfg(tmp_path, small_corpus, "optim=muon", override))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "tensorboard").exists()


def test_an_earlier_run_is_never_overwritten(tiny_run, small_corpus):
    run_dir = Path(tiny_run["run_dir"])
    before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    with pytest.raises(RunDirError, match="already holds checkpoints of an earlier run.*pass resume=auto"):
        train(train_cfg(run_dir, small_corpus, "trainer.max_steps=5", "trainer.val_check_interval=5"))
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == before


def test_read_only_output_disk(small_corpus, tmp_path):
    target = Path("/sys/minigpt-run")  # sysfs: read-only even for root
    if os.access("/sys", os.W_OK) and not Path("/sys/fs").exists():
        pytest.skip("no read-only file system to write to here")
    with pytest.raises(RunDirError, match="cannot be written.*writable disk"):
        train(train_cfg(target, small_corpus))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if not os.access(ro, os.W_OK):  # as a normal user a read-only folder counts too
        with pytest.raises(RunDirError, match="cannot be written"):
            train(train_cfg(ro / "run", small_corpus))


def resume_cfg(run_dir, corpus, ckpt, *overrides):
    return train_cfg(run_dir, corpus, f"ckpt_path={ckpt}", *overrides)


def test_a_sample_prompt_outside_the_vocabulary_is_refused_before_training(tmp_path, small_corpus):
    with pytest.raises(
        VocabularyError, match=r"sample.prompt has 1 character\(s\) outside the corpus's vocabulary: 'é'"
    ):
        train(train_cfg(tmp_path, small_corpus, "sample.prompt='Roméo'", "sample.max_new_tokens=20"))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # minutes of the default suite; CI runs it (make test-slow)
def test_train_py_checks_the_run_directory_before_hydra_writes_into_it(tiny_run, small_corpus):
    """From the command line Hydra writes .hydra/ and train.log into the run directory before
    minigpt's code runs; a refused fresh run must not overwrite an earlier run's record of its
    config, and an unwritable directory is our one line, not Hydra's traceback."""
    run_dir = Path(tiny_run["run_dir"])
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for option in ("run_dir", "hydra.run.dir"):
        result = run_cli(
            str(ROOT / "train.py"), "model=tiny", "model.n_layer=1", f"data.path={small_corpus}", f"{option}={run_dir}"
        )
        assert result.returncode == 2
        assert (
            result.stderr.strip()
            .splitlines()[-1]
            .startswith(f"error: run directory {run_dir} already holds checkpoints")
        )
        assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    if os.access("/sys", os.W_OK) and not Path("/sys/fs").exists():
        pytest.skip("no read-only file system to write to here")
    result = run_cli(str(ROOT / "train.py"), "model=tiny", "run_dir=/sys/minigpt-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: run directory /sys/minigpt-run cannot be written")


def test_incompatible_checkpoints_get_one_line_each(tiny_run, small_corpus, tmp_path):
    ckpt = Path(tiny_run["last_ckpt"])
    other_corpus = tmp_path / "other.txt"
    other_corpus.write_text(small_corpus.read_text() + "é€")
    with pytest.raises(CheckpointError, match=r"vocabulary of \d+ characters.*corpus adds 'é' '€'.*same corpus"):
        train(resume_cfg(tmp_path / "a", other_corpus, ckpt))
    with pytest.raises(CheckpointError, match=r"another model than the config \(n_embd=16 vs 32"):
        train(resume_cfg(tmp_path / "b", small_corpus, ckpt, "model.n_embd=32"))
    full = torch.load(ckpt, weights_only=True)
    del full["optimizer_states"]
    weights_only = tmp_path / "weights.ckpt"
    torch.save(full, weights_only)
    with pytest.raises(CheckpointError, match="cannot resume training: it lacks optimizer_states"):
        train(resume_cfg(tmp_path / "c", small_corpus, weights_only))
    full = torch.load(ckpt, weights_only=True)
    del full["state_dict"][sorted(full["state_dict"])[0]]
    missing = tmp_path / "missing.ckpt"
    torch.save(full, missing)
    with pytest.raises(CheckpointError, match=r"is missing 1 weight\(s\) such as model\."):
        train(resume_cfg(tmp_path / "d", small_corpus, missing))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="is corrupt or truncated"):
        train(resume_cfg(tmp_path / "e", small_corpus, truncated))
    for name in "abcde":
        assert not (tmp_path / name / "checkpoints").exists()


def test_a_file_system_error_no_check_caught_is_still_one_line(capsys, tmp_path):
    """The safety net under every entry point: an OSError (read-only disk, full disk, a folder
    where a file should be) becomes one line naming the path, exit code 2."""
    from minigpt.cli import friendly_errors, user_errors

    @friendly_errors
    def hydra_task(cfg):
        (tmp_path / "out.txt").mkdir()
        (tmp_path / "out.txt").write_text("x")  # a folder where a file should be

    with pytest.raises(SystemExit) as exit_info:
        hydra_task(None)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: cannot use {tmp_path / 'out.txt'}: Is a directory; check that the path")

    with pytest.raises(SystemExit) as exit_info, user_errors():  # the benchmark scripts' wrapper
        (tmp_path / "missing" / "out.txt").write_text("x")
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: cannot use {tmp_path / 'missing' / 'out.txt'}: No such file or directory")


# --------------------------------------------------------------------------- crafted checkpoints


def craft(tiny_run, tmp_path, change, name="crafted.ckpt") -> Path:
    """A real checkpoint of the tiny run, loaded as plain data, changed by `change(ckpt)` and saved."""
    ckpt = torch.load(tiny_run["last_ckpt"], weights_only=True)
    change(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def set_meta(**values):
    return lambda ckpt: ckpt["minigpt"].update(values)


def set_model(**values):
    return lambda ckpt: ckpt["minigpt"]["model_config"].update(values)


def set_weight(value):
    def change(ckpt):
        name = "model.transformer.h.0.attn.c_attn.weight"
        ckpt["state_dict"][name] = ckpt["state_dict"][name].clone()
        ckpt["state_dict"][name][0, 0] = value

    return change


def bpe_entry(value):
    """The vocabulary replaced by a `tokenizer` entry (a BPE tokenizer's place)."""

    def change(ckpt):
        del ckpt["minigpt"]["vocab"]
        ckpt["minigpt"]["tokenizer"] = value

    return change


def reversed_vocab(ckpt):
    ckpt["minigpt"]["vocab"] = ckpt["minigpt"]["vocab"][::-1]


CRAFTED = {
    "meta is a list": (lambda c: c.update(minigpt=[1, 2]), "field minigpt must be a mapping, got list"),
    "no meta": (lambda c: c.pop("minigpt"), "has no minigpt metadata"),
    "format version 2": (set_meta(format_version=2), "has format version 2, this minigpt reads version 1"),
    "format version text": (set_meta(format_version="1"), "has format version '1'"),
    "model_config None": (set_meta(model_config=None), "field minigpt.model_config must be a mapping, got None"),
    "model_config list": (set_meta(model_config=[16, 2]), "field minigpt.model_config must be a mapping, got list"),
    "n_layer text": (set_model(n_layer="two"), "field minigpt.model_config.n_layer must be an integer >= 1, got 'two'"),
    "n_layer 2**70": (
        set_model(n_layer=2**70),
        "model_config.n_layer must be an integer >= 1, got an integer of 71 bits",
    ),
    "unknown option": (set_model(n_experts=8), "field minigpt.model_config.n_experts is not an option of GPTConfig"),
    "key not text": (lambda c: c["minigpt"]["model_config"].update({5: 1}), "model_config.5 is not an option"),
    "arch list": (set_model(arch=["gpt"]), "field minigpt.model_config.arch must be one of gpt, lstm, got list"),
    "vocab_size missing": (lambda c: c["minigpt"]["model_config"].pop("vocab_size"), "vocab_size is missing"),
    "rope_base nan": (set_model(rope_base=float("nan")), "rope_base must be a number > 0, got nan"),
    "n_head 3": (set_model(n_head=3), r"model_config is not a valid model config \(model.n_embd=16 is not divisible"),
    "vocab of lists": (set_meta(vocab=[["a"], ["b"]]), r"field minigpt.vocab\[0\] must be one character, got list"),
    "vocab of ints and text": (set_meta(vocab=["a", 5, "c"]), r"field minigpt.vocab\[1\] must be one character, got 5"),
    "vocab of words": (set_meta(vocab=["ab", "c"]), r"field minigpt.vocab\[0\] must be one character, got 'ab'"),
    "vocab surrogate": (set_meta(vocab=["a", "\ud800"]), r"vocab\[1\] must be one character, got '\\ud800'"),
    "vocab unsorted": (reversed_vocab, r"field minigpt.vocab must be sorted and distinct, but \[1\] is"),
    "vocab empty": (set_meta(vocab=[]), "field minigpt.vocab must be a non-empty list of characters, got list"),
    "vocab dict": (set_meta(vocab={"a": 0}), "field minigpt.vocab must be a non-empty list of characters, got dict"),
    "vocab and tokenizer": (set_meta(tokenizer={"kind": "bpe", "json": "{}"}), "stored beside minigpt.vocab"),
    "tokenizer kind": (
        bpe_entry({"kind": "x\x1b[31m", "json": "{}"}),
        r"field minigpt.tokenizer.kind must be 'bpe', got 'x\\x1b\[31m'",
    ),
    "tokenizer JSON": (
        bpe_entry({"kind": "bpe", "json": '{"model": "\x1b[31m"}'}),
        r"field minigpt.tokenizer is not a usable tokenizer \(the stored BPE tokenizer cannot be read",
    ),
    "run_config list": (set_meta(run_config=["a"]), "field minigpt.run_config must be a mapping, got list"),
    "run_config data": (set_meta(run_config={"data": "x"}), "field minigpt.run_config.data must be a mapping"),
    "run_config tensor": (
        set_meta(run_config={"optim": {"lr": torch.ones(2)}}),
        r"field minigpt.run_config.optim.lr must be plain data .* got a tensor of shape \(2,\)",
    ),
    "best_val_loss text": (
        set_meta(best_val_loss="low"),
        r"field minigpt.best_val_loss must be a loss >= 0 .*got 'low'",
    ),
    "state_dict list": (lambda c: c.update(state_dict=[1]), "field state_dict must be a mapping of weights, got list"),
    "weight text": (
        lambda c: c["state_dict"].update({"model.lm_head.weight": "abc"}),
        r"field state_dict\['model.lm_head.weight'\] must be a tensor, got 'abc'",
    ),
    "NaN weight": (
        set_weight(float("nan")),
        r"holds NaN or infinite weights \(1 tensor\(s\), such as model.transformer",
    ),
    "inf weight": (set_weight(float("inf")), r"holds NaN or infinite weights \(1 tensor\(s\)"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_checkpoint_metadata_is_one_line_naming_file_and_field(tiny_run, tmp_path, case):
    change, message = CRAFTED[case]
    path = craft(tiny_run, tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    text = str(error.value)
    assert text.startswith(f"checkpoint {path}") and "\n" not in text and "\x1b" not in text


def test_generate_py_prints_one_line_for_a_crafted_checkpoint(tiny_run, tmp_path):
    path = craft(tiny_run, tmp_path, set_meta(vocab=[["a"], 5]))
    result = run_cli(str(ROOT / "generate.py"), f"ckpt={path}", "prompt=a", "max_new_tokens=5", "device=cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"error: checkpoint {path}: field minigpt.vocab[0] must be")
    )


def test_resuming_a_crafted_checkpoint_is_one_line(tiny_run, small_corpus, tmp_path):
    for name, change, message in (
        ("a", set_meta(model_config=None), "field minigpt.model_config must be a mapping, got None"),
        ("b", set_meta(vocab=[1, "a"]), r"field minigpt.vocab\[0\] must be one character, got 1"),
        ("c", lambda c: c.update(global_step="many"), "field global_step must be a step count, got 'many'"),
        ("d", lambda c: c.update(optimizer_states={}), "field optimizer_states must be a list of mappings, got dict"),
        ("e", set_weight(float("nan")), "holds NaN or infinite weights"),
    ):
        path = craft(tiny_run, tmp_path, change, f"{name}.ckpt")
        with pytest.raises(CheckpointError, match=message):
            train(resume_cfg(tmp_path / name, small_corpus, path))
        assert not (tmp_path / name / "checkpoints").exists()


def as_classifier(**values):
    """The tiny run's checkpoint with a classifier's entries (no head weights unless given)."""

    def change(ckpt):
        ckpt["minigpt"].update({"task": "classify", "labels": ["name", "verse"], "pooling": "last", **values})

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (as_classifier(), r"does not match its classifier config: missing 2 weight\(s\) such as head.weight"),
        (
            lambda c: c["minigpt"].update(task="classify"),
            "field minigpt.labels must be a list of label names, got None",
        ),
        (as_classifier(labels=["a\x1b[2J", "b"]), r"field minigpt.labels\[0\] must be printable text"),
        (as_classifier(labels=["a", "a"]), "field minigpt.labels must name at least 2 distinct labels"),
        (as_classifier(pooling="max"), "field minigpt.pooling must be one of last, mean, got 'max'"),
        (as_classifier(task="regress"), "field minigpt.task must be 'classify' or 'caption', got 'regress'"),
        (lambda c: None, r"is not a classifier \(no labels\)"),
    ],
)
def test_crafted_classifier_checkpoints_are_one_line(tiny_run, tmp_path, change, message):
    from minigpt.inference.classify import load_classifier

    path = craft(tiny_run, tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as error:
        load_classifier(path)
    assert str(error.value).startswith(f"checkpoint {path}") and "\n" not in str(error.value)
