"""The figure and numbers of docs/heads.md's induction story, from the run of experiment=induction.

    OMP_NUM_THREADS=1 python train.py experiment=induction run_dir=outputs/induction/doc
    python scripts/induction_figure.py outputs/induction/doc

writes docs/images/induction_phase_change.png (the HeadScores callback's scalars, the step of the
phase change marked) and prints what the page quotes: the step at which a layer-1 head's
induction score first reaches INDUCTION_FACTOR times uniform attention's, and each curve at the
first validation, at that step and at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minigpt.analysis.circuit import INDUCTION_FACTOR, phase_change_step
from minigpt.figures import plot_induction_story, read_scalars
from minigpt.probes import uniform_induction

IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "induction_phase_change.png"


def value_at(points: list[tuple[int, float]], step: int) -> float:
    """The logged value at `step`, or at the last logged step before it."""
    return [v for s, v in points if s <= step][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--block-size", type=int, default=32, help="the model's context (the experiment's: 32)")
    args = parser.parse_args()
    scalars = read_scalars(args.run_dir / "tensorboard")
    uniform = uniform_induction(args.block_size // 2)
    step = phase_change_step(scalars, INDUCTION_FACTOR * uniform)
    threshold = INDUCTION_FACTOR * uniform
    print(f"uniform attention's induction score: {uniform:.4f}; threshold {INDUCTION_FACTOR:g} x = {threshold:.4f}")
    print(f"phase change (first step at or above the threshold): {step}")
    first, last = scalars["val/loss"][0][0], scalars["val/loss"][-1][0]
    tags = sorted(t for t in scalars if t.startswith(("view/heads/previous/", "view/heads/induction/", "view/icl/")))
    print(f"{'tag':34s} {'step ' + str(first):>10s} {'step ' + str(step):>10s} {'step ' + str(last):>10s}")
    for tag in [*tags, "val/loss"]:
        row = [value_at(scalars[tag], s) for s in (first, step or last, last)]
        print(f"{tag:34s} " + " ".join(f"{v:10.3f}" for v in row))
    fig = plot_induction_story(scalars, uniform, step)
    IMAGE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMAGE)
    print(f"wrote {IMAGE}")


if __name__ == "__main__":
    main()
