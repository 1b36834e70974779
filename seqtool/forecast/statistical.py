"""The statistical forecasters seqtool combines with its network and reports beside it:
statsforecast's AutoETS, AutoARIMA and AutoTheta (its C++ core, no numba).

Each is chosen and fitted once on a training prefix (by the library's information criteria), then
run through later data with that model and its parameters fixed (`forward`), so the forecast from
origin o uses x[..o] alone: table[i, j] forecasts x[origins[i] + j + 1] as baselines.py's tables do.
A fit is deterministic, so a saved run keeps the values it was fitted on, not a pickle: restoring
refits them (loading a run never executes code from it).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: the statistical members, in report order
KINDS = ("ets", "arima", "theta")
TITLES = {"ets": "AutoETS", "arima": "AutoARIMA", "theta": "AutoTheta"}
STAT_MEAN = "ets+arima+theta"  # the plain mean of the three: the statistician's ensemble
#: ETS estimates one initial state per season position: past this period (as R's ets) it is fitted without a season
MAX_ETS_SEASON = 24
#: a seasonal ARIMA past this period is slow to search and rarely chosen: fitted without a season
MAX_ARIMA_SEASON = 52


def _model(kind: str, season: int, length: int):
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    seasonal = 1 < season and length >= 2 * season + 2  # two full seasons and a bit: else no seasonal form
    if kind == "ets":
        return AutoETS(season_length=season if seasonal and season <= MAX_ETS_SEASON else 1)
    if kind == "arima":  # R's rule for the approximate (faster) likelihood search
        m = season if seasonal and season <= MAX_ARIMA_SEASON else 1
        return AutoARIMA(season_length=m, approximation=length > 150 or m > 12)
    if kind == "theta":
        return AutoTheta(season_length=season if seasonal else 1)
    raise ValueError(f"unknown statistical forecaster {kind!r}; choose one of {', '.join(KINDS)}")


@dataclass
class Statistical:
    """One fitted statistical forecaster (None when the library could not fit this series)."""

    kind: str
    season: int
    fitted_on: np.ndarray
    model: object | None = field(default=None, repr=False)

    @classmethod
    def fit(cls, kind: str, y: np.ndarray, season: int) -> "Statistical":
        y = np.asarray(y, dtype=np.float64)
        model = _model(kind, season, len(y))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = model.fit(y)
        except Exception:  # the library's own failure on a degenerate series: this member sits out
            model = None
        return cls(kind, season, y, model)

    @property
    def name(self) -> str:
        """What was chosen, e.g. 'AutoETS: ETS(M,A,M)'."""
        title = TITLES[self.kind]
        if self.model is None:
            return f"{title}: could not be fitted"
        fitted = self.model.model_
        if self.kind == "ets":
            return f"{title}: {fitted['method']}"
        if self.kind == "arima":
            from statsforecast.arima import arima_string

            return f"{title}: {arima_string(fitted).strip()}"
        return f"{title}: {fitted.get('modeltype', '')}"

    def table(self, x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
        """The forecast from each origin, the fitted model run through x[..origin]."""
        out = np.full((len(origins), steps), math.nan)
        if self.model is None:
            return out
        x = np.asarray(x, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, o in enumerate(origins):
                try:
                    out[i] = self.model.forward(y=x[: o + 1], h=steps)["mean"]
                except Exception:  # too short a history for this model's lags: no forecast from here
                    continue
        return out

    def state(self) -> dict:
        return {"kind": self.kind, "season": self.season, "fitted_on": self.fitted_on.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> "Statistical":
        return cls.fit(state["kind"], np.asarray(state["fitted_on"], dtype=np.float64), int(state["season"]))


def fit_all(y: np.ndarray, season: int) -> dict[str, Statistical]:
    return {kind: Statistical.fit(kind, y, season) for kind in KINDS}


#: the latest values of each series the panel baselines are fitted on (AutoARIMA and AutoTheta on
#: thousands of values per series would take minutes on a large panel, and add little)
PANEL_HISTORY = 300


#: with a progress callback, the series are fitted in about this many chunks (each series' fit is its own, so chunks change nothing)
PROGRESS_CHUNKS = 10


def panel_forecasts(values: list[np.ndarray], h: int, season: int, jobs: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """(series, h) forecasts of AutoETS, AutoARIMA and AutoTheta for every series at once
    (statsforecast's StatsForecast, `jobs` processes), each fitted on the series' latest
    PANEL_HISTORY values; a series a model cannot fit gets the naive forecast instead.
    `progress(done, total)` is called as chunks of series finish (fitting a large panel takes a while)."""
    tails = [np.asarray(v, dtype=np.float64)[-PANEL_HISTORY:] for v in values]
    models = [_model(kind, season, min(len(t) for t in tails)) for kind in KINDS]  # the same models for every chunk
    size = len(tails) if progress is None else max(32, math.ceil(len(tails) / PROGRESS_CHUNKS))
    parts = []
    for start in range(0, len(tails), size):
        parts.append(_forecast_chunk(tails[start : start + size], models, h, jobs))
        if progress is not None:
            progress(min(start + size, len(tails)), len(tails))
    return {kind: np.concatenate([part[kind] for part in parts]) for kind in KINDS}


def _forecast_chunk(tails: list[np.ndarray], models: list, h: int, jobs: int) -> dict[str, np.ndarray]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(len(tails)), [len(t) for t in tails]),
                          "ds": np.concatenate([np.arange(len(t)) for t in tails]), "y": np.concatenate(tails)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = StatsForecast(models=models, freq=1, n_jobs=max(1, jobs), fallback_model=Naive())
        result = engine.forecast(df=frame, h=h)
    result = result.sort_values(["unique_id", "ds"])
    return {kind: result[repr(model)].to_numpy(dtype=np.float64).reshape(len(tails), h) for kind, model in zip(KINDS, models)}
