"""The simple forecasters every report compares against, scored on exactly the points the network
is: naive, seasonal naive and drift (statistical.py has AutoETS, AutoARIMA and AutoTheta).

table[i, j] is the forecast for x[origins[i] + j + 1] made from x[..origins[i]] alone.
"""

from __future__ import annotations

import numpy as np


def naive_table(x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
    return np.repeat(x[np.asarray(origins)][:, None], steps, axis=1)


def seasonal_naive_table(x: np.ndarray, origins: list[int], steps: int, season: int) -> np.ndarray:
    """The latest value of the same season known at the origin."""
    o = np.asarray(origins)[:, None]
    j = np.arange(1, steps + 1)[None, :]
    return x[o + j - season * np.ceil(j / season).astype(int)]


def drift_table(x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
    """The line through the first value and the origin's value, extended (random walk with drift)."""
    o = np.asarray(origins)
    slope = (x[o] - x[0]) / np.maximum(o, 1)
    return x[o][:, None] + slope[:, None] * np.arange(1, steps + 1)[None, :]


def autocorrelation(y: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations r_0..r_max_lag."""
    d = y - y.mean()
    denom = float(d @ d) or 1.0
    return np.array([float(d[k:] @ d[: len(d) - k]) / denom for k in range(max_lag + 1)])

