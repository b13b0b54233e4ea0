"""The induction circuit of a checkpoint, named with its evidence (Olsson et al., 2022).

An induction head (in layer 1 or later) attends from a token to the token that followed the
same token earlier, and copies it; it finds that position because its keys read what a
previous-token head of an earlier layer wrote there ("the token before me was X"). Three
measurements name the two heads and back the claim:

- the head scores (`minigpt.probes.head_scores`): the induction head is the later-layer head
  with the highest induction score, far above uniform attention's; the previous-token head is
  the earlier-layer head with the highest previous-token score;
- K-composition (`minigpt.probes.composition_scores`): how much the induction head's keys read
  each earlier head's output; the previous-token head should be the one it reads most;
- ablation on text written twice (`minigpt.analysis.ablation.repeat_ablation`): removing either
  head raises the loss on the repeated copy far more than on the first; and removing the
  previous-token head's output from what the induction layer's keys read, and from nothing else
  (`keys_without`), costs on the repeated copy much of what removing the head altogether does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from minigpt.analysis.ablation import Part, repeat_ablation
from minigpt.model import GPT
from minigpt.probes import composition_scores, position_losses, repeat_losses, uniform_induction

# an induction head's score is at least this many times what uniform attention scores
INDUCTION_FACTOR = 3.0


def induction_circuit(model: GPT, scores: dict[str, torch.Tensor], repeated: torch.Tensor) -> dict | None:
    """The induction head, the previous-token head it reads from and the evidence, as plain
    values (`scores` from `head_scores`; the ablation runs on `repeated` (n, 2P), text written
    twice). `found` is False when no head's induction score reaches INDUCTION_FACTOR times
    uniform attention's; None for a one-layer model, which has no earlier layer to read."""
    n_layer, nh = model.config.n_layer, model.config.n_head
    if n_layer < 2:
        return None
    uniform = uniform_induction(model.config.block_size // 2)
    later = scores["induction"][1:].nan_to_num(-1.0)
    layer, head = divmod(int(later.argmax()), nh)
    layer += 1
    induction = Part("head", layer, head)
    result = {
        "found": False,
        "induction_head": induction.name,
        "induction_score": float(scores["induction"][layer, head]),
        "uniform_induction": uniform,
        "threshold": INDUCTION_FACTOR * uniform,
    }
    if result["induction_score"] < result["threshold"]:
        return result
    prev_layer, prev_head = divmod(int(scores["previous"][:layer].nan_to_num(-1.0).argmax()), nh)
    previous = Part("head", prev_layer, prev_head)
    k_comp = composition_scores(model, "k")[layer, head, :layer]
    q_comp = composition_scores(model, "q")[layer, head, :layer]
    names = [f"L{i}H{h}" for i in range(layer) for h in range(nh)]
    result.update(
        found=True,
        previous_head=previous.name,
        previous_score=float(scores["previous"][prev_layer, prev_head]),
        k_composition=dict(zip(names, k_comp.flatten().tolist())),
        q_composition=dict(zip(names, q_comp.flatten().tolist())),
        ablation=repeat_ablation(model, [induction, previous], repeated)
        + [key_path_row(model, previous, layer, repeated)],
    )
    return result


@contextmanager
def keys_without(model: GPT, writer: Part, reader_layer: int) -> Iterator[GPT]:
    """The model with head `writer`'s output removed from the input of layer `reader_layer`'s keys
    only: its queries and values, and every other layer, still read the whole residual stream.
    Forward hooks record what the head adds to the stream (its slice of attn.c_proj, bias left
    out) and the reader block's input, and recompute the keys from that input minus the head's
    output."""
    C, hs = model.config.n_embd, model.config.head_size
    cols = slice(writer.head * hs, (writer.head + 1) * hs)
    block = model.transformer.h[reader_layer]
    seen: dict[str, torch.Tensor] = {}

    def keep_written(module, args):
        seen["written"] = args[0][..., cols] @ module.weight[:, cols].T  # (B, T, C)

    def keep_input(module, args, kwargs):
        seen["x"] = args[0] if args else kwargs["x"]  # the residual stream entering the block

    def swap_keys(module, args, output):
        h = block.ln_1(seen["x"] - seen["written"])
        if getattr(block, "conv_1", None) is not None:  # a lever model (minigpt.levers) convolves first
            h = block.conv_1(h)
        k = F.linear(h, module.weight[C : 2 * C], None if module.bias is None else module.bias[C : 2 * C])
        return torch.cat([output[..., :C], k, output[..., 2 * C :]], dim=-1)

    handles = [
        model.transformer.h[writer.layer].attn.c_proj.register_forward_pre_hook(keep_written),
        block.register_forward_pre_hook(keep_input, with_kwargs=True),
        block.attn.c_attn.register_forward_hook(swap_keys),
    ]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def key_path_row(model: GPT, writer: Part, reader_layer: int, repeated: torch.Tensor) -> dict:
    """A row of `repeat_ablation`'s table for `keys_without(model, writer, reader_layer)`."""
    period = repeated.size(1) // 2
    base_first, base_again = repeat_losses(position_losses(model, repeated), period)
    with keys_without(model, writer, reader_layer):
        first, again = repeat_losses(position_losses(model, repeated), period)
    return {
        "removed": f"{writer.name} from L{reader_layer}'s keys only",
        "first_copy": first,
        "repeated_copy": again,
        "first_increase": first - base_first,
        "repeated_increase": again - base_again,
    }


def circuit_summary(circuit: dict | None) -> str:
    """One sentence naming the circuit, or saying why there is none."""
    if circuit is None:
        return "no induction circuit: a one-layer model has no earlier layer for an induction head to read"
    if not circuit["found"]:
        return (
            f"no induction head: the highest induction score in layers 1 and up is {circuit['induction_score']:.3f} "
            f"({circuit['induction_head']}), below {circuit['threshold']:.3f} ({INDUCTION_FACTOR:g} x uniform "
            f"attention's {circuit['uniform_induction']:.3f})"
        )
    k = circuit["k_composition"]
    top = max(k, key=k.get)
    return (
        f"induction head {circuit['induction_head']} (induction score {circuit['induction_score']:.3f}, uniform "
        f"{circuit['uniform_induction']:.3f}) reads the previous-token head {circuit['previous_head']} (previous-token "
        f"score {circuit['previous_score']:.3f}): K-composition {k[circuit['previous_head']]:.3f}, the highest of "
        f"the earlier heads being {top}'s"
    )


def circuit_markdown(circuit: dict | None) -> list[str]:
    """The lines of index.md's section on the induction circuit."""
    lines = ["## The induction circuit", "", circuit_summary(circuit) + ".", ""]
    if not circuit or not circuit["found"]:
        return lines
    lines += [
        "How much the induction head's keys (K) and queries (Q) read each earlier head's output: "
        "||W_QK W_OV||_F / (||W_QK||_F ||W_OV||_F) for K, with W_QK transposed for Q "
        "(Elhage et al., 2021).",
        "",
        "| earlier head | K-composition | Q-composition |",
        "|---|---|---|",
    ]
    for name, k in circuit["k_composition"].items():
        lines.append(f"| {name} | {k:.3f} | {circuit['q_composition'][name]:.3f} |")
    lines += [
        "",
        "Loss (nats) on validation text written twice (the first half of each window, then the "
        "same again), with heads zero-ablated: the context holds no copy of the first copy, and "
        "one of the repeated copy.",
        "",
        "| removed | first copy | repeated copy | Δ first | Δ repeated |",
        "|---|---|---|---|---|",
    ]
    for row in circuit["ablation"]:
        cells = [row["removed"], f"{row['first_copy']:.3f}", f"{row['repeated_copy']:.3f}"]
        cells += [f"{row[k]:+.3f}" if k in row else "–" for k in ("first_increase", "repeated_increase")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def phase_change_step(scalars: dict[str, list[tuple[int, float]]], threshold: float) -> int | None:
    """The first logged step at which a head of layer 1 or later has an induction score of at
    least `threshold`, from a run's TensorBoard scalars (`minigpt.figures.read_scalars`); None
    when none ever does."""
    steps = [
        step
        for tag, points in scalars.items()
        if tag.startswith("view/heads/induction/L") and not tag.startswith("view/heads/induction/L0H")
        for step, value in points
        if value >= threshold
    ]
    return min(steps, default=None)
