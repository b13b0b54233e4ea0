import pytest
import torch

from minigpt.errors import ConfigError
from minigpt.training.schedules import constant, cosine, wsd


def lrs(make, steps, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make(opt, total_steps=steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warms_up_peaks_and_ends_at_the_floor():
    v = lrs(cosine, 1000, warmup_steps=100, min_lr_ratio=0.1)
    assert v[0] == pytest.approx(0.01) and v[99] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(v[:100], v[1:100]))
    assert all(a >= b for a, b in zip(v[100:], v[101:]))
    assert v[-1] == pytest.approx(0.1, abs=1e-4)
    assert v[550] == pytest.approx(0.55, abs=0.01)  # halfway down the cosine


def test_wsd_is_flat_then_decays_linearly():
    v = lrs(wsd, 1000, warmup_steps=10, decay_fraction=0.2)
    assert v[10:800] == [1.0] * 790
    assert v[900] == pytest.approx(0.5, abs=0.01) and v[-1] < 0.01


def test_constant_and_bad_arguments():
    assert lrs(constant, 10) == [1.0] * 10
    with pytest.raises(ConfigError, match="max_steps"):
        lrs(cosine, 0)
    with pytest.raises(ConfigError, match="decay_fraction"):
        lrs(wsd, 10, decay_fraction=0)
