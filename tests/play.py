"""The test suite's own corpus: a play-formatted text written by a seeded grammar, so that every
default test runs on real-looking text with no download and no file on disk.

It has what the tests read from Tiny Shakespeare's layout: speeches of one to four lines of verse
under a speaker heading (`ROMEO:`, `First Citizen:`), separated by blank lines; every ASCII letter
in both cases and the play's punctuation; a few speakers much more frequent than the others; and
enough variety (a few hundred words, rearranged) that a small model has to learn spelling and
word order rather than memorise lines. Nothing in it is copied from any play.
"""

from __future__ import annotations

import random
from pathlib import Path


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# (heading, weight): weights make the first three speakers the most frequent, as in a real play
SPEAKERS = (
    ("ROMEO", 9),
    ("JULIET", 8),
    ("First Citizen", 7),
    ("MENENIUS", 4),
    ("QUEEN ZENOBIA", 3),
    ("FRIAR JEROME", 3),
    ("KING OF WESSEX", 2),
    ("BAPTISTA", 2),
    ("Second Citizen", 2),
    ("LADY YVAINE", 1),
)
NAMES = words("Verona Kent Quentin Xanthe Yorick Gloucester Padua Harfleur Zephyr Ulric Isabel Dover")
NOUNS = words(
    "lord heart night morning sea crown sword river garden letter moon grave honour tongue city "
    "father daughter brother window tower storm field rose quarrel promise shadow voice kingdom "
    "fortune blood gate bread market friend enemy servant church bell candle fever wound ring "
    "summer winter harvest oath judgement mercy pride fool soldier widow throne axe exile"
)
ADJECTIVES = words(
    "gentle proud cold bitter sweet false honest weary noble idle heavy quiet wicked strange "
    "golden hollow dear sudden patient young ancient foolish brave jealous pale vexed"
)
VERBS = words(
    "keeps breaks follows wakes buries answers crowns forgives betrays watches carries remembers "
    "swears loves mocks hides waits blesses"
)
INFINITIVES = words("speak kneel fight weep sleep pray listen marry die forget return confess")
ADVERBS = words("softly tonight again truly never gladly quickly yet still soon")
OPENERS = ("O", "'Tis true", "Nay", "Ay", "Alas", "Good", "Sir", "Madam", "Peace", "Hark", "Well", "Why", "Come")


def _phrase(rng: random.Random) -> str:
    """One clause of verse: a determiner, maybe an adjective, a noun, a verb and an object."""
    det = rng.choice(("the", "my", "thy", "your", "this", "that", "our", "his", "her"))
    adj = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.6 else ""
    obj = rng.choice((f"the {rng.choice(NOUNS)}", f"thy {rng.choice(NOUNS)}", rng.choice(NAMES), "me", "us"))
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"{det} {adj}{rng.choice(NOUNS)} {rng.choice(VERBS)} {obj}"
    if pattern == 1:
        state = adj.strip() or "come"
        return f"I must {rng.choice(INFINITIVES)} {rng.choice(ADVERBS)}, for {det} {rng.choice(NOUNS)} is {state}"
    if pattern == 2:
        return f"what {rng.choice(NOUNS)} of {rng.choice(NAMES)} would {rng.choice(INFINITIVES)} with {obj}"
    subject = rng.choice((f"the {rng.choice(NOUNS)}", rng.choice(NAMES), "he", "she"))
    return f"let {det} {rng.choice(NOUNS)} {rng.choice(INFINITIVES)}, and {subject} {rng.choice(VERBS)} {obj}"


def _line(rng: random.Random) -> str:
    """A line of verse: an optional opener, one or two clauses, closing punctuation."""
    text = _phrase(rng)
    if rng.random() < 0.25:
        text = f"{text}; {_phrase(rng)}"
    if rng.random() < 0.35:
        text = f"{rng.choice(OPENERS)}, {text}"
    end = rng.choice((".", ".", ",", "!", "?", ";", " -"))
    return text[0].upper() + text[1:] + end


def play(n_chars: int = 30_000, seed: int = 0) -> str:
    """About `n_chars` characters of a play: whole speeches under speaker headings, blank lines between."""
    rng = random.Random(seed)
    names, weights = zip(*SPEAKERS, strict=True)
    speeches: list[str] = []
    size = 0
    while size < n_chars:
        speaker = rng.choices(names, weights)[0]
        speech = f"{speaker}:\n" + "".join(f"{_line(rng)}\n" for _ in range(rng.randint(1, 4)))
        speeches.append(speech)
        size += len(speech) + 1
    return "\n".join(speeches)


def write_play(path: Path, n_chars: int = 30_000, seed: int = 0) -> Path:
    """Write `play(n_chars, seed)` to `path` (UTF-8) and return the path."""
    path.write_text(play(n_chars, seed), encoding="utf-8")
    return path
