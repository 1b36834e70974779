"""The M4 competition's scoring and its statistical benchmarks, for many series at once.

Scores, as the competition computes them (Makridakis et al., 2020):
  sMAPE = mean_t 200 |y_t - f_t| / (|y_t| + |f_t|)
  MASE  = mean_t |y_t - f_t| / mean_{t>m} |x_t - x_{t-m}|   (x: the series' history, m: its frequency)
  OWA   = (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2, from the averages over all series.

Benchmarks: Naive2 (the last value of the seasonally adjusted history, re-seasonalised),
seasonal naive, and Theta (simple exponential smoothing plus half the linear trend, on the adjusted
history). Seasonal adjustment is classical multiplicative decomposition, applied only when the
lag-m autocorrelation is significant at 90% and the history holds at least three seasons.
"""

from __future__ import annotations

import math

import numpy as np

#: smoothing parameters searched for simple exponential smoothing (Theta)
ALPHAS = np.concatenate([np.arange(0.01, 0.1, 0.01), np.arange(0.1, 1.0001, 0.025)])


# ---- scores -----------------------------------------------------------------------------------------
def smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Per series (rows), in percent; a point where both are 0 counts 0."""
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(np.abs(actual - forecast), denominator, out=np.zeros_like(denominator, dtype=np.float64), where=denominator > 0)
    return 200.0 * ratio.mean(axis=1)


def mase_scales(histories: list[np.ndarray], m: int) -> np.ndarray:
    """Mean absolute seasonal difference of each history (lag m; lag 1 when the history is not
    longer than m). A constant history gets 1, so its MASE is its mean absolute error."""
    out = np.empty(len(histories))
    for i, x in enumerate(histories):
        lag = m if len(x) > m else 1
        scale = np.abs(x[lag:] - x[:-lag]).mean() if len(x) > lag else 0.0
        out[i] = scale if scale > 0 else 1.0
    return out


def mase(actual: np.ndarray, forecast: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return np.abs(actual - forecast).mean(axis=1) / scales


def owa(smape_mean: float, mase_mean: float, naive2_smape: float, naive2_mase: float) -> float:
    return 0.5 * (smape_mean / naive2_smape + mase_mean / naive2_mase)


def score_table(actual: np.ndarray, forecasts: dict[str, np.ndarray], scales: np.ndarray) -> tuple[list[dict], dict[str, dict]]:
    """Overall rows (method, sMAPE, MASE, OWA against 'naive2', which must be among the forecasts)
    and per-series scores {method: {"smape": array, "mase": array}}."""
    per = {name: {"smape": smape(actual, f), "mase": mase(actual, f, scales)} for name, f in forecasts.items()}
    base = per["naive2"]
    ref_s, ref_m = float(base["smape"].mean()), float(base["mase"].mean())
    rows = []
    for name, scores in per.items():
        s, m = float(scores["smape"].mean()), float(scores["mase"].mean())
        rows.append({"method": name, "smape": s, "mase": m, "owa": owa(s, m, ref_s, ref_m)})
    return rows, per


# ---- seasonal adjustment ------------------------------------------------------------------------------
def acf(x: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelations at lags 1..lags (the usual biased estimator)."""
    d = x - x.mean()
    denominator = float(d @ d)
    if denominator == 0:
        return np.zeros(lags)
    return np.array([float(d[k:] @ d[:-k]) / denominator for k in range(1, lags + 1)])


def is_seasonal(x: np.ndarray, m: int) -> bool:
    """The M4 test: |r_m| > 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / n), on at least three seasons."""
    if m <= 1 or len(x) < 3 * m:
        return False
    r = acf(x, m)
    return bool(abs(r[m - 1]) > 1.645 * math.sqrt((1 + 2 * float((r[: m - 1] ** 2).sum())) / len(x)))


def seasonal_indices(x: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative decomposition: the mean ratio of each season position to the
    centred moving average, normalised to average 1. Index j belongs to positions t with t % m == j."""
    if m % 2 == 0:
        weights = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        weights = np.ones(m) / m
    trend = np.convolve(x, weights, mode="valid")
    offset = (len(weights) - 1) // 2
    ratios = x[offset : offset + len(trend)] / trend
    positions = np.arange(offset, offset + len(trend)) % m
    index = np.array([ratios[positions == j].mean() for j in range(m)])
    return index / index.mean()


def adjust(history: np.ndarray, m: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(seasonally adjusted history, the seasonal factors of the next `horizon` points); factors of 1
    when the series is not seasonal (or has non-positive values, which a multiplicative model cannot take)."""
    if not is_seasonal(history, m) or (history <= 0).any():
        return history, np.ones(horizon)
    index = seasonal_indices(history, m)
    n = len(history)
    return history / index[np.arange(n) % m], index[np.arange(n, n + horizon) % m]


# ---- benchmarks -----------------------------------------------------------------------------------------
def seasonal_naive(histories: list[np.ndarray], horizon: int, m: int) -> np.ndarray:
    out = np.empty((len(histories), horizon))
    for i, x in enumerate(histories):
        lag = m if len(x) >= m else 1
        out[i] = x[len(x) - lag + np.arange(horizon) % lag]
    return out


def naive2(histories: list[np.ndarray], horizon: int, m: int) -> np.ndarray:
    out = np.empty((len(histories), horizon))
    for i, x in enumerate(histories):
        adjusted, factors = adjust(x, m, horizon)
        out[i] = adjusted[-1] * factors
    return out


def padded(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned (n, longest) matrix, the part before each series' start holding its first value,
    and each series' start column."""
    longest = max(len(x) for x in histories)
    out = np.empty((len(histories), longest))
    starts = np.empty(len(histories), dtype=np.int64)
    for i, x in enumerate(histories):
        starts[i] = longest - len(x)
        out[i, : starts[i]] = x[0]
        out[i, starts[i] :] = x
    return out, starts


def ses(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Simple exponential smoothing of every series at once: (final level, alpha), alpha chosen from
    ALPHAS by the one-step squared error, the level starting at the first value."""
    y, starts = padded(histories)
    n, length = y.shape
    alphas = ALPHAS[:, None]
    level = np.repeat(y[np.arange(n), starts][None, :], len(ALPHAS), axis=0)
    sse = np.zeros((len(ALPHAS), n))
    for t in range(1, length):
        active = t > starts
        error = y[:, t] - level
        sse += np.where(active, error * error, 0.0)
        level = np.where(active, level + alphas * error, level)
    best = sse.argmin(axis=0)
    return level[best, np.arange(n)], ALPHAS[best]


def theta(histories: list[np.ndarray], horizon: int, m: int) -> np.ndarray:
    """The M4 Theta benchmark: SES on the adjusted history, plus half its least-squares slope with
    the usual correction for the smoothing's lag, re-seasonalised."""
    adjusted, factors = zip(*(adjust(x, m, horizon) for x in histories))
    level, alpha = ses(list(adjusted))
    out = np.empty((len(histories), horizon))
    steps = np.arange(horizon)
    for i, x in enumerate(adjusted):
        n = len(x)
        slope = np.polyfit(np.arange(n), x, 1)[0] if n > 1 else 0.0
        a = alpha[i]
        out[i] = (level[i] + 0.5 * slope * (steps + (1 - (1 - a) ** n) / a)) * factors[i]
    return out
