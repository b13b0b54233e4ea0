"""How float32 matrix products are computed: torch's setting, and "auto", which asks the machine.

`matmul_precision` (conf/train.yaml) takes torch's values (torch.set_float32_matmul_precision):
"highest" multiplies in full float32; "high" allows TF32 on GPUs that have it; "medium" allows
bfloat16 products with float32 accumulation, which on a CPU with AMX (Intel Sapphire Rapids and
later) run several times faster than float32 ones, and on a CPU without it run slower or not
at all. "auto" times both on this machine when training on a CPU and keeps the faster, once: later
runs in the same process and the processes it launches (DDP ranks) take the same choice. On a GPU
it is "high". Validation always multiplies in full float32 (LitGPT.on_validation_start), so
losses compare across settings.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from minigpt.configs import MATMUL_PRECISIONS, TrainOptions
from minigpt.schema import check_values

log = logging.getLogger("minigpt")

CHOICES = MATMUL_PRECISIONS
CHOSEN_ENV = "MINIGPT_AUTO_MATMUL_PRECISION"


def bf16_product_speedup(n: int = 1024, repeats: int = 5) -> float:
    """How many times faster a float32 n x n product runs at "medium" than at "highest" on this CPU:
    the two alternate, after warm-ups, and the fastest of each counts (the least disturbed by
    whatever else the machine is doing)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    before = torch.get_float32_matmul_precision()
    times: dict[str, list[float]] = {"highest": [], "medium": []}
    warmup = 2
    try:
        for i in range(2 * (warmup + repeats)):
            precision = ("highest", "medium")[i % 2]
            torch.set_float32_matmul_precision(precision)
            start = time.perf_counter()
            a @ b
            if i >= 2 * warmup:
                times[precision].append(time.perf_counter() - start)
    finally:
        torch.set_float32_matmul_precision(before)
    return min(times["highest"]) / min(times["medium"])


def check_matmul_precision(value: str) -> None:
    """One line naming the choices when `value` is not one of them (as TrainOptions declares them)."""
    check_values(TrainOptions, {"matmul_precision": value})


def resolve_matmul_precision(value: str, on_cpu: bool) -> str:
    """`value` itself, or for "auto" the setting this machine trains fastest with."""
    check_matmul_precision(value)
    if value != "auto":
        return value
    if not on_cpu:
        return "high"
    if os.environ.get(CHOSEN_ENV) in CHOICES:  # a DDP worker: the launching process has measured
        return os.environ[CHOSEN_ENV]
    speedup = bf16_product_speedup()
    chosen = "medium" if speedup >= 1.5 else "highest"
    log.info("matmul_precision=auto: %s (bfloat16 products %.1fx the speed of float32 on this CPU)", chosen, speedup)
    os.environ[CHOSEN_ENV] = chosen  # processes it launches (DDP ranks) inherit the choice, not re-measure
    return chosen


def trains_on_cpu(accelerator: str | None) -> bool:
    """Whether Lightning's `accelerator` setting will train on the CPU."""
    if accelerator in (None, "auto"):
        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return accelerator == "cpu"


def set_matmul_precision(value: str, accelerator: str | None = "cpu") -> str:
    """Apply `value` (resolving "auto") process-wide and return what was set."""
    precision = resolve_matmul_precision(value, trains_on_cpu(accelerator))
    torch.set_float32_matmul_precision(precision)
    return precision
