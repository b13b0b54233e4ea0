"""matmul_precision: torch's settings, "auto" choosing by a measurement, validation in full float32."""

import os

import pytest
import torch

import minigpt.training.precision as precision
from minigpt.errors import ConfigError
from minigpt.training.precision import resolve_matmul_precision, set_matmul_precision


@pytest.fixture(autouse=True)
def restore_precision():
    """Each test starts with no earlier choice of auto's, and leaves the process as it found it."""
    before = torch.get_float32_matmul_precision()
    chosen = os.environ.pop(precision.CHOSEN_ENV, None)
    yield
    torch.set_float32_matmul_precision(before)
    os.environ.pop(precision.CHOSEN_ENV, None)
    if chosen is not None:
        os.environ[precision.CHOSEN_ENV] = chosen


@pytest.mark.parametrize("value", ["highest", "high", "medium"])
def test_torchs_settings_pass_through(value):
    assert set_matmul_precision(value) == value
    assert torch.get_float32_matmul_precision() == value


@pytest.mark.parametrize(("speedup", "chosen"), [(3.0, "medium"), (1.1, "highest"), (0.5, "highest")])
def test_auto_keeps_bf16_products_only_where_this_cpu_runs_them_faster(monkeypatch, speedup, chosen):
    monkeypatch.setattr(precision, "bf16_product_speedup", lambda: speedup)
    assert resolve_matmul_precision("auto", on_cpu=True) == chosen
    assert resolve_matmul_precision("auto", on_cpu=False) == "high"  # a GPU: TF32 where it has it


def test_the_measurement_leaves_the_setting_as_it_found_it():
    torch.set_float32_matmul_precision("high")
    assert precision.bf16_product_speedup(n=64, repeats=1) > 0
    assert torch.get_float32_matmul_precision() == "high"


def test_an_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match="matmul_precision='fast' is unknown; choose one of highest, high, medium"):
        set_matmul_precision("fast")


def test_validation_multiplies_in_full_float32_and_training_resumes_as_set():
    from minigpt.model import GPTConfig
    from minigpt.training.module import LitGPT

    shape = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8).to_dict()
    module = LitGPT(model=shape, vocab=list("abcde"), optim={})
    torch.set_float32_matmul_precision("medium")
    module.on_validation_start()
    assert torch.get_float32_matmul_precision() == "highest"
    module.on_validation_end()
    assert torch.get_float32_matmul_precision() == "medium"


def test_processes_a_run_launches_inherit_what_auto_chose(monkeypatch):
    monkeypatch.setattr(precision, "bf16_product_speedup", lambda: 3.0)
    assert resolve_matmul_precision("auto", on_cpu=True) == "medium"
    monkeypatch.setattr(precision, "bf16_product_speedup", lambda: 0.5)  # a DDP rank measuring now would differ
    assert resolve_matmul_precision("auto", on_cpu=True) == "medium"  # but takes the launcher's choice
