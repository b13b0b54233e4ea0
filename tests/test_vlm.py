"""The baby vision-language model: patches round-trip to the image, image tokens do not break the
causal text model (nor change the text-only GPT), the KV cache agrees with recompute, a tiny VLM
learns captions, a run of train.py task=caption logs and checkpoints what it should, and bad input
is one clear line."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, compose_train, run_cli
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.checkpoint.format import VLMMeta
from minigpt.data.digits import (
    CAPTION_PROMPT,
    IGNORE,
    PLUS_PROMPT,
    DigitsDataModule,
    answer,
    caption_of,
    expand,
    layout,
    load_images,
    make_tokenizer,
    sum_of,
)
from minigpt.errors import CheckpointError, ConfigError, DataError
from minigpt.figures import metric_name, tensorboard_tag
from minigpt.inference.caption import load_vlm, read_image
from minigpt.inference.caption import run as caption_tool
from minigpt.model import GPT, POS_ENCODINGS, GPTConfig
from minigpt.training.run import train
from minigpt.training.vlm import LitVLM, answers_right
from minigpt.vlm import IMAGE, VLM, PatchEmbedding, VisionConfig, greedy_answer, image_attention, patchify, unpatchify

TOKENIZER = make_tokenizer()
SLOT = TOKENIZER.encode(IMAGE)[0]


def tiny_vlm(patch_size: int = 4, **overrides) -> VLM:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=16, **overrides)
    return VLM(cfg, VisionConfig(image_size=8, patch_size=patch_size), SLOT).eval()


# --------------------------------------------------------------------------- patches


@pytest.mark.parametrize(("patch_size", "channels"), [(1, 1), (2, 1), (4, 3), (8, 1)])
def test_patches_round_trip_to_the_image(patch_size, channels):
    images = torch.randn(3, 2, channels, 8, 8)  # (B, M, c, H, W)
    patches = patchify(images, patch_size)
    N = (8 // patch_size) ** 2
    assert patches.shape == (3, 2, N, channels * patch_size**2)
    assert torch.equal(unpatchify(patches, patch_size, channels), images)


def test_patches_are_squares_in_reading_order():
    image = torch.arange(64.0).view(1, 1, 8, 8)
    patches = patchify(image, 2)  # (1, 16, 4)
    assert patches[0, 0].tolist() == [0, 1, 8, 9]  # the top-left square, row by row
    assert patches[0, 1].tolist() == [2, 3, 10, 11]  # the one to its right
    assert patches[0, 4].tolist() == [16, 17, 24, 25]  # the first of the second row of squares


def test_patch_embedding_projects_each_patch_and_adds_its_place():
    vision = VisionConfig(image_size=8, patch_size=2)
    embed = PatchEmbedding(vision, n_embd=16)
    images = torch.rand(5, 2, 1, 8, 8)
    out = embed(images)
    assert out.shape == (5, 2, 16, 16)  # (B, M, N, C)
    by_hand = patchify(images, 2) @ embed.proj.weight.T + embed.proj.bias + embed.wpe.weight
    torch.testing.assert_close(out, by_hand)
    blank = embed(torch.zeros(1, 1, 1, 8, 8))[0, 0]  # no ink: only the bias and each patch's place differ
    assert not torch.allclose(blank[0], blank[1])


def test_an_image_size_the_patch_does_not_divide_is_one_line():
    with pytest.raises(ConfigError, match=r"^patch_size=3 does not divide the 8x8 images; choose one of 1, 2, 4, 8$"):
        VisionConfig(image_size=8, patch_size=3)
    with pytest.raises(ConfigError, match="vision.channels must be an integer >= 1"):
        VisionConfig(channels=0)


# --------------------------------------------------------------------------- the model


def caption_batch(model: VLM, n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.tensor(expand(CAPTION_PROMPT + "a handwritten seven.", TOKENIZER, model.vision_config.n_patches))
    return idx[None].repeat(n, 1), torch.rand(n, 1, 1, 8, 8, generator=g)


@pytest.mark.parametrize("attn_impl", ["manual", "sdpa"])
def test_text_sees_the_image_before_it_but_never_later_text(attn_impl):
    model = tiny_vlm(attn_impl=attn_impl)
    idx, images = caption_batch(model)
    N = model.vision_config.n_patches
    logits = model(idx, images=images)
    later = idx.clone()
    later[:, N + 6] = TOKENIZER.encode("z")[0]  # change one caption character
    changed = model(later, images=images)
    torch.testing.assert_close(changed[:, : N + 6], logits[:, : N + 6])  # nothing before it moves
    assert not torch.allclose(changed[:, N + 6], logits[:, N + 6])
    other = model(idx, images=torch.rand_like(images))
    assert (other[:, N:] - logits[:, N:]).abs().amax(-1).min() > 0  # every text position reads the image


def test_a_second_image_is_invisible_before_its_place():
    model = tiny_vlm()
    idx = torch.tensor(expand(PLUS_PROMPT + "eleven.", TOKENIZER, model.vision_config.n_patches))[None]
    images = torch.rand(1, 2, 1, 8, 8)
    second = (idx[0] == SLOT).nonzero()[model.vision_config.n_patches].item()  # its first slot
    logits = model(idx, images=images)
    swapped = model(idx, images=torch.stack([images[:, 0], torch.rand(1, 1, 8, 8)], 1))
    torch.testing.assert_close(swapped[:, :second], logits[:, :second])
    assert not torch.allclose(swapped[:, second:], logits[:, second:])


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_without_images_the_vlm_is_the_text_gpt(pos_encoding):
    """The same weights give the same logits: the VLM adds the patch embedding and nothing else."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    cfg.pos_encoding = pos_encoding
    gpt = GPT(cfg).eval()
    vlm = VLM(cfg, VisionConfig(), SLOT).eval()
    missing, unexpected = vlm.load_state_dict(gpt.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("vision.") for name in missing)
    idx = torch.tensor([TOKENIZER.encode("a handwritten seven. one")])
    torch.testing.assert_close(vlm(idx), gpt(idx), rtol=0, atol=0)
    torch.testing.assert_close(vlm.forward_with_attention(idx)[0], gpt.forward_with_attention(idx)[0], rtol=0, atol=0)
    assert set(gpt.state_dict()) == {k for k in vlm.state_dict() if not k.startswith("vision.")}


