"""The TensorBoard callbacks, in a short real training run of the tiny model: every dashboard
writes its tags into the run's single events file, read back with TensorBoard's own reader."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import train_cfg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

CLIP = 1e-3  # a clip far below the real gradient norm: grad_norm/* must be measured before it
EVERY = 5


def events_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def callback_run(small_corpus, tmp_path_factory) -> dict:
    from minigpt.training.run import train

    run_dir = tmp_path_factory.mktemp("callback_run")
    cfg = train_cfg(
        run_dir,
        small_corpus,
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "data.val_windows=4",
        f"trainer.gradient_clip_val={CLIP}",
        f"callbacks.optimization.every_n_steps={EVERY}",
        "callbacks.samples.every_n_val=1",
        "callbacks.samples.max_new_tokens=10",
        "callbacks.attention.every_n_val=1",
        "callbacks.projector.every_n_val=1",
        "sample.max_new_tokens=30",
    )
    summary = train(cfg)
    files = events_files(run_dir)
    acc = EventAccumulator(str(files[0]), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    vocab = len(set(small_corpus.read_text()))
    return {"summary": summary, "run_dir": run_dir, "files": files, "acc": acc, "vocab": vocab}


def texts(acc: EventAccumulator, tag: str) -> dict[int, str]:
    return {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(f"{tag}/text_summary")}


def test_everything_lands_in_one_events_file_with_the_final_sample(callback_run):
    assert len(callback_run["files"]) == 1, callback_run["files"]
    final = texts(callback_run["acc"], "sample/final")
    sample = (callback_run["run_dir"] / "sample.txt").read_text()
    assert len(sample) == 31  # "\n" prompt + 30 characters
    assert list(final) == [20]
    assert final[20].replace("\n    ", "\n").removeprefix("    ") == sample
    assert callback_run["summary"]["sample"] == sample


def test_optimization_stats_per_layer_group_before_clipping(callback_run):
    acc = callback_run["acc"]
    scalars = acc.Tags()["scalars"]
    groups = ("embedding", "layer0", "layer1", "final_norm", "total")
    for kind in ("weights/grad_norm", "weights/weight_norm", "weights/update_ratio"):
        for group in groups:
            assert f"{kind}/{group}" in scalars, f"{kind}/{group}"
    grad = {e.step: e.value for e in acc.Scalars("weights/grad_norm/total")}
    assert sorted(grad) == [0, 5, 10, 15]
    assert all(v > 10 * CLIP for v in grad.values())  # after clipping it would be <= CLIP
    # the total is the norm of the group norms
    for step, total in grad.items():
        parts = [acc.Scalars(f"weights/grad_norm/{g}") for g in groups[:-1]]
        by_step = [next(e.value for e in p if e.step == step) for p in parts]
        assert total == pytest.approx(math.sqrt(sum(v * v for v in by_step)), rel=1e-4)
    ratios = [e.value for e in acc.Scalars("weights/update_ratio/layer0")]
    assert len(ratios) == 4 and all(0 < r < 0.1 for r in ratios)


def test_text_samples_at_each_temperature(callback_run):
    acc = callback_run["acc"]
    for t in (0.5, 0.8, 1.0):
        samples = texts(acc, f"samples/temperature_{t}")
        assert sorted(samples) == [10, 20]  # every validation
        assert all(len(s.replace("\n    ", "\n").removeprefix("    ")) == 11 for s in samples.values())


def test_attention_heatmaps_per_layer_and_averaged(callback_run):
    acc = callback_run["acc"]
    for tag in ("view/attention/layer0", "view/attention/layer1", "view/attention/mean"):
        images = acc.Images(tag)
        assert [i.step for i in images] == [10, 20], tag
        assert images[0].width > 400 and images[0].height > 150
        assert images[0].encoded_image_string.startswith(b"\x89PNG")


def test_logit_and_entropy_histograms(callback_run):
    acc = callback_run["acc"]
    assert {"view/logits/values", "view/logits/entropy"} <= set(acc.Tags()["histograms"])
    entropy = acc.Histograms("view/logits/entropy")[-1].histogram_value
    assert entropy.num == 8 * 32  # 8 windows of block_size 32
    assert 0 < entropy.min <= entropy.max <= math.log(callback_run["vocab"]) + 1e-4
    assert acc.Histograms("view/logits/values")[-1].histogram_value.num == 8 * 32 * callback_run["vocab"]


def test_character_embeddings_in_the_projector(callback_run):
    tb = callback_run["run_dir"] / "tensorboard"
    assert "char_embedding" in (tb / "projector_config.pbtxt").read_text()
    folders = sorted(p.parent for p in tb.rglob("tensors.tsv"))
    assert len(folders) == 2  # one per validation
    rows = (folders[-1] / "tensors.tsv").read_text().splitlines()
    labels = (folders[-1] / "metadata.tsv").read_text().splitlines()
    assert len(rows) == len(labels) == callback_run["vocab"] and len(rows[0].split("\t")) == 16
    assert "\\n" in labels and "·" in labels and "A" in labels


def test_callbacks_none_records_no_dashboards_but_keeps_the_sample(small_corpus, tmp_path):
    from minigpt.training.run import train

    cfg = train_cfg(
        tmp_path,
        small_corpus,
        "callbacks=none",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "data.val_windows=2",
        "sample.max_new_tokens=10",
    )
    train(cfg)
    assert len((tmp_path / "sample.txt").read_text()) == 11
    acc = EventAccumulator(str(events_files(tmp_path)[0]))
    acc.Reload()
    assert not any(t.startswith(("weights/", "view/")) for t in acc.Tags()["scalars"])
    assert acc.Tags()["images"] == [] and acc.Tags()["histograms"] == []


def test_hparams_lists_the_swept_keys_first():
    """TensorBoard orders HPARAMS columns by `differs`, then by name, and ticks the first ones."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.plugins.hparams.backend_context import _sort_and_reduce_to_hparams_limit
    from torch.utils.tensorboard.summary import hparams

    from minigpt.training.callbacks import swept_first

    experiment, _, _ = hparams({"data.batch_ramp_start": 16, "model.n_layer": 2, "optim.lr": 1e-3}, {"eval/loss": 0})
    content = swept_first(experiment, ["optim.lr"]).value[0].metadata.plugin_data.content
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    _sort_and_reduce_to_hparams_limit(data.experiment)
    assert [i.name for i in data.experiment.hparam_infos] == ["optim.lr", "data.batch_ramp_start", "model.n_layer"]


