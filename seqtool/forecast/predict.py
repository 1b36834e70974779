"""Prediction procedures of a network on a series: one-step-ahead, recursive multi-step and
k-step-ahead (the baselines' own tables are in seqtool/forecast/baselines.py).

Indices are 0-based positions in the series. "Origin o" means the forecaster has seen x[0..o] and
nothing after; a k-step-ahead prediction for position t comes from origin t - k.
"""

from __future__ import annotations

import math

import torch

from seqtool.nn.forecaster import Forecaster
from seqtool.forecast.series import Transform


@torch.no_grad()
def forecast_from(model: Forecaster, x: torch.Tensor, origins: list[int], steps: int) -> torch.Tensor:
    """P[i, j] = prediction for x[origins[i] + j + 1], made from x[..origins[i]] alone and fed
    its own predictions for the j steps in between. Returns (len(origins), steps), in x's units
    and on x's device (the model may live elsewhere)."""
    param = next(model.parameters())
    out = torch.empty(len(origins), steps, dtype=x.dtype, device=x.device)
    by_length: dict[int, list[int]] = {}
    for i, o in enumerate(origins):
        if not 0 <= o < len(x):
            raise ValueError(f"origin {o} outside the series (length {len(x)})")
        length = min(o + 1, model.context)
        if length < model.min_context:
            raise ValueError(f"origin {o} has {o + 1} values before it; the model needs {model.min_context}")
        by_length.setdefault(length, []).append(i)
    for length, rows in by_length.items():
        starts = torch.tensor([origins[i] - length + 1 for i in rows], device=x.device)
        segments = x[starts[:, None] + torch.arange(length, device=x.device)]
        out[rows] = model.rollout(segments.to(param.device, param.dtype), steps).to(x.device, x.dtype)
    return out


def forecast_table(model: Forecaster, x: torch.Tensor, origins: list[int], steps: int, transform: Transform | None = None) -> torch.Tensor:
    """forecast_from on the original series: the model runs on transform.forward(x) (whose index
    is shifted by the differencing lag) and its forecasts come back in x's units."""
    if transform is None:
        return forecast_from(model, x, origins, steps)
    table = forecast_from(model, transform.forward(x), [o - transform.lag for o in origins], steps)
    return transform.to_original(table, x, origins)


def min_history(model: Forecaster, transform: Transform | None = None) -> int:
    """Values of x a forecast needs before it: the model's own minimum plus the differencing lag."""
    return model.min_context + (transform.lag if transform else 0)


def k_step(model: Forecaster, x: torch.Tensor, targets: list[int], ks: list[int], transform: Transform | None = None) -> dict[int, torch.Tensor]:
    """For every k: the predictions for positions `targets`, each made k steps earlier (from t - k).
    One batched rollout of max(ks) steps from every origin needed serves all k at once."""
    if not targets:
        return {k: x.new_zeros(0) for k in ks}
    kmax = max(ks)
    need = min_history(model, transform)
    lo = max(min(targets) - kmax, need - 1)
    origins = list(range(lo, max(targets)))
    table = forecast_table(model, x, origins, kmax, transform)
    result = {}
    for k in ks:
        o = torch.tensor([t - k for t in targets])
        if (o < lo).any():
            raise ValueError(f"k={k}: some targets have fewer than {need} values {k} steps earlier")
        result[k] = table[o - lo, k - 1]
    return result


def one_step(model: Forecaster, x: torch.Tensor, targets: list[int], transform: Transform | None = None) -> torch.Tensor:
    """Each prediction from the true history just before it."""
    return k_step(model, x, targets, [1], transform)[1]


def eval_targets(n_train: int, n: int, k: int, need: int, season: int) -> list[int]:
    """Test positions t >= n_train where the model (needs `need` values up to t - k) and both
    baselines have a forecast k steps ahead, so every method is scored on the same points."""
    back = max(k, season * math.ceil(k / season))
    return [t for t in range(n_train, n) if t - k + 1 >= need and t - back >= 0]
