"""What every side-by-side ensemble answers: the mean of its members' probabilities, as logs."""

from __future__ import annotations

import math

import torch


def log_mean_probability(logits: torch.Tensor) -> torch.Tensor:
    """Members' logits stacked on dim 0 -> log of their mean softmax, so that a softmax (or a cross
    entropy) of the result reads that mean; computed in float32 and in log space, never underflowing."""
    return logits.float().log_softmax(-1).logsumexp(0) - math.log(logits.shape[0])