def test_kv_cache_with_an_image_prefix_equals_recompute():
    model = tiny_vlm(patch_size=2, pos_encoding="rope")
    idx = torch.tensor(expand(PLUS_PROMPT, TOKENIZER, 16))[None].repeat(3, 1)
    images = torch.rand(3, 2, 1, 8, 8)
    cached = greedy_answer(model, idx, images, max_new_tokens=6)
    seq = idx
    for _ in range(6):  # the same decoding, recomputing the whole sequence at every step
        logits = model(seq, images=images)[:, -1]
        logits[:, SLOT] = float("-inf")  # the image mark is never generated
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, seq[:, idx.size(1) :])
    cache = model.new_cache()
    model(idx, cache=cache, images=images)
    step = model(seq[:, idx.size(1) : idx.size(1) + 1], cache=cache)
    torch.testing.assert_close(step[:, -1], model(seq[:, : idx.size(1) + 1], images=images)[:, -1])


def test_image_slots_that_do_not_make_whole_images_are_refused():
    model = tiny_vlm()
    idx = torch.tensor([[SLOT] * 3 + TOKENIZER.encode("a")])  # 3 slots, an image takes 4
    with pytest.raises(ValueError, match="do not make whole images of 4 patches"):
        model(idx, images=torch.rand(1, 1, 1, 8, 8))


def test_a_tiny_vlm_overfits_ten_digits_to_perfect_captions():
    """One image of each digit, caption loss only: within a few hundred Adam steps every greedy
    caption is exactly right (at chance, one caption in ten would be)."""
    images, labels = load_images()
    first = torch.stack([(labels == d).nonzero()[0, 0] for d in range(10)])
    pics = images[first][:, None]  # (10, 1, 1, 8, 8)
    model = tiny_vlm().train()
    N = model.vision_config.n_patches
    rows = [layout(CAPTION_PROMPT, caption_of(d), TOKENIZER, N, N + 20) for d in range(10)]
    idx, targets = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(600):
        logits = model(idx, images=pics)
        if step % 50 == 0 and answers_right(logits, targets).all():
            break
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert answers_right(model(idx, images=pics), targets).all()
    assert answer(model, TOKENIZER, CAPTION_PROMPT, pics) == [caption_of(d) for d in range(10)]


def test_attention_over_the_image_is_a_share_of_each_row():
    model = tiny_vlm()
    idx, images = caption_batch(model, n=1)
    maps = image_attention(model, idx[0], images[0], query=idx.size(1) - 1)
    assert maps.shape == (2, 1, 4)  # (n_layer, images, patches)
    assert ((maps > 0) & (maps.sum(-1, keepdim=True) < 1)).all()  # the rest is on the text


# --------------------------------------------------------------------------- the data


