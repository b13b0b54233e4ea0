"""The figure and numbers of docs/heads.md's induction story, from the run of experiment=induction.

    OMP_NUM_THREADS=1 python train.py experiment=induction run_dir=outputs/induction/doc
    python scripts/induction_figure.py outputs/induction/doc

writes docs/images/induction_phase_change.png (the HeadScores callback's scalars, the step of the
phase change marked) and prints what the page quotes: the step at which a layer-1 head's
induction score first reaches INDUCTION_FACTOR times uniform attention's, and each curve at the
first validation, at that step and at the end. With --cost it also times, on a model of the
default shapes, the HeadScores callback's head scores and logit lens beside its in-context-learning
measurements (`write_icl`) on the default number of windows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from minigpt.analysis.circuit import INDUCTION_FACTOR, phase_change_step
from minigpt.figures import plot_induction_story, read_scalars
from minigpt.model import GPT, GPTConfig
from minigpt.probes import head_scores, lens_losses, text_windows, uniform_induction
from minigpt.training.callbacks import HeadScores, write_icl

IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "induction_phase_change.png"


def value_at(points: list[tuple[int, float]], step: int) -> float:
    """The logged value at `step`, or at the last logged step before it."""
    return [v for s, v in points if s <= step][-1]


class _Discard:
    """A SummaryWriter stand-in that keeps nothing: only the measuring is timed."""

    def add_scalar(self, *args) -> None:
        pass


def callback_cost(repeats: int = 3) -> None:
    """Seconds per validation of the HeadScores callback's parts on a model of the default shapes
    (4 layers x 4 heads, 128 wide, context 64; the weights do not change the cost), best of
    `repeats`, in one thread."""
    torch.set_num_threads(1)
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    callback = HeadScores()
    ids = torch.randint(65, (max(callback.n_windows, callback.n_icl_windows) * 64 + 1,))
    windows = text_windows(ids, 64, callback.n_windows)
    scores, icl = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        head_scores(model, windows[:, :-1], {"newline": 0}, callback.n_random)
        lens_losses(model, windows)
        scores.append(time.perf_counter() - start)
        start = time.perf_counter()
        write_icl(_Discard(), model, text_windows(ids, 64, callback.n_icl_windows), 0)
        icl.append(time.perf_counter() - start)
    print(f"head scores and logit lens: {min(scores):.3f} s; ICL on {callback.n_icl_windows} windows: {min(icl):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--block-size", type=int, default=32, help="the model's context (the experiment's: 32)")
    parser.add_argument("--cost", action="store_true", help="also time the callback's parts on the default shapes")
    args = parser.parse_args()
    if args.cost:
        callback_cost()
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
