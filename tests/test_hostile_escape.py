"""Nothing untrusted reaches a terminal or a page unescaped: a crafted vocabulary, a crafted
checkpoint path and a job's overrides.yaml with escape sequences reach the terminal, the log,
Markdown and the explorer page only as printable text; the explorer renders tokens that open an
HTML comment or close a script as text."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from minigpt.analysis.diagnose import diagnose
from minigpt.analysis.explorer import attention_band, explorer_page, head_records
from minigpt.analysis.report import report
from minigpt.checkpoint.load import load_model
from minigpt.cli import fail, log
from minigpt.inference import generation
from minigpt.io import markdown_code, printable
from minigpt.model import GPT, GPTConfig
from minigpt.probes import HEAD_SCORES

# C0 and C1 control characters but newline and tab, DEL, and the line and paragraph separators
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
EVIL = "\x1b[2J\x1b]0;owned\x07\x9b31m\u2028"


def test_printable_escapes_every_control_and_keeps_what_is_asked():
    assert printable(EVIL) == "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u2028"
    assert printable("a\nb\tc", keep="\n\t") == "a\nb\tc" and printable("a\nb") == "a\\nb"
    assert printable("x" * 500, None) == "x" * 500 and len(printable("x" * 500)) == 200
    assert not CONTROLS.search(printable("".join(map(chr, range(0x00, 0xA0))) + "\u2028\u2029\ud800"))


@pytest.mark.parametrize("text", ["a ``` b", "`x`", "plain", "no\x1bescape\n```\nfence"])
def test_markdown_code_cannot_be_ended_early_by_what_it_holds(text):
    block = markdown_code(text, block=True)
    fence = block.splitlines()[0]
    assert block.endswith("\n" + fence) and block.count(fence) == 2 and not CONTROLS.search(block)
    span = markdown_code(text)
    ticks = re.match("`+", span).group()
    assert span.endswith(ticks) and ticks not in span[len(ticks) : -len(ticks)]


@pytest.fixture(scope="module")
def crafted(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's checkpoint with ESC in place of the newline and a C1 CSI in place of its last
    character, saved under a name holding escape sequences."""
    ckpt = torch.load(tiny_run["last_ckpt"], map_location="cpu", weights_only=False)
    vocab = ckpt["minigpt"]["vocab"]
    assert vocab[0] == "\n" and vocab[-1] < "\x9b"
    vocab[0], vocab[-1] = "\x1b", "\x9b"
    path = tmp_path_factory.mktemp("crafted") / "evil\x1b[31m\x9b`.ckpt"
    torch.save(ckpt, path)
    return path


def test_generate_prints_a_crafted_vocabulary_and_path_escaped(crafted, capsys):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("generate", overrides=["max_new_tokens=50", "seed=0", "temperature=2.0"])
    with open_dict(cfg):
        cfg.ckpt, cfg.prompt = str(crafted), "a\x1bb\x9b"  # characters of the crafted vocabulary
    generation.run(cfg)
    out, err = capsys.readouterr()
    assert out.startswith("a\\x1bb\\x9b")  # the prompt's echo; what the model writes is escaped alike
    assert not CONTROLS.search(out) and not CONTROLS.search(err)
    assert "evil\\x1b[31m\\x9b`.ckpt" in err


@pytest.mark.slow  # draws every figure
def test_diagnose_writes_a_crafted_vocabulary_and_path_escaped(crafted, tmp_path):
    loaded = load_model(crafted)
    index = diagnose(loaded, "ROMEO:\x1b\x9b", tmp_path / "out", temperatures=(2.0,), max_new_tokens=50, seed=0)
    text = index.read_text()
    assert not CONTROLS.search(text)
    assert "- checkpoint: `` " in text and "evil\\x1b[31m\\x9b`.ckpt" in text  # a span the ` cannot end
    assert "```\nROMEO:\\x1b\\x9b\n```" in text


def test_fail_and_the_log_write_escape_sequences_escaped(capsys, caplog):
    with pytest.raises(SystemExit):
        fail(f"checkpoint /tmp/{EVIL}.ckpt is broken")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not CONTROLS.search(err)
    with caplog.at_level(logging.INFO, logger="minigpt"):
        log.info("resuming from %s", f"/tmp/{EVIL}\nforged line")
    assert caplog.messages[-1] == "resuming from /tmp/\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u2028\\nforged line"


def test_report_prints_a_jobs_crafted_overrides_escaped(tmp_path, capsys):
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.n_layer=2{EVIL}", "seed=1"]))
    (tmp_path / "sweep" / "1" / ".hydra").mkdir(parents=True)
    (tmp_path / "sweep" / "1" / ".hydra" / "overrides.yaml").write_text("- model.n_layer=4\n- seed=1\n")
    report(tmp_path / "sweep", out_dir=tmp_path / "report")
    out = capsys.readouterr().out
    assert "2\\x1b[2J" in out and not CONTROLS.search(out)
    assert not CONTROLS.search((tmp_path / "report" / "report.csv").read_text())


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install the chromium package")
def test_the_explorer_renders_tokens_that_open_a_comment_or_close_a_script_as_text(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    tokens = ["<!--", "<script>", "a", "</script>", "<img src=x onerror=alert(1)>", "&amp;", "-->", "b"]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tokens), block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    ids = torch.arange(len(tokens))
    scores = {name: torch.full((1, 2), 0.5) for name in HEAD_SCORES}
    page_html = explorer_page(tokens, attention_band(model, ids), head_records(scores, []), "meta </script><b>x</b>")
    assert "</script>" not in page_html.split('id="data"')[1].split("</script>")[0]
    path = tmp_path / "explorer.html"
    path.write_text(page_html, encoding="utf-8")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_selector(".card .t span")
        shown = page.eval_on_selector_all("#text span", "spans => spans.map(s => s.textContent)")
        injected = page.evaluate("document.querySelectorAll('img, b').length")
        scripts = page.evaluate("document.querySelectorAll('script').length")
        meta = page.text_content("#meta")
        browser.close()
    assert errors == []
    assert shown[: len(tokens)] == tokens  # every token is there, as text
    assert injected == 0 and scripts == 2  # the page's own data and code only; no <img>, no <b>
    assert meta == "meta </script><b>x</b>"
