"""Automatic preprocessing, the statistical baselines, and the combination with its intervals:
each checked against a value computed independently (by hand, or by statsmodels directly)."""

from __future__ import annotations

import math
import numpy as np
import pytest

from seqtool.forecast import auto
from seqtool.forecast import combine
from seqtool.forecast.baselines import autocorrelation, drift_table, naive_table, seasonal_naive_table
from seqtool.forecast.combine import Combination, conformal_widths, estimate_weights, weighted_mean
from seqtool.forecast.statistical import KINDS, Statistical, fit_all
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


@pytest.mark.parametrize("kind", KINDS)
def test_statistical_members_forecast_from_each_origin_with_the_fit_fixed(kind):
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    x = seasonal_series(n=96)
    member = Statistical.fit(kind, x[:72], 12)
    assert member.model is not None and member.name.startswith({"ets": "AutoETS", "arima": "AutoARIMA", "theta": "AutoTheta"}[kind])
    table = member.table(x, [71, 83], 6)
    library = {"ets": AutoETS, "arima": AutoARIMA, "theta": AutoTheta}[kind](season_length=12).fit(x[:72])
    assert np.allclose(table[0], library.predict(6)["mean"])  # at the end of the fit: the library's own forecast
    later = x.copy()
    later[84:] += 500.0  # what comes after an origin cannot change its forecast
    assert np.allclose(member.table(later, [83], 6), table[1:])
    assert abs(table[0, 0] - x[72]) / x[72] < 0.1  # and it forecasts the series it was fitted on
    again = Statistical.from_state(member.state())  # a saved run refits on the same values: the same forecasts
    assert np.array_equal(again.table(x, [71, 83], 6), table)


def test_a_member_that_cannot_fit_forecasts_nothing_and_drops_out_of_the_mean():
    broken = Statistical("ets", 12, np.zeros(3), None)
    assert broken.name == "AutoETS: could not be fitted" and np.isnan(broken.table(np.arange(10.0), [5], 2)).all()
    tables = {"network": np.array([[1.0, 2.0]]), "ets": np.array([[np.nan, 4.0]])}
    mean = weighted_mean(tables, {"network": 0.5, "ets": 0.5})
    assert mean.tolist() == [[1.0, 3.0]]  # the weights renormalised where ets has no forecast


def test_autocorrelation_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    d = y - 2.5
    assert np.allclose(autocorrelation(y, 2), [1.0, (d[1:] @ d[:-1]) / (d @ d), (d[2:] @ d[:-2]) / (d @ d)])


# ---- the combination and its intervals ---------------------------------------------------------
def test_conformal_widths_are_the_finite_sample_quantile():
    residuals = -np.arange(1.0, 40.0)[:, None] * np.array([[1.0], [-1.0]]).repeat(20, axis=0)[:39]  # |r| = 1..39, both signs
    valid = np.ones_like(residuals, dtype=bool)
    # n = 39, level 0.8: the ceil(40 * 0.8) = 32nd smallest |r|; level 0.95: the 38th
    assert conformal_widths(residuals, valid, 0.8) == [32.0]
    assert conformal_widths(residuals, valid, 0.95) == [38.0]


def _upper_rank_by_hand(n, level, confidence=0.9):
    """The smallest r with P(Binomial(n, level) <= r - 1) >= confidence."""
    total = 0.0
    for r in range(1, n + 2):
        total += math.comb(n, r - 1) * level ** (r - 1) * (1 - level) ** (n - r + 1)
        if total >= confidence:
            return r
    return n + 1


def test_few_errors_widen_the_intervals_and_say_so():
    few = np.arange(1.0, 21.0)[:, None]  # 20 errors: fewer than MIN_RESIDUALS
    valid = np.ones_like(few, dtype=bool)
    rank = _upper_rank_by_hand(20, 0.8)
    assert math.ceil(21 * 0.8) < rank <= 20  # wider than the plain conformal rank
    assert conformal_widths(few, valid, 0.8) == [float(rank)]
    beyond = _upper_rank_by_hand(20, 0.95)  # past the largest error: it grows with how far past
    assert beyond > 20 and conformal_widths(few, valid, 0.95) == [pytest.approx(20.0 * math.sqrt(beyond / 20))]
    combination = Combination({"network": 1.0}, residuals=[40, 10])
    assert combination.few_residuals() == {2: 10}


def test_weights_favour_the_member_that_validates_best_and_shrink_toward_equal():
    rng = np.random.default_rng(0)
    actual = rng.normal(size=(60, 3))
    valid = np.ones_like(actual, dtype=bool)
    tables = {"network": actual + rng.normal(0, 0.1, actual.shape), "ets": actual + rng.normal(0, 1.0, actual.shape),
              "arima": actual + rng.normal(0, 1.0, actual.shape)}
    w = estimate_weights(tables, actual, valid)
    for j in range(3):  # one set of weights per step ahead, each summing to 1
        assert math.isclose(sum(v[j] for v in w.values()), 1.0) and w["network"][j] > w["ets"][j] and w["network"][j] > w["arima"][j]
        assert w["network"][j] < 60 / (60 + combine.SHRINK) + 1 / 3  # never all of it: shrunk toward 1/3 each
    few = estimate_weights({m: t[:3] for m, t in tables.items()}, actual[:3], valid[:3])
    assert abs(few["network"][0] - 1 / 3) < abs(w["network"][0] - 1 / 3)  # three origins: closer to equal
    assert estimate_weights(tables, actual, valid, shrink=1e9)["ets"] == pytest.approx([1 / 3] * 3)
    broken = estimate_weights({**tables, "theta": actual + 100.0}, actual, valid, shrink=1e9)  # far worse than the rest
    assert broken["theta"] == [0.0] * 3 and broken["ets"] == pytest.approx([1 / 3] * 3)


