"""Make a labelled file (label<TAB>text lines) for `train.py task=classify` from a play-formatted
corpus such as Tiny Shakespeare, where each speech starts with a line `NAME:`.

    python scripts/make_labelled.py data/tinyshakespeare/input.txt data/speakers.tsv --task speaker
    python scripts/make_labelled.py data/tinyshakespeare/input.txt data/headings.tsv --task heading

`--task speaker`: each line of verse, labelled with who speaks it, for the `--speakers` most
frequent speakers (a hard task: style and content only). `--task heading`: speaker-name lines
(`name`) against lines of verse (`verse`), an easy sanity check. Classes are balanced by keeping
as many lines of each label as the rarest has, chosen with `--seed`. An existing output file is
kept unless `--force` is given; bad input is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter
from pathlib import Path

from minigpt.cli import fail, user_errors
from minigpt.io import atomic_write, read_text_file

HEADING = re.compile(r"[A-Z][A-Za-z' ]*:")


def speaker_lines(text: str) -> list[tuple[str, str]]:
    """(speaker, line) for every non-blank line of verse, and ("", heading) for the headings."""
    pairs, speaker = [], ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if HEADING.fullmatch(line):
            speaker = line[:-1]
            pairs.append(("", line))
        else:
            pairs.append((speaker, line))
    return pairs


def make_examples(text: str, task: str, n_speakers: int) -> list[tuple[str, str]]:
    pairs = speaker_lines(text)
    if task == "heading":
        return [("name" if not who else "verse", line) for who, line in pairs]
    verse = [(who, line) for who, line in pairs if who]
    top = {who for who, _ in Counter(who for who, _ in verse).most_common(n_speakers)}
    return [(who, line) for who, line in verse if who in top]


def balance(examples: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    by_label: dict[str, list[tuple[str, str]]] = {}
    for example in examples:
        by_label.setdefault(example[0], []).append(example)
    n = min(len(group) for group in by_label.values())
    rng = random.Random(seed)
    kept = [e for label in sorted(by_label) for e in rng.sample(by_label[label], n)]
    rng.shuffle(kept)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", choices=("speaker", "heading"), default="speaker")
    parser.add_argument("--speakers", type=int, default=2, help="--task speaker: how many speakers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    args = parser.parse_args()
    if args.speakers < 2:
        fail(f"--speakers={args.speakers}: a classifier needs at least 2 speakers")
    if args.out.exists() and not args.force:
        fail(f"{args.out} already exists; pick another output path or pass --force to replace it")
    text = read_text_file(args.corpus, "corpus", "data/tinyshakespeare/input.txt")
    examples = make_examples(text, args.task, args.speakers)
    labels = {label for label, _ in examples}
    if len(labels) < 2:
        fail(
            f"{args.corpus} gives {len(labels)} label(s) for --task {args.task}: it needs speeches that start "
            f"with a line 'NAME:' (as Tiny Shakespeare does), by at least 2 speakers for --task speaker"
        )
    examples = balance(examples, args.seed)
    tsv = "".join(f"{label}\t{line}\n" for label, line in examples)
    atomic_write(args.out, lambda f: f.write(tsv.encode("utf-8")))
    counts = Counter(label for label, _ in examples)
    summary = ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))
    print(f"{len(examples)} examples written to {args.out}: {summary}")


if __name__ == "__main__":
    with user_errors():  # a missing or non-UTF-8 corpus, an unwritable output: one line, exit 2
        main()
