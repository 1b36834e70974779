"""Point-forecast error measures, in the series' original units.

MASE divides the MAE by the in-sample MAE of the seasonal-naive forecast on the training part, so
1.0 means "as good as repeating last season's value" and the number is comparable across series.
"""

from __future__ import annotations

import torch

from seqtool.forecast.m4 import smape as smape_rows


def _pair(forecast: torch.Tensor, actual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f, a = torch.as_tensor(forecast, dtype=torch.float64), torch.as_tensor(actual, dtype=torch.float64)
    if f.shape != a.shape:
        raise ValueError(f"forecast and actual differ in shape: {tuple(f.shape)} vs {tuple(a.shape)}")
    return f, a


def mse(forecast, actual) -> float:
    f, a = _pair(forecast, actual)
    return float(((f - a) ** 2).mean()) if f.numel() else float("nan")


def mae(forecast, actual) -> float:
    f, a = _pair(forecast, actual)
    return float((f - a).abs().mean()) if f.numel() else float("nan")


def smape(forecast, actual) -> float:
    """Symmetric MAPE in percent (0..200): mean of 2|F - A| / (|A| + |F|); a point where both are 0
    counts as 0 (a perfect forecast of zero)."""
    f, a = _pair(forecast, actual)
    if not f.numel():
        return float("nan")
    return float(smape_rows(  # the one definition (M4's), for rows of series
        a.double().reshape(1, -1).numpy(), f.double().reshape(1, -1).numpy())[0])


def seasonal_naive_scale(train, season: int = 1) -> float:
    """In-sample MAE of x̂_t = x_{t-m} over the training part (the MASE denominator)."""
    x = torch.as_tensor(train, dtype=torch.float64)
    if season < 1:
        raise ValueError("season must be >= 1")
    if len(x) <= season:
        return float("nan")
    return float((x[season:] - x[:-season]).abs().mean())


def mase(forecast, actual, scale: float) -> float:
    """MAE / scale; nan when the scale is 0 or undefined (a training part that repeats exactly)."""
    if not scale or scale != scale:
        return float("nan")
    return mae(forecast, actual) / scale


def all_metrics(forecast, actual, scale: float) -> dict[str, float]:
    return {"mse": mse(forecast, actual), "mae": mae(forecast, actual), "smape": smape(forecast, actual), "mase": mase(forecast, actual, scale)}


def rmse(forecast, actual) -> float:
    value = mse(forecast, actual)
    return value ** 0.5 if value == value else value


def point_metrics(forecast, actual, scale: float) -> dict[str, float]:
    """Every point measure the report gives: MSE, MAE, RMSE, sMAPE and MASE."""
    return {**all_metrics(forecast, actual, scale), "rmse": rmse(forecast, actual)}


def interval_scores(low, high, actual, level: int, scale: float) -> dict[str, float]:
    """Empirical coverage of a level-% interval and its scaled interval score (MSIS, as in the M4
    competition: width plus 2/alpha times each miss, over the MASE scale)."""
    lo, hi, a = (torch.as_tensor(v, dtype=torch.float64) for v in (low, high, actual))
    if not a.numel():
        return {f"coverage-{level}": float("nan"), f"msis-{level}": float("nan")}
    alpha = 1 - level / 100
    score = (hi - lo) + 2 / alpha * (lo - a).clamp_min(0) + 2 / alpha * (a - hi).clamp_min(0)
    inside = ((a >= lo) & (a <= hi)).double().mean()
    return {f"coverage-{level}": float(inside), f"msis-{level}": float(score.mean()) / scale if scale else float("nan")}
