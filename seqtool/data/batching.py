"""Minibatches for language modeling: labels are the inputs shifted by one token.

Both schemes start at a random offset in [0, steps) so every epoch sees different windows.
- random: subsequences are shuffled; each batch starts from a fresh hidden state.
- sequential: row i of batch k+1 continues row i of batch k, so the hidden state is carried over
  (and detached: truncated BPTT).
Batches are time-major (steps, batch): the layout torch's fused recurrent layers prefer. The ids
may be a memory-mapped store of small unsigned ints: only each batch is copied out, as int64.
"""

from __future__ import annotations

from typing import Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def _offset(steps: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, steps, (1,), generator=generator))


def sequential_batches(ids: torch.Tensor, batch: int, steps: int, generator: torch.Generator) -> Iterator[Batch]:
    offset = _offset(steps, generator)
    usable = ((ids.numel() - offset - 1) // batch) * batch
    if usable < batch:
        return
    xs = ids[offset : offset + usable].view(batch, -1).t()
    ys = ids[offset + 1 : offset + 1 + usable].view(batch, -1).t()
    for start in range(0, xs.shape[0] - steps + 1, steps):
        yield xs[start : start + steps].long(), ys[start : start + steps].long()


def random_batches(ids: torch.Tensor, batch: int, steps: int, generator: torch.Generator) -> Iterator[Batch]:
    offset = _offset(steps, generator)
    count = (ids.numel() - offset - 1) // steps
    starts = offset + steps * torch.randperm(count, generator=generator)
    window = torch.arange(steps)
    for first in range(0, count - batch + 1, batch):
        rows = starts[first : first + batch, None] + window  # (batch, steps) indices
        yield ids[rows].t().long(), ids[rows + 1].t().long()


def num_batches(n_tokens: int, batch: int, steps: int, sampling: str) -> int:
    """Batches per epoch, at the least favourable offset (steps - 1)."""
    if sampling == "sequential":
        return ((n_tokens - steps) // batch) // steps
    return ((n_tokens - steps) // steps) // batch


def make_batches(ids: torch.Tensor, batch: int, steps: int, sampling: str, generator: torch.Generator) -> Iterator[Batch]:
    if sampling == "sequential":
        return sequential_batches(ids, batch, steps, generator)
    return random_batches(ids, batch, steps, generator)
