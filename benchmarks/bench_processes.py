"""Compare a setting that acts on the whole process, such as the allocator's, by fresh processes.

    python benchmarks/bench_processes.py --overrides experiment=cpu_90s --compare keep_freed_memory=false

bench_step.py compares two configurations inside one process, alternating step by step; a
setting that changes the process itself (keep_freed_memory: how glibc's malloc treats freed
memory) cannot alternate that way. Here each configuration runs bench_step.py in a fresh
interpreter, the two taking turns (and turns going first) for --rounds rounds, and the medians of
their step times and page faults are compared.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

from machine import describe  # benchmarks/machine.py

BENCH_STEP = Path(__file__).with_name("bench_step.py")
TOTAL = re.compile(r"total\s+([\d.]+) ms")
FAULTS = re.compile(r"page faults per step: ([\d,]+)")


def one_run(overrides: list[str], steps: int) -> tuple[float, float]:
    """Median step milliseconds and page faults per step of one fresh bench_step.py process."""
    command = [sys.executable, str(BENCH_STEP), "--steps", str(steps), "--overrides", *overrides]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench_step.py failed ({' '.join(overrides)}):\n{out.stderr.strip()[-2000:]}")
    total, faults = TOTAL.search(out.stdout), FAULTS.search(out.stdout)
    return float(total.group(1)), float(faults.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides, e.g. experiment=cpu_90s")
    parser.add_argument("--compare", nargs="+", required=True, help="extra overrides of the second configuration")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per process")
    args = parser.parse_args()
    configs = {"baseline": args.overrides, "with " + " ".join(args.compare): args.overrides + args.compare}
    print(describe())
    print(f"median over {args.rounds} fresh processes each, taking turns; each the median of {args.steps} steps")
    results: dict[str, list[tuple[float, float]]] = {title: [] for title in configs}
    for r in range(args.rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for title in order:
            results[title].append(one_run(configs[title], args.steps))
    medians = []
    for title, runs in results.items():
        ms = statistics.median(t for t, _ in runs)
        faults = statistics.median(f for _, f in runs)
        medians.append(ms)
        each = ", ".join(f"{t:.1f}" for t, _ in runs)
        print(f"{title}: {ms:.1f} ms per step ({each}), {faults:,.0f} page faults per step")
    print(f"step time ratio (second / first): {medians[1] / medians[0]:.3f}")


if __name__ == "__main__":
    main()
