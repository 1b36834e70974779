"""Automatic preprocessing, the statistical baselines, and the combination with its intervals:
each checked against a value computed independently (by hand, or by statsmodels directly)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from seqtool.forecast import auto
from seqtool.forecast.baselines import ETS, Theta, autocorrelation, drift_table, naive_table, seasonal_naive_table
from seqtool.forecast.combine import Combination, choose, conformal_widths
from seqtool.forecast.metrics import interval_scores

MONTHS = [f"{1950 + i // 12}-{i % 12 + 1:02d}" for i in range(120)]


def seasonal_series(n=120, growth=0.01, noise=0.02, seed=0, multiplicative=True):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 100 * np.exp(growth * t)
    season = 1 + 0.2 * np.sin(2 * np.pi * t / 12)
    return level * season * np.exp(rng.normal(0, noise, n)) if multiplicative else level + 20 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2, n)


# ---- choosing the preprocessing -----------------------------------------------------------------
def test_time_steps_and_the_season_they_suggest():
    assert auto.time_step(MONTHS) == "month"
    assert auto.time_step([f"2020-01-{d:02d}" for d in range(1, 30)]) == "day"
    assert auto.time_step([f"2020-{m:02d}-01" for m in range(1, 13)]) == "month"
    assert auto.time_step([str(y) for y in range(1900, 1950)]) == "year"
    assert auto.time_step(["1", "2", "3", "4"]) is None
    x = seasonal_series()
    assert auto.detect_season(MONTHS, x) == 12
    assert auto.detect_season([str(i) for i in range(120)], x) == 1  # positions: no frequency, no season
    noise = np.random.default_rng(1).normal(size=120)
    assert auto.detect_season(MONTHS, noise) == 1  # monthly labels, but nothing at lag 12


def test_the_transform_follows_how_the_spread_grows_with_the_level():
    multiplicative = seasonal_series(growth=0.03)
    assert auto.choose_transform(multiplicative, 12) == ("log", 0.0)
    additive = seasonal_series(growth=0.0, multiplicative=False)
    assert auto.choose_transform(additive, 12) == ("none", None)
    assert auto.choose_transform(additive - 200, 12) == ("none", None)  # not all positive: no Box-Cox
    lam = auto.box_cox_lambda(multiplicative, 12)
    blocks = multiplicative.reshape(-1, 12)  # Guerrero: sd / mean^(1 - lambda) as constant as possible
    cv = lambda l: np.std(blocks.std(1, ddof=1) / blocks.mean(1) ** (1 - l)) / np.mean(blocks.std(1, ddof=1) / blocks.mean(1) ** (1 - l))  # noqa: E731
    assert all(cv(lam) <= cv(other) + 1e-12 for other in np.linspace(0, 1, 21))


def test_differencing_seasonal_then_first():
    x = np.log(seasonal_series(growth=0.02, noise=0.01))
    assert auto.choose_differences(x, 12) == [12]  # seasonal, and what is left has no unit root
    walk = np.cumsum(np.random.default_rng(3).normal(size=200))
    assert auto.choose_differences(walk, 1) == [1]
    assert auto.choose_differences(np.random.default_rng(4).normal(size=200), 1) == []
    assert auto.choose_differences(np.arange(50.0), 1) == []  # a straight line: differences would be constant


# ---- baselines -----------------------------------------------------------------------------------
def test_naive_seasonal_naive_and_drift_tables_by_hand():
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 7.0])
    assert naive_table(x, [2, 4], 2).tolist() == [[2.0, 2.0], [4.0, 4.0]]
    assert seasonal_naive_table(x, [3], 3, 2).tolist() == [[2.0, 5.0, 2.0]]  # x[2], x[3], then x[2] again
    assert np.allclose(drift_table(x, [4], 2), [[4.0 + 0.75, 4.0 + 1.5]])  # slope (4 - 1) / 4


def test_ets_fixed_parameters_across_origins_equal_statsmodels_smoothing():
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    x = seasonal_series(n=96)
    ets = ETS.fit(x[:72], 12)
    assert ets.name.startswith("ETS(") and ets.seasonal is not None
    table = ets.table(x, [71, 83], 6)
    for row, origin in zip(table, (71, 83)):
        model = ETSModel(x[: origin + 1], error=ets.error, trend=ets.trend, damped_trend=ets.damped, seasonal=ets.seasonal,
                         seasonal_periods=12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = model.smooth(ets.params).forecast(6)
        assert np.allclose(row, expected)
    assert abs(table[0, 0] - x[72]) / x[72] < 0.1  # and it forecasts the series it was fitted on


def test_theta_matches_its_formula():
    x = np.array([10.0, 12.0, 11.0, 13.0, 15.0, 14.0, 16.0, 18.0, 17.0, 19.0])
    theta = Theta.fit(x, 1)  # no season
    t = np.arange(10)
    slope = np.polyfit(t, x, 1)[0]
    assert math.isclose(theta.slope, slope)
    a = theta.alpha
    level = x[0]
    for v in x[1:]:
        level = a * v + (1 - a) * level
    h = np.arange(1, 4)
    expected = level + 0.5 * slope * (h - 1 + 1 / a - (1 - a) ** 10 / a)
    assert np.allclose(theta.table(x, [9], 3)[0], expected)


def test_autocorrelation_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    d = y - 2.5
    assert np.allclose(autocorrelation(y, 2), [1.0, (d[1:] @ d[:-1]) / (d @ d), (d[2:] @ d[:-2]) / (d @ d)])


# ---- the combination and its intervals ---------------------------------------------------------
def test_conformal_widths_are_the_finite_sample_quantile():
    residuals = np.array([[1.0], [-2.0], [3.0], [-4.0], [5.0], [6.0], [-7.0], [8.0], [9.0]])
    valid = np.ones_like(residuals, dtype=bool)
    # n = 9, level 0.8: the ceil(10 * 0.8) = 8th smallest |r| of 1..9 is 8
    assert conformal_widths(residuals, valid, 0.8) == [8.0]
    assert conformal_widths(residuals, valid, 0.95) == [9.0]  # ceil(9.5) / 9 > 1: the largest
    few = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [4.0, 8.0], [5.0, 0.0]])
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0], [1, 0]], dtype=bool)  # 2 errors two steps ahead: too few
    widths = conformal_widths(few, mask, 0.8)
    assert widths[0] == 5.0 and math.isclose(widths[1], 5.0 * math.sqrt(2))


def test_choose_keeps_the_candidate_that_validates_best():
    x = seasonal_series(n=96, noise=0.0)
    origins = list(range(71, 95))
    perfect = np.array([[x[o + j] if o + j < 96 else 0.0 for j in range(1, 4)] for o in origins])
    chosen = choose(perfect, x, origins, 96, 12, 1.0, [80])
    assert chosen.members == ("network",) and chosen.validation["network"] == 0.0
    assert set(chosen.validation) == {"network", "network + ets", "network + theta", "network + ets + theta"}
    bad = perfect + 50.0
    assert choose(bad, x, origins, 96, 12, 1.0, [80]).members != ("network",)
    forced = choose(bad, x, origins, 96, 12, 1.0, [80], allow=False)
    assert forced.members == ("network",) and forced.widths[80][0] == pytest.approx(50.0)
    again = Combination.from_state(forced.state())
    assert again.members == forced.members and again.widths == forced.widths


def test_interval_scores_by_hand():
    low, high, actual = np.array([0.0, 0.0, 0.0]), np.array([2.0, 2.0, 2.0]), np.array([1.0, 3.0, -1.0])
    scores = interval_scores(low, high, actual, 80, scale=2.0)
    assert scores["coverage-80"] == pytest.approx(1 / 3)
    # width 2 each; misses of 1 above and 1 below cost 2 / 0.2 = 10 each: (2 + 12 + 12) / 3 / scale 2
    assert scores["msis-80"] == pytest.approx((2 + 12 + 12) / 3 / 2)


def test_irregular_dates_are_counted_and_the_first_named():
    days = [f"2020-01-{d:02d}" for d in range(1, 21)]
    assert auto.irregular_steps(days) == (0, None)
    gappy = days[:10] + days[11:] + ["2020-01-20"]  # a missing day, then a repeated one
    assert auto.irregular_steps(gappy) == (2, "2020-01-10 -> 2020-01-12")
    assert auto.irregular_steps(MONTHS) == (0, None)  # only day-spaced labels are checked


def test_the_report_says_when_rows_are_taken_as_consecutive(tmp_path):
    from seqtool.core.spec import apply_overrides, spec_defaults
    from seqtool.forecast.task import ForecastTask

    path = tmp_path / "d.csv"
    from datetime import date, timedelta

    start = date(2021, 1, 1)
    rows = [f"{start + timedelta(days=i)},{10 + (i % 7) + i / 50:.3f}" for i in range(140) if i != 40]  # 2021-02-10 missing
    path.write_text("day,value\n" + "\n".join(rows) + "\n")
    spec = apply_overrides(spec_defaults("forecast"), {"data.corpus": str(path)})
    task = ForecastTask.from_spec(spec)
    assert (task.chosen["irregular_steps"], task.chosen["first_irregular_step"]) == (1, "2021-02-09 -> 2021-02-11")