def test_min_variance_weights_are_the_best_convex_combination_and_count_a_copy_once():
    from itertools import product

    rng = np.random.default_rng(3)
    for _ in range(20):
        errors = rng.normal(size=(50, 4)) * rng.uniform(0.5, 2.0, 4) + rng.normal(size=(50, 1)) * rng.uniform(0, 2)
        s = errors.T @ errors / 50
        w = combine.min_variance_weights(s)
        assert (w >= 0).all() and math.isclose(w.sum(), 1.0)
        grid = [np.array(g) / 20 for g in product(range(21), repeat=4) if sum(g) == 20]
        assert w @ s @ w <= min(g @ s @ g for g in grid) + 1e-12  # no point of a fine grid on the simplex does better
    # two members that make the same errors are one opinion: together they get what one of them would
    a, b = rng.normal(size=(2, 200))
    alone = combine.min_variance_weights(np.cov(np.stack([a, b]), bias=True))
    twice = combine.min_variance_weights(np.cov(np.stack([a, a, b]), bias=True))
    assert math.isclose(twice[0] + twice[1], alone[0], rel_tol=1e-6) and math.isclose(twice[2], alone[1], rel_tol=1e-6)
    worse = combine.min_variance_weights(np.array([[1.0, 0.0], [0.0, 4.0]]))
    assert worse == pytest.approx([0.8, 0.2])  # independent errors: inverse variance


def test_each_step_ahead_weighs_the_members_by_its_own_errors():
    """A member that is best one step ahead and worst three steps ahead leads at k = 1 and trails at k = 3;
    a step no validation window reaches keeps the weights of the step before it."""
    rng = np.random.default_rng(1)
    actual = rng.normal(size=(80, 4))
    noise = rng.normal(size=actual.shape)
    tables = {"network": actual + noise * np.array([0.1, 0.5, 2.0, 2.0]), "ets": actual + noise[::-1] * 0.5}
    valid = np.ones_like(actual, dtype=bool)
    valid[:, 3] = False
    w = estimate_weights(tables, actual, valid)
    assert w["network"][0] > 0.5 > w["network"][2] and w["network"][3] == w["network"][2] and w["ets"][3] == w["ets"][2]
    mean = weighted_mean(tables, w)
    for j in range(4):
        assert np.allclose(mean[:, j], w["network"][j] * tables["network"][:, j] + w["ets"][j] * tables["ets"][:, j])
    longer = weighted_mean({m: np.pad(t, ((0, 0), (0, 2))) for m, t in tables.items()}, w)  # past the last step its weights hold
    assert np.allclose(longer[:, 5], 0.0) and np.allclose(longer[:, :4], mean)


def test_a_combination_saved_by_the_earlier_selection_is_refused_in_one_line():
    from seqtool.core.errors import SeqtoolError

    old = {"members": ["network", "theta"], "widths": {"80": [1.0]}, "validation": {}, "ets": None,
           "theta": {"season": 1, "indices": [1.0], "multiplicative": True, "slope": 0.0, "alpha": 0.5}}
    with pytest.raises(SeqtoolError, match="trained by an earlier seqtool.*train it again"):
        Combination.from_state(old)


def test_the_combination_survives_its_state():
    x = seasonal_series(n=60)
    members = fit_all(x[:48], 12)
    combination = Combination({"network": [0.4, 0.4], "ets": [0.2, 0.2], "arima": [0.2, 0.2], "theta": [0.2, 0.2]}, members,
                              {80: [1.0, 2.0]}, [30, 29], {"network": 0.5}, 1.2)
    network = np.full((2, 3), 100.0)
    again = Combination.from_state(combination.state())
    assert again.weights == combination.weights and again.widths == combination.widths and again.inflation == 1.2
    assert np.allclose(again.table(network, x, [47, 50], 3), combination.table(network, x, [47, 50], 3))
    expected = 0.4 * network + sum(0.2 * members[k].table(x, [47, 50], 3) for k in KINDS)
    assert np.allclose(combination.table(network, x, [47, 50], 3), expected)
    older = Combination.from_state({**combination.state(), "weights": {"network": 0.4, "ets": 0.2, "arima": 0.2, "theta": 0.2}})
    assert older.weights["network"] == [0.4]  # a run saved with one weight per member: that weight at every step
    assert np.allclose(older.table(network, x, [47, 50], 3), combination.table(network, x, [47, 50], 3))
    low, high = combination.bounds(np.zeros((1, 3)), 80)  # past the calibrated steps: sqrt growth from the last
    assert np.allclose(high[0], [1.0, 2.0, 2.0 * math.sqrt(3 / 2)]) and np.allclose(low, -high)


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
    spec = apply_overrides(spec_defaults("forecast", "mlp"), {"data.corpus": str(path)})
    task = ForecastTask.from_spec(spec)
    assert (task.chosen["irregular_steps"], task.chosen["first_irregular_step"]) == (1, "2021-02-09 -> 2021-02-11")


def test_panel_baselines_fitted_in_chunks_behind_a_progress_bar_are_the_same_forecasts():
    from seqtool.forecast.statistical import panel_forecasts

    rng = np.random.default_rng(3)
    values = [np.cumsum(rng.normal(size=int(rng.integers(30, 50)))) + 50 for _ in range(70)]
    whole = panel_forecasts(values, 3, 1)
    seen = []
    chunked = panel_forecasts(values, 3, 1, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(32, 70), (64, 70), (70, 70)]
    for kind in whole:
        assert whole[kind].shape == (70, 3) and np.allclose(chunked[kind], whole[kind])