def test_digits_split_and_questions():
    dm = DigitsDataModule(block_size=64, patch_size=4)
    dm.setup()
    assert len(dm.train_labels) + len(dm.val_labels) == 1797 and len(dm.val_labels) == 359
    idx, targets, images, task = dm.val_set
    assert task[:4].tolist() == [0, 1, 0, 1]  # captions and sums alternate, so every batch has both
    row = 1  # the plus question about validation images 0 and partner[0]
    a, b = dm.val_labels[0].item(), dm.val_labels[dm.val_partner[0]].item()
    answer_ids = targets[row][targets[row] != IGNORE]
    assert TOKENIZER.decode(answer_ids.tolist()) == sum_of(a, b)
    assert torch.equal(images[row, 1], dm.val_images[dm.val_partner[0]])
    batch = next(iter(dm.train_dataloader()))
    assert [t.shape[0] for t in batch] == [128] * 4 and batch[2].shape[1:] == (2, 1, 8, 8)
    again = DigitsDataModule(block_size=64, patch_size=4)
    again.setup()
    assert torch.equal(again.val_images, dm.val_images)  # the split depends on split_seed only


def test_bad_data_options_are_one_line():
    with pytest.raises(ConfigError, match=r"model.block_size=32 is shorter than the longest question \(51 positions"):
        DigitsDataModule(block_size=32, patch_size=2)
    with pytest.raises(ConfigError, match="data=digits holds the questions of the vision-language model"):
        DigitsDataModule(block_size=64, patch_size=None)
    with pytest.raises(ConfigError, match=r"data.plus_fraction must be a number in \(0, 1\)"):
        DigitsDataModule(block_size=64, plus_fraction=1.5)


# --------------------------------------------------------------------------- a run of train.py task=caption

STEPS = 24


def vlm_overrides(run_dir: Path, *extra: str) -> list[str]:
    return [
        "task=caption",
        "task.patch_size=4",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.block_size=32",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"run_dir={run_dir}",
        *extra,
    ]


