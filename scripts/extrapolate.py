"""The table and figure of docs/heads.md's extrapolation story, from a sweep of experiment=extrapolate.

    python train.py experiment=extrapolate data.path=<Tiny Shakespeare> hydra.sweep.dir=outputs/extrapolate/doc
    python scripts/extrapolate.py outputs/extrapolate/doc

scores every job's checkpoints/last.ckpt on its validation split in windows of 1x, 2x and 4x its
training context, prints the mean loss of each (learned positions: "cannot", with the model's
reason) and writes the loss by position to docs/images/extrapolate_loss_by_position.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minigpt.analysis.extrapolation import FACTORS, checkpoints_of, markdown_table, measure, plot_loss_by_position
from minigpt.errors import MinigptError

IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "extrapolate_loss_by_position.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="sweep folders, run folders or .ckpt files")
    parser.add_argument("--factors", type=int, nargs="+", default=list(FACTORS), help="multiples of block_size")
    parser.add_argument("--image", type=Path, default=IMAGE, help="where the figure goes")
    parser.add_argument("--batch-size", type=int, default=64, help="windows scored at once")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        results = [measure(ckpt, tuple(args.factors), args.batch_size) for ckpt in checkpoints_of(args.paths)]
    except MinigptError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(markdown_table(results, tuple(args.factors)))
    args.image.parent.mkdir(parents=True, exist_ok=True)
    plot_loss_by_position(results).savefig(args.image)
    print(f"\nscored in {time.perf_counter() - start:.0f} s; wrote {args.image}")


if __name__ == "__main__":
    main()
