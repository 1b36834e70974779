"""Choosing a series' preprocessing from its training part alone: the seasonal period, a
variance-stabilising transform (none, log or Box-Cox) and differencing (seasonal and/or first).

The rules are the classical ones of automatic forecasting (Hyndman & Khandakar 2008; Wang, Smith
& Hyndman 2006): the period from the time column's frequency, kept when the autocorrelation at
that lag stands out from noise; the Box-Cox lambda from how the spread of each season grows with
its level (Guerrero 1993); a seasonal difference when the seasonal strength of an STL
decomposition exceeds 0.64, then a first difference while a KPSS test rejects stationarity.
"""

from __future__ import annotations

import math
import re
import warnings
from datetime import date

import numpy as np

from seqtool.forecast.baselines import autocorrelation

#: candidate periods by the spacing of the time labels
PERIODS_BY_STEP = {"month": (12,), "quarter": (4,), "week": (52,), "day": (7, 365), "hour": (24, 168), "year": ()}
SEASONAL_STRENGTH = 0.64
#: a Box-Cox lambda this close to 1 changes nothing worth the trouble; this close to 0 is a log
LAMBDA_NONE, LAMBDA_LOG = 0.25, 0.15


def time_step(times: list[str]) -> str | None:
    """The spacing of the time labels: month, quarter, week, day, hour, year, or None (positions)."""
    tail = [t.strip() for t in times[-60:]]
    if len(tail) < 3:
        return None
    if all(re.fullmatch(r"\d{4}-\d{1,2}", t) for t in tail):
        months = [int(t[:4]) * 12 + int(t.split("-")[1]) for t in tail]
        step = _mode([b - a for a, b in zip(months, months[1:])])
        return {1: "month", 3: "quarter", 12: "year"}.get(step)
    if all(re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?", t) for t in tail):
        if any(" " in t or "T" in t for t in tail):
            return "hour"
        try:
            days = [date(*map(int, t[:10].split("-"))).toordinal() for t in tail]
        except ValueError:
            return None
        step = _mode([b - a for a, b in zip(days, days[1:])])
        return {1: "day", 7: "week"}.get(step) or ("month" if 28 <= step <= 31 else "quarter" if 89 <= step <= 92 else
                                                   "year" if 365 <= step <= 366 else None)
    if all(re.fullmatch(r"\d{4}", t) for t in tail):
        return "year"
    return None


def irregular_steps(times: list[str]) -> tuple[int, str | None]:
    """Rows whose date is not one usual step after the previous one (a gap, a repeat, a step
    back): how many, and the first as 'A -> B'. Only for day-spaced date labels; (0, None) otherwise."""
    if time_step(times) not in ("day", "week"):
        return 0, None
    try:
        days = [date(*map(int, t.strip()[:10].split("-"))).toordinal() for t in times]
    except ValueError:
        return 0, None
    steps = [b - a for a, b in zip(days, days[1:])]
    usual = _mode(steps)
    odd = [i for i, s in enumerate(steps) if s != usual]
    return len(odd), (f"{times[odd[0]].strip()} -> {times[odd[0] + 1].strip()}" if odd else None)


def _mode(values: list[int]) -> int:
    return max(set(values), key=values.count) if values else 0


def detect_season(times: list[str], train: np.ndarray) -> int:
    """The seasonal period: the candidate for the time column's spacing whose autocorrelation is
    largest and beyond noise, with at least two full periods in the training part; else 1."""
    best, best_r = 1, 0.0
    for period in PERIODS_BY_STEP.get(time_step(times) or "", ()):
        if len(train) < 2 * period + 2:
            continue
        r = float(autocorrelation(np.diff(train) if _trending(train) else train, period)[period])
        if r > 1.645 / math.sqrt(len(train)) and r > best_r:
            best, best_r = period, r
    return best


def _trending(y: np.ndarray) -> bool:
    """A trend swamps the seasonal autocorrelation; look at changes instead."""
    t = np.arange(len(y))
    return abs(np.corrcoef(t, y)[0, 1]) > 0.5 if len(y) > 2 and y.std() > 0 else False


def box_cox_lambda(train: np.ndarray, season: int) -> float | None:
    """Guerrero's lambda: the one that makes std/mean^(1-lambda) most constant across blocks of one
    season (two values per block at least); None when the data are not all positive."""
    if (train <= 0).any():
        return None
    block = max(season, 2)
    n = (len(train) // block) * block
    if n < 2 * block:
        return 1.0
    blocks = train[len(train) - n:].reshape(-1, block)
    means, sds = blocks.mean(axis=1), blocks.std(axis=1, ddof=1)
    if means.max() < 1.25 * means.min():  # the level hardly moves: how the spread follows it cannot be told
        return 1.0
    keep = sds > 0
    if keep.sum() < 2:
        return 1.0
    candidates = np.linspace(0.0, 1.0, 21)  # below 0 the inverse explodes past the training range; above 1 does not stabilise
    cv = [np.std(sds[keep] / means[keep] ** (1 - lam)) / np.mean(sds[keep] / means[keep] ** (1 - lam)) for lam in candidates]
    return float(candidates[int(np.argmin(cv))])


def choose_transform(train: np.ndarray, season: int) -> tuple[str, float | None]:
    """('none' | 'log' | 'box-cox', lambda)."""
    lam = box_cox_lambda(train, season)
    if lam is None or abs(lam - 1.0) < LAMBDA_NONE:
        return "none", None
    if abs(lam) < LAMBDA_LOG:
        return "log", 0.0
    return "box-cox", lam


def seasonal_strength(y: np.ndarray, season: int) -> float:
    """1 - Var(remainder) / Var(season + remainder) of an STL decomposition (0 when it cannot be made)."""
    if season < 2 or len(y) < 2 * season + 1:
        return 0.0
    from statsmodels.tsa.seasonal import STL

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = STL(y, period=season, robust=True).fit()
    remainder, seasonal = np.asarray(parts.resid), np.asarray(parts.seasonal)
    total = np.var(seasonal + remainder)
    return max(0.0, 1.0 - np.var(remainder) / total) if total > 0 else 0.0


def needs_first_difference(y: np.ndarray) -> bool:
    """KPSS (level stationarity) rejects at 5%: the series wanders, difference it once."""
    if len(y) < 8 or np.std(y) == 0:
        return False
    from statsmodels.tsa.stattools import kpss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, p_value, *_ = kpss(y, regression="c", nlags="auto")
    return p_value < 0.05


def choose_differences(z: np.ndarray, season: int) -> list[int]:
    """Lags to difference by, in order: [season] when the season is strong, then [1] when what
    is left is not stationary. Each difference costs that many values at the start."""
    lags = []
    if season > 1 and seasonal_strength(z, season) > SEASONAL_STRENGTH and len(z) > 3 * season:
        changes = z[season:] - z[:-season]
        if np.ptp(changes) > 0:  # a difference that leaves a constant leaves nothing to learn
            lags.append(season)
            z = changes
    if needs_first_difference(z) and np.ptp(np.diff(z)) > 0:
        lags.append(1)
    return lags
