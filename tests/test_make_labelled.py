"""scripts/make_labelled.py: the labelled files of the README's classification example, balanced
and correctly labelled, and one line for each bad input with nothing overwritten."""

from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

SCRIPT = str(ROOT / "scripts" / "make_labelled.py")


def read_tsv(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in path.read_text().splitlines()]


def test_speaker_task_labels_each_verse_line_with_its_speaker(small_corpus, tmp_path):
    out = tmp_path / "speakers.tsv"
    result = run_cli(SCRIPT, str(small_corpus), str(out), "--task", "speaker", "--speakers", "3")
    assert result.returncode == 0, result.stderr
    rows = read_tsv(out)
    counts = Counter(label for label, _ in rows)
    assert len(counts) == 3 and len(set(counts.values())) == 1  # three speakers, balanced
    # each line is in a speech of that speaker: in the corpus a speech is a paragraph whose
    # first line is `NAME:`
    lines = small_corpus.read_text().splitlines()
    speech_of: dict[str, set[str]] = {}
    for i, line in enumerate(lines):
        start = i
        while start > 0 and lines[start - 1].strip():
            start -= 1
        if start < i:
            speech_of.setdefault(line, set()).add(lines[start].removesuffix(":"))
    assert all(label in speech_of.get(text, ()) for label, text in rows)
    assert f"{len(rows)} examples written to {out}" in result.stdout


def test_heading_task_is_names_against_verse(small_corpus, tmp_path):
    out = tmp_path / "headings.tsv"
    assert run_cli(SCRIPT, str(small_corpus), str(out), "--task", "heading").returncode == 0
    rows = read_tsv(out)
    assert {label for label, _ in rows} == {"name", "verse"}
    assert all(text.endswith(":") for label, text in rows if label == "name")
    assert sum(label == "name" for label, _ in rows) * 2 == len(rows)


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "does not exist"),
        (b"\xff\xfe ROMEO:\n", (), "is not UTF-8"),
        (b"just some prose\nwith no speaker headings\n", (), "gives 0 label(s) for --task speaker"),
        (b"just some prose\nwith no speaker headings\n", ("--task", "heading"), "gives 1 label(s) for --task heading"),
        (b"ROMEO:\nHi.\n", ("--speakers", "1"), "at least 2 speakers"),
    ],
)
def test_bad_input_is_one_line(tmp_path, content, args, message):
    corpus, out = tmp_path / "corpus.txt", tmp_path / "out.tsv"
    if content is not None:
        corpus.write_bytes(content)
    result = run_cli(SCRIPT, str(corpus), str(out), *args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == (["corpus.txt"] if content else [])


def test_an_existing_output_is_kept_unless_forced(small_corpus, tmp_path):
    out = tmp_path / "speakers.tsv"
    out.write_text("earlier work\n")
    result = run_cli(SCRIPT, str(small_corpus), str(out))
    assert result.returncode == 2 and "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_text() == "earlier work\n"
    assert run_cli(SCRIPT, str(small_corpus), str(out), "--force").returncode == 0
    assert out.read_text() != "earlier work\n"
