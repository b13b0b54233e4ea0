"""The attention explorer in a real headless Chromium (the system's, driven by Playwright): hovering
a character shows, in every head's card, the model's own attention weights for that query (also
past the context, where the query's window ends at it); the toggle shows which characters attend
to it; the page loads nothing from anywhere."""

from __future__ import annotations

import shutil

import pytest
import torch

from minigpt.analysis.explorer import attention_band, explorer_page, head_records
from minigpt.model import GPT, GPTConfig
from minigpt.probes import HEAD_SCORES, attention_maps

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install the chromium package")
# the page stores each weight in a byte (round(255 w)) and shows it with 3 decimals
TOLERANCE = 0.5 / 255 + 0.0005
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
BLOCK = 16


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    """A tiny random model with sharp attention, its explorer page for TEXT, and the ids of TEXT."""
    torch.manual_seed(0)
    vocab = sorted(set(TEXT))
    model = GPT(GPTConfig(vocab_size=len(vocab), block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)).eval()
    for block in model.transformer.h:  # large queries and keys: sharp attention, weights from ~0 to ~1
        torch.nn.init.normal_(block.attn.c_attn.weight, std=1.0)
    ids = torch.tensor([vocab.index(c) for c in TEXT])
    scores = {name: torch.full((2, 2), 0.5) for name in HEAD_SCORES}
    page = explorer_page(list(TEXT), attention_band(model, ids), head_records(scores, []), "a tiny model")
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    path.write_text(page, encoding="utf-8")
    return model, ids, path


@pytest.fixture(scope="module")
def page(explorer):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(explorer[2].as_uri())
        page.wait_for_selector(".card .t span")
        yield page, requests
        browser.close()


def model_row(model: GPT, ids: torch.Tensor, q: int) -> list[torch.Tensor]:
    """The attention of query q per layer (nh, q + 1), zero before its window of BLOCK positions."""
    start = max(0, q - BLOCK + 1)
    maps = attention_maps(model, ids[start : max(q + 1, min(BLOCK, len(ids)))])
    rows = []
    for w in maps:
        row = torch.zeros(w.size(0), q + 1)
        row[:, start:] = w[:, q - start, : q + 1 - start]
        rows.append(row)
    return rows


def shown_weights(page, layer: int, head: int) -> list[str]:
    return page.eval_on_selector_all(
        f".card[data-layer='{layer}'][data-head='{head}'] .t span", "spans => spans.map(s => s.dataset.w)"
    )


@pytest.mark.parametrize("q", [9, len(TEXT) - 3])  # inside the first window, and past the context
def test_hovering_a_character_shows_the_models_attention_for_that_query(explorer, page, q):
    model, ids, _ = explorer
    page, requests = page
    page.click("input[value=from]")
    page.hover(f"#text span[data-pos='{q}']")
    expected = model_row(model, ids, q)
    for layer in range(2):
        for head in range(2):
            shown = shown_weights(page, layer, head)
            assert all(w == "" for w in shown[q + 1 :])  # the future is not shown
            for k in range(q + 1):
                value = expected[layer][head, k].item()
                if k <= q - BLOCK:  # outside the query's window
                    assert shown[k] == "", (layer, head, k)
                else:
                    assert abs(float(shown[k]) - value) <= TOLERANCE, (layer, head, q, k, shown[k], value)
    assert all(url.startswith("file://") for url in requests), requests


def test_the_toggle_shows_which_characters_attend_to_the_hovered_one(explorer, page):
    model, ids, _ = explorer
    page, _ = page
    k = 20
    page.click("input[value=to]")
    page.hover(f"#text span[data-pos='{k}']")
    shown = shown_weights(page, 1, 0)
    assert all(w == "" for w in shown[:k])
    for q in (k, k + 1, k + 7):
        assert abs(float(shown[q]) - model_row(model, ids, q)[1][0, k].item()) <= TOLERANCE
    page.click("input[value=from]")
