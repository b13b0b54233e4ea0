"""Make a labelled file (label<TAB>text lines) for `train.py task=classify` from a play-formatted
corpus such as Tiny Shakespeare, where each speech starts with a line `NAME:`.

    python scripts/make_labelled.py data/tinyshakespeare/input.txt data/speakers.tsv --task speaker
    python scripts/make_labelled.py data/tinyshakespeare/input.txt data/headings.tsv --task heading

`--task speaker`: each line of verse, labelled with who speaks it, for the `--speakers` most
frequent speakers (a hard task: style and content only). `--task heading`: speaker-name lines
(`name`) against lines of verse (`verse`), an easy sanity check. Classes are balanced by keeping
as many lines of each label as the rarest has, chosen with `--seed`.
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter
from pathlib import Path

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
    args = parser.parse_args()
    examples = balance(make_examples(args.corpus.read_text(), args.task, args.speakers), args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{label}\t{line}\n" for label, line in examples))
    counts = Counter(label for label, _ in examples)
    summary = ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))
    print(f"{len(examples)} examples written to {args.out}: {summary}")


if __name__ == "__main__":
    main()
