"""How far back backpropagation through time goes: full, fixed truncation, or randomized truncation.

Backpropagating through a whole sequence is exact but its memory grows with the length; cutting
the graph every `num_steps` (truncated BPTT) bounds the memory but biases the gradient towards short
dependencies. Randomized truncation (Tallec & Ollivier 2017, "Unbiasing truncated backpropagation
through time"; d2l §9.7) cuts at random places and scales the gradient that survives a step
boundary by 1/P(no cut there), so that on average it equals the full gradient.

The scheme used here: every boundary between two steps is cut independently with probability
q = 1/num_steps, so segment lengths are geometric with mean num_steps. Where there is no cut the
gradient flowing back into the earlier step is multiplied by 1/c, c = 1 − q. A term of the full
gradient linking the loss at step s to step t < s survives with probability c^(s−t) and is scaled
by c^−(s−t) when it does: its expectation is the full term. The price is variance: long-range
terms are rare and come with large factors (about e^((s−t)/num_steps)).

Entry point: `truncated_backward(run_chunk, length, ...)` runs a model over one sequence with the
chosen strategy, calls backward() on each segment as soon as it is complete (freeing its graph), and
returns the mean loss per step and the detached final state; the caller then clips and steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

STRATEGIES = ("fixed", "random", "full")

#: run_chunk(start, stop, state) -> (sum of the per-step losses of steps start..stop-1, state after stop-1)
RunChunk = Callable[[int, int, Any], tuple[torch.Tensor, Any]]


@dataclass
class Truncated:
    """Result of one truncated backward pass: loss is the detached mean per step."""

    loss: torch.Tensor
    state: Any
    segments: list[tuple[int, int]]


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by `factor` in the backward pass."""
    return _ScaleGrad.apply(x, factor)


def _map(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(_map(s, fn) for s in state)
    return fn(state)


def keep_probability(num_steps: int) -> float:
    """c = P(a boundary is not cut) = 1 − 1/num_steps, so segments average num_steps steps."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    return 1.0 - 1.0 / num_steps


def segments_from_cuts(length: int, cuts: Sequence[int]) -> list[tuple[int, int]]:
    """Cuts are the steps (1..length-1) where a new segment starts; returns [start, stop) pairs."""
    bounds = [0, *sorted(set(cuts)), length]
    if any(not 0 < c < length for c in cuts):
        raise ValueError(f"cuts must lie in 1..{length - 1}")
    return list(zip(bounds[:-1], bounds[1:]))


def fixed_segments(length: int, num_steps: int) -> list[tuple[int, int]]:
    """Truncated BPTT: a cut every num_steps steps."""
    return segments_from_cuts(length, range(num_steps, length, num_steps))


def draw_cuts(length: int, num_steps: int, generator: torch.Generator | None = None) -> list[int]:
    """Random cut positions: each boundary 1..length-1 independently with probability 1/num_steps.

    The segment lengths are then geometric with mean num_steps (truncated by the sequence end).
    Drawn on the CPU from `generator`, so a seed replays them and no device sync is needed.
    """
    q = 1.0 - keep_probability(num_steps)
    hits = torch.rand(max(length - 1, 0), generator=generator) < q
    return (hits.nonzero().flatten() + 1).tolist()


def truncated_backward(
    run_chunk: RunChunk,
    length: int,
    state: Any = None,
    strategy: str = "fixed",
    num_steps: int = 35,
    generator: torch.Generator | None = None,
    cuts: Sequence[int] | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> Truncated:
    """Accumulate into .grad the gradient of (1/length) Σ_t loss_t under a truncation strategy.

    `run_chunk(start, stop, state)` runs the model over steps start..stop-1 from `state` and returns
    the sum of their per-step losses and the state after the last of them. For a language model:

        def run_chunk(a, b, h):
            logits, h = model(x[a:b], h)
            return F.cross_entropy(logits.flatten(0, 1), y[a:b].flatten(), reduction="sum") / y.shape[1], h

    Strategies, their gradient, and the memory their graphs hold at once (activations of the
    recurrent stack plus whatever the loss keeps per step, e.g. batch × vocabulary logits):
      full   exact gradient; one backward at the end; memory O(length).
      fixed  truncated BPTT, a cut every num_steps steps; biased towards short dependencies;
             memory O(num_steps), each segment's graph is freed by its backward.
      random unbiased (see the module docstring); cuts drawn by `draw_cuts` from `generator`
             (or given as `cuts`); memory O(segment length): num_steps on average, about
             num_steps·ln(length/num_steps) for the longest segment of a sequence, length at worst.
             The model runs one step per run_chunk call, since the compensation factor applies
             at every step boundary; with fused kernels that costs per-call overhead, not memory.

    `backward(loss)` replaces loss.backward() (e.g. a trainer's loss scaling). The incoming state
    is treated as a cut (detached). Returns the detached mean loss per step, the
    detached final state and the segments used.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown truncation {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if length < 1:
        raise ValueError("length must be at least 1")
    if strategy == "full":
        segments = [(0, length)]
    elif strategy == "fixed":
        segments = fixed_segments(length, num_steps)
    else:
        segments = segments_from_cuts(length, draw_cuts(length, num_steps, generator) if cuts is None else cuts)
    keep = keep_probability(num_steps)
    total = None
    state = _map(state, torch.Tensor.detach)
    for start, stop in segments:
        if strategy == "random":
            loss = None
            for t in range(start, stop):
                if t > start:  # an uncut boundary: compensate for the cuts it could have had
                    state = _map(state, lambda s: scale_grad(s, 1.0 / keep))
                step_loss, state = run_chunk(t, t + 1, state)
                loss = step_loss if loss is None else loss + step_loss
        else:
            loss, state = run_chunk(start, stop, state)
        (backward or torch.Tensor.backward)(loss / length)
        loss = loss.detach()
        total = loss if total is None else total + loss
        state = _map(state, torch.Tensor.detach)
    return Truncated(loss=total / length, state=state, segments=segments)
