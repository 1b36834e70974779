"""What one epoch of training accumulates, kept on the device so that a step never waits for it:
the loss summed over items, the item count, gradient norms, clipped steps and the first step whose
loss or gradients were non-finite. Read back (one host sync) when an epoch ends, saved mid-epoch
in checkpoints, and summed across processes under DDP."""

from __future__ import annotations

import torch


class EpochSums:
    def __init__(self, device: torch.device, partial: dict | None = None, skipped: int = 0, steps: int = 0):
        """`partial`: the sums a checkpoint saved mid-epoch ([ddp] one process takes them up)."""
        zero = torch.zeros((), device=device)
        saved = {k: torch.tensor(v, device=device) for k, v in (partial or {}).items() if k in ("loss", "count", "norm", "clipped", "bad_step")}
        self.loss, self.count = saved.get("loss", zero.clone()), saved.get("count", zero.clone())
        self.norm, self.clipped = saved.get("norm", zero.clone()), saved.get("clipped", zero.clone())
        self.bad_step = saved.get("bad_step", zero.clone() - 1)
        self.skipped, self.steps = skipped, steps

    def add(self, loss: torch.Tensor, count, norm: torch.Tensor, finite: torch.Tensor, step: int, clip: float | None) -> None:
        """One optimizer step's contribution (no host sync)."""
        self.bad_step = torch.where((self.bad_step < 0) & ~finite, float(step), self.bad_step)
        self.loss += loss * count
        self.count += count
        self.norm += norm
        if clip is not None:
            self.clipped += (norm > clip).to(self.clipped.dtype)
        self.steps += 1

    def mean_loss(self) -> float:
        """The epoch's mean loss so far (a host sync: for the live display only)."""
        return float(self.loss / self.count.clamp_min(1))

    def reduce(self, dist) -> dict:
        """Plain numbers for the metrics row and the checkpoint ([ddp] losses and counts summed over processes)."""
        reduced = dist.reduce_sums({"loss": self.loss, "count": self.count, "bad_step": self.bad_step})
        return {"loss": float(reduced["loss"]), "count": float(reduced["count"]), "norm": float(self.norm),
                "clipped": float(self.clipped), "bad_step": float(reduced["bad_step"]), "skipped": self.skipped, "steps": self.steps}
