"""Statistical forecasters every report compares against, scored on exactly the points the network
is: naive, seasonal naive, drift, ETS and Theta (statsmodels).

Each baseline is fitted once on a training prefix and then forecasts from many origins with its
parameters fixed (rolling-origin evaluation without refitting): table[i, j] is the forecast for
x[origins[i] + j + 1] made from x[..origins[i]] alone.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

#: ETS with a seasonal component estimates one initial state per season position; past this many
#: (as R's ets) the seasonal forms are not tried
MAX_ETS_SEASON = 24


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


@dataclass
class ETS:
    """An ETS model chosen by AICc over error (A/M), trend (none/A/damped A) and season (none/A/M)."""

    error: str
    trend: str | None
    damped: bool
    seasonal: str | None
    season: int
    params: np.ndarray

    @property
    def name(self) -> str:
        t = "N" if self.trend is None else ("Ad" if self.damped else "A")
        s = "N" if self.seasonal is None else self.seasonal[0].upper()
        return f"ETS({self.error[0].upper()},{t},{s})"

    def _model(self, y: np.ndarray):
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        return ETSModel(y, error=self.error, trend=self.trend, damped_trend=self.damped, seasonal=self.seasonal,
                        seasonal_periods=self.season if self.seasonal else None)

    @classmethod
    def fit(cls, y: np.ndarray, season: int) -> "ETS":
        positive = bool((y > 0).all())
        seasons = [None] + (["add", "mul"] if 1 < season <= MAX_ETS_SEASON and len(y) >= 2 * season + 2 else [])
        best, best_aicc = None, math.inf
        for error, trend, seasonal in itertools.product(["add", "mul"], [None, "add", "damped"], seasons):
            if (error == "mul" or seasonal == "mul") and not positive:
                continue
            if error == "add" and seasonal == "mul":
                continue  # numerically unstable combination (R's ets leaves it out too)
            candidate = cls(error, "add" if trend else None, trend == "damped", seasonal, season, np.empty(0))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = candidate._model(y).fit(disp=False, maxiter=200)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                continue
            aicc = float(result.aicc)
            if math.isfinite(aicc) and aicc < best_aicc and np.isfinite(result.params).all():
                candidate.params, best, best_aicc = np.asarray(result.params), candidate, aicc
        if best is None:  # nothing converged: simple exponential smoothing with a fixed alpha
            best = cls("add", None, False, None, season, np.array([0.5, float(y[0])]))
        return best

    def table(self, x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
        out = np.empty((len(origins), steps))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, o in enumerate(origins):
                out[i] = np.asarray(self._model(x[: o + 1]).smooth(self.params).forecast(steps))
        return out


@dataclass
class Theta:
    """The Theta method (Assimakopoulos & Nikolopoulos 2000, as in Hyndman & Billah 2003): simple
    exponential smoothing of the seasonally adjusted series plus half the slope of its linear trend,
    then the season put back. Fitted once on the training part (seasonal indices, slope, alpha);
    forecasts from later origins run the smoothing through the data with those values fixed."""

    season: int
    indices: np.ndarray  # multiplicative (or additive) seasonal index by position mod season
    multiplicative: bool
    slope: float
    alpha: float

    @classmethod
    def fit(cls, y: np.ndarray, season: int) -> "Theta":
        n = len(y)
        multiplicative = bool((y > 0).all())
        indices = np.ones(season) if multiplicative else np.zeros(season)
        if season > 1 and n >= 2 * season and _seasonal(y, season):
            from statsmodels.tsa.seasonal import seasonal_decompose

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parts = seasonal_decompose(y, model="multiplicative" if multiplicative else "additive", period=season)
            indices = np.asarray(parts.seasonal)[:season]  # position t of the series is season position t mod m
        adjusted = cls(season, indices, multiplicative, 0.0, 0.5).adjust(y)
        t = np.arange(n)
        slope = float(np.polyfit(t, adjusted, 1)[0]) if n > 1 else 0.0
        alphas = np.linspace(0.02, 1.0, 50)
        errors = [np.mean((adjusted[1:] - _ses_levels(adjusted, a)[:-1]) ** 2) for a in alphas]
        return cls(season, indices, multiplicative, slope, float(alphas[int(np.argmin(errors))]))

    def adjust(self, y: np.ndarray) -> np.ndarray:
        idx = self.indices[np.arange(len(y)) % self.season]
        return y / idx if self.multiplicative else y - idx

    def table(self, x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
        levels, a = _ses_levels(self.adjust(x), self.alpha), self.alpha
        o = np.asarray(origins)[:, None]
        h = np.arange(1, steps + 1)[None, :]
        trend = 0.5 * self.slope * (h - 1 + 1 / a - (1 - a) ** (o + 1) / a)
        flat = levels[o] + trend
        idx = self.indices[(o + h) % self.season]
        return flat * idx if self.multiplicative else flat + idx


def _ses_levels(y: np.ndarray, alpha: float) -> np.ndarray:
    """Simple exponential smoothing levels l_t = alpha y_t + (1 - alpha) l_{t-1}, l_0 = y_0."""
    levels = np.empty(len(y))
    level = y[0]
    for t, value in enumerate(y):
        level = level + alpha * (value - level) if t else value
        levels[t] = level
    return levels


def _seasonal(y: np.ndarray, season: int) -> bool:
    """The 90% test of the Theta method's authors: autocorrelation at the seasonal lag beyond noise."""
    acf = autocorrelation(y, season)
    limit = 1.645 * math.sqrt((1 + 2 * float(np.sum(acf[1:season] ** 2))) / len(y))
    return abs(acf[season]) > limit


def autocorrelation(y: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations r_0..r_max_lag."""
    d = y - y.mean()
    denom = float(d @ d) or 1.0
    return np.array([float(d[k:] @ d[: len(d) - k]) / denom for k in range(max_lag + 1)])


def baseline_tables(train: np.ndarray, x: np.ndarray, origins: list[int], steps: int, season: int) -> dict[str, np.ndarray]:
    """Every baseline's forecast table; ETS is fitted on `train` (a prefix of x) alone."""
    ets = ETS.fit(train, season)
    return {
        "naive": naive_table(x, origins, steps),
        "seasonal naive": seasonal_naive_table(x, origins, steps, season),
        "drift": drift_table(x, origins, steps),
        ets.name: ets.table(x, origins, steps),
        "theta": Theta.fit(train, season).table(x, origins, steps),
    }
