"""What each head does: head scores on hand-built attention patterns, ablation through hooks
(nothing removed = the same logits, bit for bit), the logit lens, the MLP probes, the explorer's
data, the training callback and the interpret command with its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF, run_cli, train_cfg
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.analysis.ablation import Part, ablated, ablation_table, every_part, mean_loss, output_means, parse_head
from minigpt.analysis.explorer import attention_band, explorer_page, head_records
from minigpt.analysis.interpret import run
from minigpt.errors import ConfigError, VocabularyError
from minigpt.model import GPT, GPTConfig
from minigpt.probes import (
    HEAD_SCORES,
    attention_maps,
    dead_fraction,
    head_scores,
    induction_scores,
    lens_logits,
    lens_losses,
    lens_predictions,
    mlp_activations,
    pattern_scores,
    repeated_random_ids,
    residual_states,
    text_windows,
)

# --------------------------------------------------------------------------- hand-built patterns


def previous_token_pattern(B: int, T: int) -> torch.Tensor:
    """(B, 1, T, T): every query looks only at the position before it (the first at itself)."""
    w = torch.zeros(B, 1, T, T)
    w[:, :, 0, 0] = 1.0
    w[:, :, torch.arange(1, T), torch.arange(T - 1)] = 1.0
    return w


def induction_pattern(B: int, P: int) -> torch.Tensor:
    """(B, 1, 2P, 2P): a previous-token head in the first copy; in the second, each query looks
    at the token after the earlier occurrence of its own token."""
    w = previous_token_pattern(B, 2 * P)
    q = torch.arange(P, 2 * P)
    w[:, :, q] = 0.0
    w[:, :, q, q - P + 1] = 1.0
    return w


def test_a_pure_previous_token_head_scores_one_on_previous_and_zero_elsewhere():
    T = 24
    newline = torch.zeros(3, T, dtype=torch.bool)
    newline[:, [3, 10, 11, 17]] = True  # newlines everywhere, also right before other newlines
    space = torch.zeros(3, T, dtype=torch.bool)
    space[:, 5::3] = True
    scores = pattern_scores(previous_token_pattern(3, T), {"newline": newline, "space": space})
    assert scores["previous"].item() == 1.0
    assert scores["current"].item() == scores["first"].item() == 0.0
    assert scores["newline"].item() == scores["space"].item() == 0.0
    assert scores["distance"].item() == 1.0
    assert induction_scores(previous_token_pattern(3, T), T // 2).item() == 0.0


def test_an_induction_pattern_scores_high_on_induction_and_other_heads_do_not():
    P = 12
    assert induction_scores(induction_pattern(2, P), P).item() == 1.0
    uniform = torch.ones(2 * P, 2 * P).tril()
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None]
    assert induction_scores(uniform, P).item() < 0.1  # looking everywhere: 1 / (q + 1) on the right key
    current = torch.eye(2 * P)[None, None]
    assert induction_scores(current, P).item() == 0.0


def test_newline_space_first_and_current_heads_score_on_their_own_column():
    T = 16
    newline = torch.zeros(1, T, dtype=torch.bool)
    newline[0, [2, 9]] = True
    last = torch.where(newline[0], torch.arange(T), -1).cummax(0).values.clamp(min=0)
    to_newline = F.one_hot(last, T).float()[None, None]  # each query at the last newline (or 0)
    scores = pattern_scores(to_newline, {"newline": newline, "space": newline})
    assert scores["newline"].item() == scores["space"].item() == 1.0 and scores["previous"].item() < 0.3
    sink = torch.zeros(1, 1, T, T)
    sink[..., 0] = 1.0
    assert pattern_scores(sink)["first"].item() == 1.0
    assert pattern_scores(torch.eye(T)[None, None])["current"].item() == 1.0
    assert torch.isnan(pattern_scores(sink, {"newline": torch.zeros(1, T, dtype=torch.bool)})["newline"]).all()


def test_repeated_random_ids_repeat_and_are_seeded():
    ids = repeated_random_ids(65, 10, 3, seed=1)
    assert ids.shape == (3, 20) and torch.equal(ids[:, :10], ids[:, 10:])
    assert torch.equal(ids, repeated_random_ids(65, 10, 3, seed=1))
    assert int(ids.max()) < 65


# --------------------------------------------------------------------------- a model


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=2, n_head=2, n_embd=16))
    return m.eval()


@pytest.fixture(scope="module")
def windows() -> torch.Tensor:
    torch.manual_seed(1)
    return text_windows(torch.randint(12, (6 * 16 + 1,)), 16)  # (6, 17)


def no_hooks(model: GPT) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_head_scores_of_a_model_are_per_layer_and_head(model, windows):
    scores = head_scores(model, windows[:, :-1], {"newline": 3, "space": 4}, n_random=4, batch_size=4)
    assert list(scores) == list(HEAD_SCORES)
    for name, values in scores.items():
        assert values.shape == (2, 2), name
        if name != "distance":
            assert ((values >= 0) & (values <= 1)).all(), name
    # one head's previous score is what its attention maps say
    maps = attention_maps(model, windows[0, :-1])
    one = head_scores(model, windows[:1, :-1], n_random=1)
    assert one["previous"][1, 0] == pytest.approx(float(maps[1][0].diagonal(-1).mean()), abs=1e-6)
    assert torch.isnan(one["newline"]).all() and torch.isnan(one["space"]).all()


def test_ablating_nothing_registers_no_hook_and_leaves_the_logits_bit_identical(model, windows):
    ids = windows[:, :-1]
    with torch.no_grad():
        before = model(ids)
        with ablated(model, []):
            assert no_hooks(model)  # nothing registered: the same code path, as fast
            inside = model(ids)
    assert torch.equal(before, inside)


def test_ablating_a_head_changes_the_loss_and_nothing_is_left_behind(model, windows):
    base = mean_loss(model, windows)
    with ablated(model, [Part("head", 1, 0)]):
        assert mean_loss(model, windows) != base
    assert no_hooks(model) and mean_loss(model, windows) == base
    means = output_means(model, windows[:, :-1])
    with ablated(model, [Part("mlp", 0)], means):
        assert mean_loss(model, windows) != base
    assert no_hooks(model)


def test_zeroing_every_head_of_a_layer_leaves_only_the_projection_bias(model, windows):
    ids = windows[:, :-1]
    bias = model.transformer.h[0].attn.c_proj.bias.detach()
    with torch.no_grad(), ablated(model, [Part("head", 0, 0), Part("head", 0, 1)]):
        heads_zeroed = model(ids)
    with torch.no_grad(), ablated(model, [Part("attn", 0)], {("attn", 0): bias}):
        attention_is_bias = model(ids)
    assert torch.allclose(heads_zeroed, attention_is_bias, atol=1e-6)


def test_the_ablation_table_covers_every_part_ranked(model, windows):
    rows = ablation_table(model, windows, every_part(2, 2))
    assert [r["part"] for r in rows if r["kind"] != "head"] != []
    assert {r["part"] for r in rows} == {"L0H0", "L0H1", "L1H0", "L1H1", "L0 attn", "L0 mlp", "L1 attn", "L1 mlp"}
    increases = [r["mean_increase"] for r in rows]
    assert increases == sorted(increases, reverse=True) and [r["rank"] for r in rows] == list(range(1, 9))
    assert rows[0]["base_loss"] == pytest.approx(mean_loss(model, windows))


def test_parse_head_names_the_heads_that_exist():
    assert parse_head("L1H0", 2, 2) == Part("head", 1, 0)
    with pytest.raises(ConfigError, match="layers 0-1 and heads 0-1"):
        parse_head("L2H0", 2, 2)
    with pytest.raises(ConfigError, match="L<layer>H<head>"):
        parse_head("1.2", 2, 2)


def test_the_last_layer_of_the_logit_lens_is_the_model_itself(model, windows):
    ids = windows[:, :-1]
    states = residual_states(model, ids)
    assert len(states) == 3  # the embeddings and each block
    with torch.no_grad():
        assert torch.equal(lens_logits(model, states[-1]), model(ids))
    losses = lens_losses(model, windows, batch_size=4)
    assert losses[-1] == pytest.approx(mean_loss(model, windows), abs=1e-6)
    assert no_hooks(model)


def test_lens_predictions_past_the_context_read_the_window_ending_there(model):
    torch.manual_seed(2)
    ids = torch.randint(12, (40,))
    top_id, top_p, actual = lens_predictions(model, ids, batch_size=7)
    assert top_id.shape == top_p.shape == actual.shape == (3, 40)
    assert torch.isnan(actual[:, -1]).all() and not torch.isnan(actual[:, :-1]).any()
    with torch.no_grad():
        probs = F.softmax(model(ids[None, 30 - 15 : 31]), -1)[0, -1]  # position 30, its own window
    assert top_id[-1, 30] == probs.argmax() and actual[-1, 30] == pytest.approx(float(probs[ids[31]]), abs=1e-6)


def test_mlp_probes_read_the_models_own_non_linearity(model, windows):
    acts = mlp_activations(model, windows[:, :-1])
    assert len(acts) == 2
    pre, post = acts[0]
    assert pre.shape == post.shape == (6 * 16, 64)
    assert torch.allclose(post, F.gelu(pre), atol=1e-6)
    assert no_hooks(model)
    units = torch.tensor([[-1.0, 0.5, -0.2], [-0.3, -0.1, -2.0]])
    assert dead_fraction(units) == pytest.approx(2 / 3)  # units 0 and 2 are never positive


def test_attention_band_past_the_context_and_the_explorer_stays_small():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=32)).eval()
    ids = torch.randint(65, (256,))
    band = attention_band(m, ids, batch_size=50)
    assert band.shape == (4, 4, 256, 64)
    assert torch.allclose(band.sum(-1), torch.ones(4, 4, 256), atol=1e-5)  # every row a distribution
    late = attention_maps(m, ids[200 - 63 : 201])  # query 200 in the window ending at it
    assert torch.allclose(band[2, 1, 200], late[2][1, -1].flip(0), atol=1e-6)
    early = attention_maps(m, ids[:64])
    assert torch.allclose(band[0, 3, 10, :11], early[0][3, 10, :11].flip(0), atol=1e-6)
    scores = {name: torch.rand(4, 4) for name in HEAD_SCORES}
    page = explorer_page([chr(32 + i % 90) for i in ids.tolist()], band, head_records(scores, []), "meta")
    assert len(page.encode()) < 2_000_000
    assert "http://" not in page and "https://" not in page and "<script src" not in page


# --------------------------------------------------------------------------- training and the command


def test_the_callback_logs_head_scores_and_the_lens_at_validation(small_corpus, tmp_path):
    from minigpt.training.run import train

    cfg = train_cfg(
        tmp_path / "run",
        small_corpus,
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "data.val_windows=2",
        "callbacks=none",
        "+callbacks.heads._target_=minigpt.training.callbacks.HeadScores",
        "+callbacks.heads.n_windows=2",
        "+callbacks.heads.n_random=2",
    )
    train(cfg)
    (events,) = (tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for name in HEAD_SCORES:
        assert {f"view/heads/{name}/L{i}H{h}" for i in range(2) for h in range(2)} <= set(tags), name
    assert {"view/lens/embed", "view/lens/block0", "view/lens/block1"} <= set(tags)
    assert {"view/icl/score", "view/icl/loss_first_copy", "view/icl/loss_repeated_copy"} <= set(tags)
    assert sorted(e.step for e in acc.Scalars("view/heads/induction/L1H0")) == [2, 4]
    assert "custom_scalars__config__" in acc.Tags()["tensors"]


def test_the_custom_scalars_page_opens_on_the_induction_story():
    from minigpt.training.callbacks import head_layout

    layout = head_layout(n_layer=2)
    assert list(layout)[0] == "induction" and list(layout)[-1] == "logit lens"
    charts = [tags for _, tags in layout["induction"].values()]
    assert charts == [["view/heads/previous/.*"], ["view/heads/induction/.*"], ["view/icl/loss_.*"], ["view/icl/score"]]


def interpret_cfg(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("interpret", overrides=list(overrides))


def test_interpret_writes_every_table_figure_and_the_explorer(tiny_run, small_corpus, tmp_path):
    out = tmp_path / "interp"
    cfg = interpret_cfg(
        f"ckpt={tiny_run['best_ckpt']}",
        f"out_dir={out}",
        f"data.path={small_corpus}",
        "data.split=val",
        "windows=8",
        "n_random=2",
        "ablate=[L1H0,L0H1]",
    )
    index = run(cfg)
    names = {p.name for p in out.iterdir()}
    for stem in ("head_scores", "ablation", "lens_loss", "lens_predictions", "mlp_activations"):
        assert f"{stem}.png" in names and f"]({stem}.png)" in index.read_text()
    assert {"explorer.html", "index.md", "results.json", "head_scores.tsv", "ablation.tsv", "mlp.tsv"} <= names
    results = json.loads((out / "results.json").read_text())
    assert len(results["ablation"]) == 2 * 2 + 2 * 2 and set(results["ablate_together"]) == {
        "zero_increase",
        "mean_increase",
    }
    assert list(results["lens_loss"]) == ["embed", "block0", "block1"]
    assert results["lens_loss"]["block1"] == pytest.approx(results["ablation"][0]["base_loss"], abs=1e-5)

    # bad input: one line each, nothing written
    new = tmp_path / "bad"
    for overrides, error, message in (
        ([f"out_dir={new}", "ablate=[L7H0]"], ConfigError, "head L7H0 does not exist: the model has layers 0-1 and"),
        ([f"out_dir={new}", "text='ROMEO:€'"], VocabularyError, "outside the model's vocabulary"),
        ([f"out_dir={out}"], ConfigError, "already holds"),
    ):
        bad = interpret_cfg(f"ckpt={tiny_run['best_ckpt']}", "windows=2", *overrides)
        with pytest.raises(error, match=message) as e:
            run(bad)
        assert "\n" not in str(e.value)
        assert not new.exists()


@pytest.mark.slow  # a fresh interpreter: about 6 s; the same refusals are checked in-process above
def test_interpret_command_an_unknown_head_is_one_line_and_exit_2(tiny_run, tmp_path):
    result = run_cli(
        "-m", "minigpt", "interpret", f"ckpt={tiny_run['best_ckpt']}", f"out_dir={tmp_path / 'o'}", "ablate=[L0H9]"
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: head L0H9 does not exist")
    assert not (tmp_path / "o").exists()