def test_custom_scalars_draw_one_layer_per_chart():
    import re

    from minigpt.probes import HEAD_SCORES
    from minigpt.training.callbacks import head_layout

    layout = head_layout(n_layer=2)
    tags = [f"view/heads/induction/L{layer}H{head}" for layer in range(2) for head in range(4)]
    charts = layout["heads: induction"]
    assert list(charts) == ["layer 0", "layer 1"]
    for layer, (_, [regex]) in enumerate(charts.values()):
        assert [t for t in tags if re.fullmatch(regex, t)] == [f"view/heads/induction/L{layer}H{h}" for h in range(4)]
    assert len(layout) == len(HEAD_SCORES) + 2  # the induction story, a section per score, the logit lens


def test_validation_log_throughput_leaves_out_the_first_step():
    """The first step pays the start-up (threads, memory): counting it made a short run's tokens/s
    look many times lower than its steps ran at."""
    from types import SimpleNamespace

    import torch

    from minigpt.training.progress import ValidationLog

    callback, trainer = ValidationLog(), SimpleNamespace(world_size=1)
    callback.on_train_start(trainer, None)
    batch = (torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, 8, dtype=torch.long))
    for i in range(3):
        callback.on_train_batch_start(trainer, None, batch, i)
        callback.on_train_batch_end(trainer, None, None, batch, i)
    assert callback.tokens == 2 * 32  # steps 2 and 3 only
