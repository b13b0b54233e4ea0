"""threads=auto: one thread for a small step, all of PyTorch's for a large one; a count overrides."""

import pytest
import torch
from conftest import ROOT, run_cli

from minigpt import threads
from minigpt.errors import ConfigError
from minigpt.threads import AUTO_ONE_THREAD_BELOW, auto_threads, resolve_threads, using_threads


def test_auto_picks_one_thread_for_generation_and_the_free_cores_for_scoring(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads, "others_running", lambda: 0)
    # the default model (0.80M parameters): one sequence on one thread; 16 sequences, or 64 windows
    # of 64, on the free cores
    assert auto_threads(800_000, 1, available=8) == 1
    assert auto_threads(800_000, 4, available=8) == 1
    assert auto_threads(800_000, 16, available=8) == 8
    assert auto_threads(800_000, 64 * 64, available=8) == 8
    assert auto_threads(AUTO_ONE_THREAD_BELOW, 1, available=8) == 8
    monkeypatch.setattr(threads, "others_running", lambda: 3)  # three cores busy with other work
    assert auto_threads(800_000, 64 * 64, available=8) == 5
    monkeypatch.setattr(threads, "others_running", lambda: 20)
    assert auto_threads(800_000, 64 * 64, available=8) == 1
    assert threads.others_running() >= 0  # the real count, whatever the machine does now


def test_this_processs_own_spinning_threads_are_not_other_work():
    """PyTorch's workers spin for a moment after a parallel region: counted as other processes'
    work, they would make auto pick one thread on idle cores."""
    import hashlib
    import threading
    import time

    stop, data = threading.Event(), bytes(1 << 22)

    def spin() -> None:  # hashing a large buffer runs without the GIL: the thread stays runnable
        while not stop.is_set():
            hashlib.sha256(data).digest()

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        counts = [threads.own_running() for _ in range(20)]
    finally:
        stop.set()
        spinner.join()
    assert max(counts) >= 2  # the asking thread and, at some read, the spinner


def test_a_count_overrides_and_the_previous_count_comes_back():
    before = torch.get_num_threads()
    with using_threads(1, 10**9, 10**6) as n:  # large work, but the user asked for 1
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    for bad in (0, -1, "many", 1.5, True):
        with pytest.raises(ConfigError, match=r"threads must be auto or an integer >= 1 \(or null\), got "):
            resolve_threads(bad, 1, 1)


def test_generate_says_its_thread_count_and_refuses_a_bad_one(tiny_run):
    gen = str(ROOT / "generate.py")
    ok = run_cli(gen, f"ckpt={tiny_run['last_ckpt']}", "max_new_tokens=5", "seed=1")
    assert ok.returncode == 0 and "| 1 thread\n" in ok.stderr, ok.stderr
    bad = run_cli(gen, f"ckpt={tiny_run['last_ckpt']}", "threads=zero")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: threads must be auto or an integer >= 1 (or null), got 'zero'"]
