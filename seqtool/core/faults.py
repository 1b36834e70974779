"""What training does when something goes wrong: non-finite losses or gradients (`--on-nan`) and
running out of memory. The trainer calls these; the policies and their messages live here.

--on-nan stop      (default) stop with the step named; the last checkpoint is never overwritten
                   by a model that has seen a non-finite update
--on-nan skip      drop that batch's update (no optimizer step) and go on; stops after
                   MAX_CONSECUTIVE_SKIPS bad batches in a row
--on-nan rollback  reload the last checkpoint, halve the learning rate and go on; stops after
                   MAX_ROLLBACKS rollbacks
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import torch

from seqtool.core.errors import SeqtoolError

#: stop/rollback look at the on-device "first bad step" every this many steps (one host sync)
CHECK_EVERY = 32
MAX_CONSECUTIVE_SKIPS = 20
MAX_ROLLBACKS = 8
REMEDY = "try a lower --lr, --clip 1, or --on-nan skip|rollback"


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every element of every tensor is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


def nonfinite_error(step: int, epoch: int, checkpoint: Path, checkpoint_step: int | None) -> SeqtoolError:
    kept = (f"the last good checkpoint (step {checkpoint_step}) is intact in {checkpoint}" if checkpoint_step is not None
            else "no checkpoint was written")
    return SeqtoolError(f"loss or gradients became non-finite at step {step} (epoch {epoch}); {kept}; {REMEDY}")


class SkipGuard:
    """Counts skipped batches; too many in a row means skipping cannot help."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_SKIPS):
        self.limit, self.in_a_row, self.first = limit, 0, None

    def ok(self) -> None:
        self.in_a_row, self.first = 0, None

    def skipped(self, step: int) -> None:
        if self.in_a_row == 0:
            self.first = step
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            raise SeqtoolError(
                f"loss or gradients were non-finite for {self.in_a_row} batches in a row (steps {self.first}-{step}); "
                f"skipping cannot fix that: check the data, or try a lower --lr or --clip 1"
            )


class NanPolicy:
    """--on-nan as the training step sees it: whether to drop a batch's update, and when to look at
    the on-device record of non-finite steps (stop/rollback)."""

    def __init__(self, mode: str):
        self.mode, self.guard = mode, SkipGuard()

    def skip(self, finite: torch.Tensor, dist, step: int) -> bool:
        """--on-nan skip: True when this batch's update must be dropped (one host sync per step;
        [ddp] all processes skip together)."""
        if self.mode != "skip":
            return False
        if dist.any(~finite):
            self.guard.skipped(step)
            return True
        self.guard.ok()
        return False

    def check_now(self, step: int) -> bool:
        """stop/rollback: time to look whether a step went non-finite (no point training on from one)."""
        return self.mode != "skip" and step % CHECK_EVERY == 0


def rollback_limit_error(step: int, rollbacks: int) -> SeqtoolError:
    return SeqtoolError(
        f"loss or gradients became non-finite at step {step} again after {rollbacks} rollbacks "
        f"(learning rate already divided by {2 ** rollbacks}); check the data, or try --clip 1 or a much lower --lr"
    )


def resource_error(exc: BaseException, what: str) -> SeqtoolError | None:
    """Out of memory (host or device) -> one clear line; None for any other error."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    oom = isinstance(exc, MemoryError) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower()))
    if not oom:
        return None
    asked = re.search(r"tried to allocate (\d+) bytes", text)
    detail = f"it asked for {int(asked.group(1)) / 2**30:,.1f} GiB" if asked else text[:120]
    return SeqtoolError(f"out of memory {what} ({detail}); use a smaller --hidden, --layers, --embed or --batch")
