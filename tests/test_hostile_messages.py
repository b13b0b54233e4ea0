"""Messages name the real cause: a pickle inside a GPT-2 folder's pytorch_model.bin, a
checkpoint of one task given to another task's tool, files of a GPT-2 folder that are pipes,
devices or links leading outside it (never opened: a FIFO must not hang). Overflowing weights
given to init_from or resume: tests/test_hostile_weights.py and test_hostile_resume.py; a NaN
learning rate in a resumed optimizer state: test_hostile_resume.py. Each test builds the crafted
input itself."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import compose_train
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from test_hostile_weights import TINY, write_checkpoint, write_gpt2_folder

from minigpt.checkpoint.format import ClassifierMeta, VLMMeta, read_checkpoint
from minigpt.checkpoint.gpt2 import load_gpt2
from minigpt.checkpoint.load import load_model
from minigpt.errors import CheckpointError
from minigpt.inference import export
from minigpt.training.run import train
from minigpt.vlm import VisionConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_a_pickle_in_pytorch_model_bin_is_one_complete_line(tmp_path):
    folder = write_gpt2_folder(tmp_path / "gpt2")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "model.safetensors").unlink()
    torch.save({"x": Payload()}, folder / "pytorch_model.bin", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError) as e:
        load_gpt2(folder)
    message = str(e.value)
    assert "\n" not in message and not marker.exists()
    assert message.startswith(f"{folder / 'pytorch_model.bin'} refers to code or objects that are not plain data (")
    assert message.endswith("it was refused because loading it could run code; re-save the model as model.safetensors")


# --------------------------------------------------------------------------- one task's checkpoint, another's tool


def task_checkpoint(path: Path, task: str) -> Path:
    """A checkpoint of a tiny model whose metadata says it was trained with task=`task`."""
    write_checkpoint(path)
    ckpt = read_checkpoint(path)
    if task == "classify":
        ckpt["minigpt"].update(ClassifierMeta(labels=["name", "verse"], pooling="last").to_dict())
        ckpt["state_dict"].update({"head.weight": torch.zeros(2, TINY["n_embd"]), "head.bias": torch.zeros(2)})
    else:
        ckpt["minigpt"].update(VLMMeta(vision=VisionConfig()).to_dict())
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("task, tool", [("classify", "classify"), ("caption", "caption")])
def test_a_classifier_or_caption_checkpoint_names_its_tool(task, tool, tmp_path):
    """generate, interpret, diagnose and export all load through load_model."""
    path = task_checkpoint(tmp_path / f"{task}.ckpt", task)
    kind = "classifier" if task == "classify" else "caption"
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(e.value) == (
        f"checkpoint {path} is a {kind} checkpoint (train.py task={task}), not a language model's: "
        f"use `python -m minigpt {tool} ckpt={path}`"
    )


def test_export_refuses_a_classifier_instead_of_exporting_its_language_model(tmp_path):
    path = task_checkpoint(tmp_path / "classifier.ckpt", "classify")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("export", overrides=[f"ckpt={path}", f"out={tmp_path / 'model.pt2'}"])
    with pytest.raises(CheckpointError, match=r"is a classifier checkpoint .*python -m minigpt classify"):
        export.run(cfg)
    assert not (tmp_path / "model.pt2").exists()


def test_resuming_a_caption_checkpoint_as_a_language_model_names_the_task(small_corpus, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    shutil.copy(task_checkpoint(tmp_path / "caption.ckpt", "caption"), last)
    ckpt = read_checkpoint(last)
    ckpt.update(optimizer_states=[], lr_schedulers=[], loops={}, global_step=0)
    torch.save(ckpt, last)
    cfg = compose_train("model=tiny", f"data.path={small_corpus}", "resume=auto")
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    with pytest.raises(CheckpointError) as e:
        train(cfg)
    assert f"checkpoint {last} was trained with task=caption, this run has task=lm; resume it with task=caption" in str(
        e.value
    )


# --------------------------------------------------------------------------- files of a GPT-2 folder


def test_a_gpt2_folder_whose_weights_are_a_fifo_says_so_without_opening_it(tmp_path):
    folder = write_gpt2_folder(tmp_path / "gpt2")
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")  # opening it would wait for a writer forever
    with pytest.raises(CheckpointError, match=r"model.safetensors is a pipe \(a FIFO.*; it was not read"):
        load_gpt2(folder)


def test_a_gpt2_folder_whose_config_is_a_fifo_says_so(tmp_path):
    folder = write_gpt2_folder(tmp_path / "gpt2")
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    with pytest.raises(CheckpointError, match=r"config.json is a pipe \(a FIFO"):
        load_model(folder)


def test_a_gpt2_folder_file_linked_to_a_device_says_so(tmp_path):
    folder = write_gpt2_folder(tmp_path / "gpt2")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="tokenizer.json is a link to /dev/zero, outside the folder"):
        load_gpt2(folder)


def test_a_gpt2_folder_file_linked_outside_the_folder_is_not_read(tmp_path):
    folder = write_gpt2_folder(tmp_path / "gpt2")
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(folder / "model.safetensors", outside)
    (folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError) as e:
        load_gpt2(folder)
    assert f"model.safetensors is a link to {outside}, outside the folder; it was not read" in str(e.value)
    assert "no model.safetensors" not in str(e.value)


def test_a_hugging_face_cache_snapshot_links_into_its_blobs(tmp_path):
    """The hub's cache keeps each file once in blobs/ and links to it from snapshots/<revision>/."""
    repo = tmp_path / "models--gpt2"
    snapshot = write_gpt2_folder(tmp_path / "gpt2")
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots").mkdir()
    snapshot = shutil.move(snapshot, repo / "snapshots" / "abc123")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.move(Path(snapshot) / name, repo / "blobs" / f"hash-{name}")
        (Path(snapshot) / name).symlink_to(Path("..", "..", "blobs", f"hash-{name}"))
    assert load_gpt2(snapshot).model.config.n_layer == 1
