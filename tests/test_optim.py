"""MuonAdamW: orthogonalised updates for hidden matrices, AdamW for the rest."""

import pytest
import torch
import torch.nn.functional as F

from minigpt.model import GPT, GPTConfig
from minigpt.training.module import LitGPT
from minigpt.training.optim import MuonAdamW, orthogonalize


@pytest.mark.parametrize("shape", [(64, 256), (256, 64)])
def test_orthogonalize_flattens_the_spectrum(shape):
    torch.manual_seed(0)
    g = torch.randn(*shape) * torch.logspace(-1.5, 0.5, shape[1])  # columns scaled over 2 decades
    before = torch.linalg.svdvals(g)
    after = torch.linalg.svdvals(orthogonalize(g))
    assert before.max() / before.min() > 10
    # five quintic steps bring every singular value near 1 (Jordan's coefficients trade exactness
    # for speed: the result lies within about [0.68, 1.2], not exactly at 1)
    assert after.min() > 0.6 and after.max() < 1.25
    assert orthogonalize(g).shape == g.shape


def test_orthogonalize_is_close_to_the_svd_polar_factor():
    torch.manual_seed(1)
    g = torch.randn(32, 96)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cos = F.cosine_similarity(orthogonalize(g).flatten(), (u @ vh).flatten(), dim=0)
    assert cos > 0.97
    assert orthogonalize(g).shape == g.shape


def lit(vocab="abcdefgh"):
    model = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32, "tie_weights": False}
    return LitGPT(model=model, vocab=list(vocab), optim={"_target_": "torch.optim.AdamW", "_partial_": True})


def test_param_groups_cover_every_parameter_once():
    module = lit()
    groups = module.param_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(module.model.parameters()))
    kinds = {g["kind"]: g for g in groups}
    assert all(p.dim() == 2 for p in kinds["hidden"]["params"])
    assert kinds["vector"]["weight_decay"] == 0.0
    embedding_shapes = sorted(tuple(p.shape) for p in kinds["embedding"]["params"])
    assert embedding_shapes == [(8, 32), (8, 32), (16, 32)]  # wte, lm_head (untied), wpe


def test_muon_adamw_trains_and_keeps_separate_state():
    torch.manual_seed(0)
    module = lit()
    opt = MuonAdamW(module.param_groups(), lr=0.02, adam_lr=3e-3)
    x = torch.randint(8, (8, 16))
    y = torch.roll(x, -1, dims=1)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(module.model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    hidden = next(g for g in opt.param_groups if g["kind"] == "hidden")
    other = next(g for g in opt.param_groups if g["kind"] == "embedding")
    assert "momentum_buffer" in opt.state[hidden["params"][0]]
    assert "exp_avg" in opt.state[other["params"][0]]
    assert other["lr"] == 3e-3 and hidden["lr"] == 0.02


def test_non_hidden_groups_step_exactly_as_torch_adamw():
    """The AdamW half is PyTorch's AdamW, not a look-alike: same weights after every step."""
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = MuonAdamW([{"params": [a], "kind": "vector"}], adam_lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    theirs = torch.optim.AdamW([b], lr=1e-2, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.1)
    for step in range(5):
        g = torch.randn(4, 3)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        assert torch.equal(a, b), f"differs after step {step + 1}"


def test_muon_refuses_non_matrix_groups():
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([{"params": [torch.zeros(3, requires_grad=True)], "kind": "hidden"}])


@pytest.mark.parametrize("parts", [[3, 1], [4]])
def test_muon_refuses_parts_that_do_not_fit_the_matrices(parts):
    with pytest.raises(ValueError, match="parts"):
        MuonAdamW([{"params": [torch.zeros(6, 2, requires_grad=True)], "kind": "hidden", "parts": parts}])


def test_state_round_trips_through_state_dict():
    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8))
    groups = [
        {"params": [p for p in model.parameters() if p.dim() == 2], "kind": "hidden"},
        {"params": [p for p in model.parameters() if p.dim() < 2], "kind": "vector"},
    ]
    opt = MuonAdamW(groups)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    clone = MuonAdamW(groups)
    clone.load_state_dict(opt.state_dict())
    assert clone.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_param_groups_say_which_matrices_stack_several_maps():
    module = lit()
    hidden = next(g for g in module.param_groups() if g["kind"] == "hidden")
    names = {id(p): n for n, p in module.model.named_parameters()}
    stacked = {names[id(p)] for p, n in zip(hidden["params"], hidden["parts"], strict=True) if n == 3}
    assert stacked == {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.weight"}
    assert sorted(set(hidden["parts"])) == [1, 3]


@pytest.mark.parametrize("split_fused", [False, True])
def test_split_fused_orthogonalises_each_stacked_map_on_its_own(split_fused):
    """A (3n, n) matrix stacking three maps: with split_fused its update is three orthogonal
    (n, n) blocks, one per map; without, one orthogonal (3n, n) matrix scaled by sqrt(3)."""
    torch.manual_seed(0)
    n = 8
    w = torch.nn.Parameter(torch.zeros(3 * n, n))
    g = torch.randn(3 * n, n) * torch.tensor([1.0, 10.0, 0.1]).repeat_interleave(n)[:, None]
    opt = MuonAdamW(
        [{"params": [w], "kind": "hidden", "parts": [3]}], lr=1.0, momentum=0.0, nesterov=False, split_fused=split_fused
    )
    w.grad = g.clone()
    opt.step()
    if split_fused:
        expected = -torch.cat([orthogonalize(part) for part in g.chunk(3)])
    else:
        expected = -orthogonalize(g) * 3**0.5
    torch.testing.assert_close(w.detach(), expected)
    # the three maps' updates have the same size only when each is orthogonalised on its own
    sizes = torch.stack([part.norm() for part in w.detach().chunk(3)])
    assert (sizes.max() / sizes.min() < 1.5) == split_fused
