"""One line naming the machine a benchmark ran on: a figure must say which CPU printed it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it (/proc/cpuinfo), else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """E.g. 'Intel(R) Xeon(R) Processor, 2 cores, torch 2.13.0+cpu, 2 threads'."""
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
