"""Muon for the transformer's hidden matrices, AdamW for everything else, in one optimizer.

Muon (Keller Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks")
takes the momentum of a weight matrix's gradient and replaces it by the nearest semi-orthogonal
matrix before applying it, so every direction of the update gets the same step size. The
orthogonalisation uses a few Newton-Schulz iterations instead of an SVD. Embeddings, the output
layer and 1-D parameters (biases, norm gains) keep AdamW, as in the original recipe.

`LitGPT.configure_optimizers` tags each parameter group with `kind`: "hidden" (2-D weights
inside the blocks), "embedding" (token/position embeddings and the LM head) or "vector".
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer
from torch.optim.adamw import adamw


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T of g = U S V^T, by a quintic Newton-Schulz iteration. g is one matrix
    (m, n) or a stack of them (k, m, n), each orthogonalised on its own in one batched product.

    Each step maps every singular value s to a*s + b*s^3 + c*s^5. Jordan's coefficients
    (3.4445, -4.7750, 2.0315) push all singular values in (0, 1] towards ~1 within five steps,
    fast rather than exactly; after normalising by the Frobenius norm every s is <= 1.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float() if g.dim() == 3 else g.float()[None]
    transposed = x.size(-2) > x.size(-1)
    if transposed:  # iterate on the wide orientation: X X^T is then the smaller matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b*gram + c*gram@gram
        x = torch.baddbmm(x, poly, x, beta=a)  # a*x + poly@x
    x = x.mT if transposed else x
    return (x if g.dim() == 3 else x[0]).to(g.dtype)


class MuonAdamW(Optimizer):
    """Muon on groups of kind "hidden", AdamW on the others.

    lr, momentum, nesterov and ns_steps drive Muon; adam_lr, betas, eps drive AdamW. Weight decay
    is decoupled (multiplied by the group's lr) for both. With `momentum_warmup_steps` > 0, Muon's
    momentum rises linearly from `momentum_start` to `momentum` over that many steps: early
    gradients change fast, and a long memory of them slows the first steps down.

    With `split_fused`, a matrix that stacks several linear maps along its rows (the attention's
    queries, keys and values in one (3C, C) matrix: a group's "parts" says how many, one number
    per parameter) has each map's update orthogonalised on its own, as if they were separate
    matrices; without it the stack is one matrix, and its orthogonal update shares the C
    directions of the input among all three maps.
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adam_lr: float = 3e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_warmup_steps: int = 0,
        momentum_start: float = 0.85,
        split_fused: bool = False,
    ) -> None:
        if momentum_warmup_steps < 0:
            raise ValueError(f"optim.momentum_warmup_steps must be >= 0, got {momentum_warmup_steps}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adam_lr=adam_lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum_warmup_steps=momentum_warmup_steps,
            momentum_start=momentum_start,
            split_fused=split_fused,
            kind="hidden",
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            # a scheduler scales group["lr"]; AdamW groups start from adam_lr instead
            if group["kind"] != "hidden":
                group["lr"] = group["adam_lr"]
            if group["kind"] == "hidden" and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon groups must hold 2-D weight matrices only")
            parts = group.get("parts")
            if parts is not None and (
                len(parts) != len(group["params"]) or any(p.size(0) % n for p, n in zip(group["params"], parts))
            ):
                raise ValueError("a group's parts must give, for each of its matrices, a count that divides its rows")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kind"] == "hidden":
                self._muon_group(group)
            else:
                self._adamw_group(group)
        return loss

    def _muon_group(self, group: dict) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        # the group's step count travels in its state_dict, so a resumed run continues the warm-up
        step = group["muon_step"] = group.get("muon_step", 0) + 1
        warmup = group.get("momentum_warmup_steps", 0)  # .get: checkpoints written before the option
        start = group.get("momentum_start", group["momentum"])
        ramp = min(1.0, (step - 1) / warmup) if warmup else 1.0
        group["current_momentum"] = start + ramp * (group["momentum"] - start)
        # matrices of one shape are orthogonalised together: a few batched products instead of
        # many small ones, which on a CPU cost more in overhead than in arithmetic
        parts = group.get("parts") if group.get("split_fused") else None
        same_shape: dict[torch.Size, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            momentum = self._momentum(p, self.state[p], group)
            n = parts[i] if parts else 1  # chunk: views, so updating a part updates p
            for p_part, m_part in zip(p.chunk(n), momentum.chunk(n)):
                same_shape.setdefault(p_part.shape, []).append((p_part, m_part))
        for pairs in same_shape.values():
            updates = orthogonalize(torch.stack([m for _, m in pairs]), group["ns_steps"])
            # an orthogonal (rows x cols) matrix has RMS 1/sqrt(max dim); rescale tall matrices so
            # the per-element update size does not depend on the shape
            rows, cols = pairs[0][0].shape
            updates *= max(1.0, rows / cols) ** 0.5
            for (p, _), update in zip(pairs, updates):
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr)

    @staticmethod
    def _momentum(p: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        """Update the momentum buffer with p's gradient; return what Muon orthogonalises."""
        buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
        momentum = group["current_momentum"]
        buf.mul_(momentum).add_(p.grad)
        return p.grad.add(buf, alpha=momentum) if group["nesterov"] else buf

    def _adamw_group(self, group: dict) -> None:
        """PyTorch's own AdamW update (torch.optim.adamw.adamw, what torch.optim.AdamW runs) on
        the group's parameters, with their moments kept in this optimizer's state."""
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            state = self.state[p]
            if "step" in state and not torch.is_tensor(state["step"]):  # a checkpoint's int count
                state["step"] = torch.tensor(float(state["step"]))
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
