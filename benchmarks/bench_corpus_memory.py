"""Peak memory of loading a large corpus: python benchmarks/bench_corpus_memory.py [--mb 500]

Writes a corpus of --mb megabytes (Tiny Shakespeare repeated, or generated text without it) into
a temporary folder, then runs the data module's setup on it, which scans the vocabulary and
encodes the text chunk by chunk into a memory-mapped token file, and draws a few batches. Prints
the peak resident set size before, after the setup and after the batches, as JSON. Holding the
whole text, a list of ids and an int64 tensor at once, as a naive loader does, takes about 18
bytes a character.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_corpus(path: Path, megabytes: int) -> int:
    source = ROOT / "data" / "tinyshakespeare" / "input.txt"
    generated = b"".join(b"line %d of a generated text\n" % i for i in range(40_000))
    block = source.read_bytes() if source.is_file() else generated
    target, written = megabytes * 1_000_000, 0
    with open(path, "wb") as f:
        while written < target:
            piece = block[: target - written]
            f.write(piece)
            written += len(piece)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="corpus size in megabytes")
    parser.add_argument("--dir", default=None, help="where to write the corpus (default: a temporary folder)")
    args = parser.parse_args()

    import torch

    from minigpt.data.corpus import CharDataModule

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "corpus.txt"
        size = write_corpus(path, args.mb)
        baseline = peak_rss_mb()
        start = time.perf_counter()
        dm = CharDataModule(block_size=256, batch_size=64, path=str(path), name=None, val_windows=1000)
        dm.setup()
        seconds = time.perf_counter() - start
        after_setup = peak_rss_mb()
        stream = iter(dm.train_dataloader())
        for _ in range(20):
            x, _ = next(stream)
        val = next(iter(dm.val_dataloader()))[0]
        assert x.dtype == torch.long and val.shape[1] == 256
        result = {
            "corpus_mb": round(size / 1e6, 1),
            "characters": len(dm.train_data) + len(dm.val_data),
            "vocab_size": dm.tokenizer.vocab_size,
            "token_bytes": dm.train_data.element_size(),
            "setup_seconds": round(seconds, 1),
            "peak_rss_mb_before": round(baseline, 1),
            "peak_rss_mb_after_setup": round(after_setup, 1),
            "peak_rss_growth_setup_mb": round(after_setup - baseline, 1),
            # pages of the token file touched by the batches count as resident until the kernel
            # reclaims them; they are file-backed, not allocated memory
            "peak_rss_mb_after_batches": round(peak_rss_mb(), 1),
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from minigpt.cli import user_errors

    with user_errors():  # a missing checkpoint or a bad override: one line, exit 2
        sys.exit(main())
