"""Side-by-side ensembles (label.model.Ensemble, seq2seq.Seq2SeqEnsemble): their members, and what
they answer, the mean of the members' probabilities as logs."""

from __future__ import annotations

import math

import torch
from torch import nn


def log_mean_probability(logits: torch.Tensor) -> torch.Tensor:
    """Members' logits stacked on dim 0 -> log of their mean softmax, so that a softmax (or a cross
    entropy) of the result reads that mean; computed in float32 and in log space, never underflowing."""
    return logits.float().log_softmax(-1).logsumexp(0) - math.log(logits.shape[0])


def members_of(model: nn.Module) -> list[nn.Module]:
    """The networks inside a (DDP-wrapped) network or side-by-side ensemble (one that keeps them in
    a ModuleList named members)."""
    model = getattr(model, "module", model)
    members = getattr(model, "members", None)
    return list(members) if isinstance(members, nn.ModuleList) else [model]
