"""python -m minigpt export: each format computes the eager model's logits, at any length up to
block_size, and comes with the vocabulary and config it needs; bad input writes nothing."""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys

import pytest
import torch
from conftest import CONF, ROOT, run_cli
from hydra import compose, initialize_config_dir

from minigpt.architectures import build_model
from minigpt.checkpoint.format import LoadedModel
from minigpt.checkpoint.load import load_model
from minigpt.errors import ConfigError, MinigptError
from minigpt.inference.export import SAVERS, check_format, export, require_onnx, run, sidecar


def export_with_config(ckpt, fmt: str, out, *overrides: str) -> None:
    """What `python -m minigpt export ckpt=... format=... out=...` does, in this process."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("export", overrides=[f"ckpt={ckpt}", f"format={fmt}", f"out={out}", *overrides])
    run(cfg)


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run["last_ckpt"])


@pytest.fixture(scope="module")
def inputs(loaded, small_corpus) -> list[torch.Tensor]:
    """Real text at lengths other than the one exported with (block_size // 2), batch 3 and 1."""
    T = loaded.model.config.block_size
    ids = torch.tensor(loaded.tokenizer.encode(small_corpus.read_text()[: 3 * T]))
    return [ids[: 3 * 5].view(3, 5), ids[:T].view(1, T), ids[:1].view(1, 1)]


def test_exported_program_matches_the_eager_model_at_other_lengths(tiny_run, loaded, inputs, tmp_path):
    out = tmp_path / "tiny.pt2"
    export_with_config(tiny_run["last_ckpt"], "exported", out)
    program = torch.export.load(out).module()
    with torch.no_grad():
        for idx in inputs:
            torch.testing.assert_close(program(idx), loaded.model(idx), rtol=1e-5, atol=1e-5)
        T = loaded.model.config.block_size
        with pytest.raises(AssertionError, match=re.escape(f"idx.size()[1] <= {T}")):  # the program's own check
            program(torch.zeros(1, T + 1, dtype=torch.long))

    info = json.loads(sidecar(out).read_text())
    assert info["format"] == "exported" and info["file"] == "tiny.pt2"
    assert info["vocab"] == loaded.meta["vocab"] and info["model_config"] == loaded.model.config.to_dict()
    # the export and its JSON are enough: encode with the JSON's vocabulary, decode the argmax
    stoi = {ch: i for i, ch in enumerate(info["vocab"])}
    prompt = torch.tensor([[stoi[ch] for ch in "ROMEO:"]])
    with torch.no_grad():
        assert torch.equal(program(prompt).argmax(-1), loaded.model(prompt).argmax(-1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt2", "tiny.pt2.json"]  # no temporary left


def test_onnx_export_matches_the_eager_model_at_other_lengths(tiny_run, loaded, inputs, tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    out = tmp_path / "tiny.onnx"
    export_with_config(tiny_run["last_ckpt"], "onnx", out)
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["idx"] and [o.name for o in model.graph.output] == ["logits"]
    session = ReferenceEvaluator(model)  # onnx's own interpreter: slow, exact, nothing else to install
    with torch.no_grad():
        for idx in inputs:
            (logits,) = session.run(None, {"idx": idx.numpy()})
            torch.testing.assert_close(torch.from_numpy(logits), loaded.model(idx), rtol=1e-5, atol=1e-5)
    assert json.loads(sidecar(out).read_text())["format"] == "onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.onnx.json"]


def test_bad_format_prints_one_line_and_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "exports" / "model.pt2"
    result = run_cli("-m", "minigpt", "export", f"ckpt={tiny_run['last_ckpt']}", "format=tflite", f"out={out}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: format='tflite' is unknown; choose one of exported, onnx"
    assert list(tmp_path.iterdir()) == []


def test_torchscript_is_refused_with_the_reason():
    assert check_format("onnx") == "onnx"
    with pytest.raises(ConfigError, match="torch.jit is deprecated"):
        check_format("torchscript")


def test_lstm_checkpoints_are_refused_before_anything_is_written(tmp_path):
    lstm = build_model({"arch": "lstm", "vocab_size": 5, "block_size": 8, "n_layer": 1, "n_embd": 8})
    loaded = LoadedModel(model=lstm, tokenizer=None, path=tmp_path / "lstm.ckpt", meta={})
    with pytest.raises(ConfigError, match="export takes GPT checkpoints; this one is model.arch=lstm"):
        export(loaded, "exported", tmp_path / "lstm.pt2")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(MinigptError, match=r'needs the package\(s\) onnxscript: pip install -e "\.\[export\]"'):
        require_onnx()


def test_out_that_is_the_checkpoint_is_refused_even_with_force(tiny_run, tmp_path):
    ckpt = tmp_path / "best.ckpt"
    shutil.copy(tiny_run["last_ckpt"], ckpt)
    before = ckpt.read_bytes()
    result = run_cli("-m", "minigpt", "export", f"ckpt={ckpt}", f"out={ckpt}", "force=true")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: out={ckpt} would overwrite the checkpoint {ckpt}; pass out= another file, such as "
        f"{tmp_path / 'best.pt2'}"
    )
    assert ckpt.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


def test_an_existing_export_is_kept_unless_force(tiny_run, tmp_path):
    out = tmp_path / "tiny.pt2"
    out.write_text("an earlier export")
    with pytest.raises(ConfigError, match=re.escape(f"{out} already exists; pass force=true to overwrite")):
        export_with_config(tiny_run["last_ckpt"], "exported", out)
    assert out.read_text() == "an earlier export" and not sidecar(out).exists()
    export_with_config(tiny_run["last_ckpt"], "exported", out, "force=true")
    assert torch.export.load(out) is not None and json.loads(sidecar(out).read_text())["file"] == "tiny.pt2"
    with pytest.raises(ConfigError, match="force must be true or false"):
        export_with_config(tiny_run["last_ckpt"], "exported", out, "force=yes")


@pytest.mark.parametrize(
    ("fmt", "name", "message"),
    [
        (
            "onnx",
            "m.pt2",
            "ends in .pt2, the suffix of format=exported, but format=onnx writes a .onnx file; "
            "pass out={dir}/m.onnx, or format=exported",
        ),
        (
            "exported",
            "m.onnx",
            "ends in .onnx, the suffix of format=onnx, but format=exported writes a .pt2 file; "
            "pass out={dir}/m.pt2, or format=onnx",
        ),
        ("exported", "m.bin", "must end in .pt2 for format=exported; pass out={dir}/m.bin.pt2"),
    ],
)
def test_an_out_suffix_that_contradicts_the_format_is_refused(tiny_run, tmp_path, fmt, name, message):
    with pytest.raises(ConfigError, match=re.escape(message.format(dir=tmp_path))):
        export_with_config(tiny_run["last_ckpt"], fmt, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_is_one_line_before_the_export(tiny_run, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder is expected")
    result = run_cli("-m", "minigpt", "export", f"ckpt={tiny_run['last_ckpt']}", f"out={blocker / 'm.pt2'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: out={blocker / 'm.pt2'} cannot be written: {blocker} is a file, not a folder; pass another out"
    )


def test_a_failed_write_keeps_the_earlier_export_and_leaves_no_partial_file(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "tiny.pt2"
    out.write_text("an earlier export")

    def disk_full(program, path):
        path.write_bytes(b"half an export")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setitem(SAVERS, "exported", disk_full)  # a full disk is not cheap to make for real
    with pytest.raises(MinigptError, match=re.escape(f"cannot write out={out} (No space left on device)")):
        export_with_config(tiny_run["last_ckpt"], "exported", out, "force=true")
    assert out.read_text() == "an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt2"]


@pytest.mark.slow  # torch.export of the levers' model: about a minute on 2 busy cores
@pytest.mark.parametrize("fmt", ["exported", "onnx"])
def test_a_model_with_every_lever_exports_to_its_eager_logits(fmt, tmp_path):
    """tests/fixtures/every_lever.ckpt (short convolutions, value embeddings, U-net skips,
    soft-capped logits, ReLU², rope): both formats compute what the eager LeverGPT computes."""
    ckpt = ROOT / "tests" / "fixtures" / "every_lever.ckpt"
    loaded = load_model(ckpt)
    out = tmp_path / f"levers{'.pt2' if fmt == 'exported' else '.onnx'}"
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
        onnx = pytest.importorskip("onnx")
        from onnx.reference import ReferenceEvaluator

        export_with_config(ckpt, fmt, out)
        session = ReferenceEvaluator(onnx.load(out))
        program = lambda idx: torch.from_numpy(session.run(None, {"idx": idx.numpy()})[0])  # noqa: E731
    else:
        export_with_config(ckpt, fmt, out)
        program = torch.export.load(out).module()
    idx = torch.randint(loaded.model.config.vocab_size, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(program(idx), loaded.model(idx), rtol=1e-5, atol=1e-5)
