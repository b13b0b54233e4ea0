"""keep_freed_memory: memory a step frees stays in the process, so the next step does not fault it in."""

import resource

import pytest
import torch

from minigpt.training import allocator

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="mallopt is glibc's (Linux)")

BLOCK = 16 * 1024 * 1024  # bytes; like a step's largest activations, between the two thresholds


def page_faults_of_ten_blocks() -> int:
    """Minor page faults while a 16 MiB tensor is allocated, written and freed ten times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(BLOCK // 4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_kept_memory_is_reused_without_page_faults():
    try:
        # glibc's starting thresholds, held fixed: every block is mapped on its own and unmapped on free
        assert allocator.set_thresholds(allocator.GLIBC_START, allocator.GLIBC_START)
        returned = page_faults_of_ten_blocks()
        assert allocator.keep_freed_memory()
        page_faults_of_ten_blocks()  # the heap grows to hold one block, once
        kept = page_faults_of_ten_blocks()
    finally:
        allocator.keep_freed_memory()  # what every training run in this process sets anyway
    assert returned >= 10  # at least one fresh page per block (4 KiB pages: 4,096 each)
    assert kept < returned / 10