@pytest.fixture(scope="module")
def vlm_run(tmp_path_factory) -> dict:
    """A short real run of train.py task=caption at tiny sizes (best.ckpt: the lowest val loss)."""
    run_dir = tmp_path_factory.mktemp("vlm_run")
    cfg = compose_train(
        *vlm_overrides(run_dir, "task.monitor=val/loss", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=12"),
        "callbacks.captions.n_images=4",
        "callbacks.captions.n_attention=2",
    )
    return train(cfg)


def read_events(run_dir: Path) -> EventAccumulator:
    (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_a_run_logs_both_accuracies_and_pictures(vlm_run):
    events = read_events(Path(vlm_run["run_dir"]))
    scalars = {metric_name(tag) for tag in events.Tags()["scalars"]}
    assert {"train/loss", "val/loss", "val/caption_acc", "val/plus_acc", "val/acc", "hp/best_val_acc"} <= scalars
    assert [e.step for e in events.Scalars(tensorboard_tag("val/caption_acc"))] == [12, 24]
    images = set(events.Tags()["images"])
    assert {"view/captions", "view/image_attention/caption", "view/image_attention/plus"} <= images
    assert vlm_run["steps"] == STEPS and "best_val_bpc" not in vlm_run


def test_the_checkpoint_round_trips(vlm_run):
    """best.ckpt rebuilds the model alone, which scores the validation loss the run logged for it."""
    loaded = load_vlm(vlm_run["best_ckpt"])
    assert loaded.meta.vlm == VLMMeta(vision=VisionConfig(8, 4, 1), best_val_acc=loaded.meta.vlm.best_val_acc)
    dm = DigitsDataModule(block_size=32, patch_size=4)
    dm.setup()
    idx, targets, images, _ = dm.val_set
    with torch.no_grad():
        logits = loaded.model(idx, images=images)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    assert float(loss) == pytest.approx(vlm_run["best_val_loss"], rel=1e-4)


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # a new run folder for the continued run
def test_a_run_resumes_from_its_checkpoint_but_not_with_other_patches(vlm_run, tmp_path):
    last = Path(vlm_run["run_dir"]) / "checkpoints" / "last.ckpt"
    quiet = "~callbacks.captions"
    same = (f"ckpt_path={last}", "task.monitor=val/loss", quiet)  # as the run it continues
    more = vlm_overrides(tmp_path / "more", f"trainer.max_steps={STEPS + 4}", *same)
    resumed = train(compose_train(*more))
    assert resumed["steps"] == STEPS + 4
    other = compose_train(*vlm_overrides(tmp_path / "other", f"ckpt_path={last}", "task.patch_size=8", *same[1:]))
    with pytest.raises(CheckpointError, match=r"patch_size=8.*resume with the same task.patch_size"):
        train(other)


def test_the_caption_tool_measures_and_draws(vlm_run, tmp_path, capsys):
    options = {"ckpt": vlm_run["best_ckpt"], "out_dir": str(tmp_path / "eval"), "n_examples": 2}
    scores = caption_tool(OmegaConf.create(options))
    out = capsys.readouterr().out
    assert f"caption accuracy {scores['caption']:.3f} on 359 validation images (chance 0.1)" in out
    names = {"vlm_captions.png", "vlm_attention_caption.png", "vlm_attention_plus.png"}
    assert {p.name for p in (tmp_path / "eval").iterdir()} == names
    picture = tmp_path / "seven.png"
    images, labels = load_images()
    pixels = (255 * (1 - images[(labels == 7).nonzero()[0, 0], 0])).to(torch.uint8).numpy()  # dark ink on white
    from PIL import Image

    Image.fromarray(pixels).resize((64, 64), Image.Resampling.NEAREST).save(picture)
    torch.testing.assert_close(read_image(picture, 8)[0], images[(labels == 7).nonzero()[0, 0], 0], atol=0.01, rtol=0)
    caption_tool(OmegaConf.create({"ckpt": vlm_run["best_ckpt"], "image": str(picture)}))
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_bad_images_and_checkpoints_are_one_line(vlm_run, tmp_path):
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("not a picture")
    with pytest.raises(DataError, match=r"cannot be read as a picture .*; pass a PNG file$"):
        read_image(not_a_picture, 8)
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "missing.png", 8)
    ckpt = torch.load(vlm_run["best_ckpt"], weights_only=True)
    ckpt["minigpt"]["vision"]["patch_size"] = 3
    torch.save(ckpt, tmp_path / "bad_vision.ckpt")
    with pytest.raises(CheckpointError, match=r"field minigpt.vision is not a valid vision config \(patch_size=3"):
        load_vlm(tmp_path / "bad_vision.ckpt")
    ckpt["minigpt"]["vision"]["patch_size"] = 2  # valid, but not the patches the weights were trained on
    torch.save(ckpt, tmp_path / "other_vision.ckpt")
    with pytest.raises(CheckpointError, match="field minigpt.vision does not match the weights"):
        load_vlm(tmp_path / "other_vision.ckpt")
    for key in ("task", "vision", "best_val_acc"):
        del ckpt["minigpt"][key]
    torch.save(ckpt, tmp_path / "text_only.ckpt")
    with pytest.raises(CheckpointError, match=r"is not a vision-language model"):
        load_vlm(tmp_path / "text_only.ckpt")


def test_a_vlm_is_not_built_from_an_lstm_or_without_the_image_mark():
    with pytest.raises(ConfigError, match="task=caption reads images with a GPT"):
        LitVLM(model={"arch": "lstm"}, vocab=TOKENIZER.serialize(), vision={}, optim={})
    with pytest.raises(ConfigError, match="has no image mark"):
        LitVLM(model={"n_layer": 1, "n_embd": 16, "n_head": 2}, vocab=list("abc"), vision={}, optim={})


def test_a_patch_that_does_not_divide_the_image_is_refused_before_training(tmp_path):
    cfg = compose_train("task=caption", "task.patch_size=3", f"run_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"^task.patch_size must be one of 1, 2, 4, 8, got 3$"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_the_default_run_learns_both_tasks_and_the_tools_say_so_in_one_line(tmp_path):
    """python train.py task=caption as documented (about a minute on 2 cores): captions of held-out
    digits at >= 0.95 and sums far above chance (0.1); then the caption tool, and one line with exit
    code 2 for a bad patch size and for a file that is not a picture."""
    bad = run_cli(str(ROOT / "train.py"), "task=caption", "task.patch_size=3", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2
    assert bad.stderr == "error: task.patch_size must be one of 1, 2, 4, 8, got 3\n"
    run = tmp_path / "run"
    quiet = "trainer.enable_progress_bar=false"
    result = run_cli(str(ROOT / "train.py"), "task=caption", quiet, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    best = run / "checkpoints" / "best.ckpt"
    result = run_cli("-m", "minigpt", "caption", f"ckpt={best}", f"out_dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    caption, plus = (float(line.split()[2]) for line in result.stdout.splitlines()[:2])
    assert caption >= 0.95 and plus >= 0.5
    not_a_picture = tmp_path / "digit.png"
    not_a_picture.write_bytes(b"GIF89a, or so it says")
    result = run_cli("-m", "minigpt", "caption", f"ckpt={best}", f"image={not_a_picture}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: image {not_a_picture} cannot be read as a picture")
