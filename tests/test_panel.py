"""Many series, one global model: reading panels, the M4 metrics and benchmarks, the model, and the
CLI from training to `seqtool eval RUN --test`."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from seqtool.core.errors import SeqtoolError
from seqtool.forecast import m4
from seqtool.forecast.combine import conformal_widths
from seqtool.forecast.panel import read_long, read_panel, read_wide
from seqtool.nn.global_forecaster import GlobalForecaster, MemberLinear

FAST = ["--epochs", "2", "--ensemble", "2", "--hidden", "16", "--batch", "64", "--threads", "1", "--quiet"]


def monthly_panel(path, series=12, seed=0, shuffle=True):
    """Long CSV of seasonal series with different levels, lengths and start dates, rows shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(series):
        level, amplitude, n = rng.uniform(10, 1000), rng.uniform(0.1, 0.3), int(rng.integers(40, 70))
        start = int(rng.integers(0, 12))
        for t in range(n):
            month = start + t
            value = level * (1 + amplitude * math.sin(2 * math.pi * month / 12)) + rng.normal(0, level * 0.01)
            rows.append(f"S{s},{2000 + month // 12}-{month % 12 + 1:02d}-01,{value:.4f}")
    if shuffle:
        rng.shuffle(rows)
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    return path


# ---- reading ----------------------------------------------------------------------------------------------
def test_long_rows_in_any_order_are_sorted_per_series_and_dates_step_by_month(tmp_path):
    panel = read_panel(str(monthly_panel(tmp_path / "p.csv")), False, "unique_id", None, None)
    ordered = read_panel(str(monthly_panel(tmp_path / "q.csv", shuffle=False)), False, "unique_id", None, None)
    assert sorted(panel.ids) == sorted(ordered.ids) and len(panel) == 12
    for key, values in zip(ordered.ids, ordered.values):
        np.testing.assert_array_equal(panel.values[panel.ids.index(key)], values)
    assert panel.axis.months == 1 and panel.axis.season() == 12
    i = panel.ids.index("S0")
    last = panel.last[i]
    nxt = panel.future(i, 2)
    month = last.year * 12 + last.month  # the month after, 1-based arithmetic
    assert nxt[0] == f"{month // 12}-{month % 12 + 1:02d}-01"


def test_wide_layout_reads_m4_rows_of_different_lengths():
    text = '"V1","V2","V3","V4"\n"W1","1.5","2","3"\n"W2","4","5",""\n'
    panel = read_wide(text, "w.csv", "unique_id")
    assert panel.ids == ["W1", "W2"]
    np.testing.assert_array_equal(panel.values[1], [4, 5])
    assert panel.future(1, 3) == ["3", "4", "5"]


@pytest.mark.parametrize("text, message", [
    ("unique_id,ds,y\na,1,1\na,1,2\n", "lines 2 and 3: series a has two rows for 1"),
    ("unique_id,ds,y\na,1,1\na,2,nan\n", "line 3: series a has a missing or infinite value (nan)"),
    ("unique_id,ds,y\na,1,1\na,2,\n", "line 3: series a has a missing value; pass --fill ffill or --fill interpolate to fill missing values"),
    ("unique_id,ds,y\na,1,1\na,3,2\n", "line 3: series a has a gap: 3 follows 1 (the step is 1); pass --fill ffill or --fill interpolate to fill missing steps"),
    ("unique_id,ds,y\na,2020-01-01,1\na,2020-01-08,1\na,2020-01-22,1\n", "line 4: series a has a gap: 2020-01-22 follows 2020-01-08 (the step is 7 days); "
     "pass --fill ffill or --fill interpolate to fill missing steps"),
    ("unique_id,ds,y\na,1,x\n", "line 2: 'x' is not a number (series a)"),
    ("id,ds,y\na,1,1\n", "no column 'unique_id' for --id-column (the header has: id, ds, y)"),
])
def test_bad_long_tables_are_refused_naming_the_line(text, message):
    with pytest.raises(SeqtoolError) as info:
        read_long(text, "t.csv", "unique_id", "ds", "y")
    assert str(info.value) == f"t.csv, {message}" if "line" in message else str(info.value) == f"t.csv: {message}"


# ---- M4 metrics and benchmarks ------------------------------------------------------------------------------------
def test_naive2_reproduces_the_official_m4_weekly_scores():
    """The M4 competition's published Naive2 on Weekly: sMAPE 9.161, MASE 2.777; Theta's MASE 2.637."""
    train = read_panel("m4-weekly-train", True, None, None, None)
    test = read_panel("m4-weekly-test", True, None, None, None)
    assert train.ids == test.ids and len(train) == 359
    actual = np.stack(test.values)
    forecasts = {"naive2": m4.naive2(train.values, 13, 1), "theta": m4.theta(train.values, 13, 1)}
    rows, per = m4.score_table(actual, forecasts, m4.mase_scales(train.values, 1))
    naive2, theta = rows
    assert round(naive2["smape"], 3) == 9.161 and round(naive2["mase"], 3) == 2.777 and naive2["owa"] == 1.0
    assert round(theta["mase"], 3) == 2.637
    assert per["naive2"]["smape"].shape == (359,)


def test_smape_mase_and_owa_by_hand():
    actual, forecast = np.array([[100.0, 200.0]]), np.array([[110.0, 180.0]])
    assert m4.smape(actual, forecast)[0] == pytest.approx(100 * (10 / 210 + 20 / 380))
    assert m4.mase(actual, forecast, np.array([5.0]))[0] == pytest.approx(3.0)
    assert m4.mase_scales([np.array([1.0, 3.0, 2.0, 6.0])], 2)[0] == pytest.approx(2.0)  # |2-1|, |6-3|
    assert m4.owa(8, 2, 10, 4) == pytest.approx(0.65)


def test_seasonal_adjustment_finds_the_seasonal_pattern_and_naive2_uses_it():
    m, pattern = 4, np.array([0.8, 1.0, 1.4, 0.8])
    x = 100 * np.tile(pattern, 10) * (1 + 0.002 * np.arange(40))
    assert m4.is_seasonal(x, m) and not m4.is_seasonal(10 + np.random.default_rng(1).normal(size=40), m)
    np.testing.assert_allclose(m4.seasonal_indices(x, m), pattern, rtol=0.01)
    forecast = m4.naive2([x], 4, m)[0]
    np.testing.assert_allclose(forecast / forecast.mean(), pattern, rtol=0.01)
    np.testing.assert_array_equal(m4.seasonal_naive([x], 6, m)[0], x[[36, 37, 38, 39, 36, 37]])


def test_theta_follows_a_trend_and_ses_picks_alpha_one_for_a_random_walk():
    line = 5.0 + 2.0 * np.arange(60)
    forecast = m4.theta([line], 3, 1)[0]
    assert np.all(np.diff(forecast) > 0) and forecast[0] > line[-1]
    walk = np.cumsum(np.random.default_rng(0).normal(size=300))
    level, alpha = m4.ses([walk])
    assert alpha[0] > 0.9 and level[0] == pytest.approx(walk[-1], abs=0.2)


def test_conformal_widths_take_the_right_order_statistic():
    errors = np.arange(1, 40, dtype=float)[:, None].repeat(2, axis=1)  # 39 errors per step
    widths = {level: conformal_widths(errors, np.ones_like(errors, dtype=bool), level / 100) for level in (80, 95)}
    assert widths[80] == [32.0, 32.0] and widths[95] == [38.0, 38.0]  # ceil(40 * 0.8) = 32, ceil(40 * 0.95) = 38


def test_fill_inserts_missing_steps_and_values_in_every_series():
    text = ("unique_id,ds,y\na,2020-01,1\na,2020-02,2\na,2020-05,8\nb,2020-01,4\nb,2020-02,\nb,2020-03,6\n")
    panel = read_long(text, "t.csv", "unique_id", "ds", "y", fill="interpolate")
    np.testing.assert_allclose(panel.values[0], [1, 2, 4, 6, 8])  # March and April were missing
    np.testing.assert_allclose(panel.values[1], [4, 5, 6])
    assert (panel.filled, panel.gaps_filled) == (3, 2)
    assert panel.future(0, 1) == ["2020-06"]
    ffilled = read_long(text, "t.csv", "unique_id", "ds", "y", fill="ffill")
    np.testing.assert_allclose(ffilled.values[0], [1, 2, 2, 2, 8])
    with pytest.raises(SeqtoolError, match="is not a whole number of steps"):
        read_long("unique_id,ds,y\na,2020-01-01,1\na,2020-01-08,1\na,2020-01-10,1\n", "t.csv", "unique_id", "ds", "y", fill="ffill")
    wide = read_wide("id,v1,v2,v3\na,1,,3\n", "w.csv", None, fill="interpolate")
    np.testing.assert_allclose(wide.values[0], [1, 2, 3]) and None
    assert wide.filled == 1


# ---- the model ---------------------------------------------------------------------------------------------------------
def test_member_linear_is_independent_linear_layers():
    torch.manual_seed(0)
    layer = MemberLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    expected = torch.stack([x[k] @ layer.weight[k] + layer.bias[k] for k in range(3)])
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("cell", ["mlp", "gru"])
def test_forecasts_move_with_the_level_and_scale_of_the_series(cell):
    """Per-window normalisation: forecast(a x + b) = a forecast(x) + b for a > 0."""
    torch.manual_seed(0)
    model = GlobalForecaster(12, 4, cell, hidden=8, layers=1, members=3).eval()
    x = torch.randn(5, 12).cumsum(1)
    with torch.no_grad():
        torch.testing.assert_close(model(7.0 * x + 300.0), 7.0 * model(x) + 300.0, rtol=1e-4, atol=1e-3)
        assert model(x).shape == (5, 4)
        flat = model(torch.full((2, 12), 5.0))
        assert torch.isfinite(flat).all()


# ---- end to end -------------------------------------------------------------------------------------------------------
def test_forecast_trains_one_model_prints_long_forecasts_and_the_checkpoint_reproduces_them(cli, tmp_path):
    data = monthly_panel(tmp_path / "p.csv")
    result = cli("forecast", data, "--horizon", "6", "--level", "80", "--out", "run", *FAST)
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert list(rows[0]) == ["unique_id", "ds", "forecast", "lo-80", "hi-80"]
    assert len(rows) == 12 * 6 and len({r["unique_id"] for r in rows}) == 12
    assert all(float(r["lo-80"]) < float(r["forecast"]) < float(r["hi-80"]) for r in rows)
    first = [r for r in rows if r["unique_id"] == rows[0]["unique_id"]]
    assert [r["ds"] for r in first] == sorted(r["ds"] for r in first)  # horizon order
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["panel"]["season"] == 12 and report["panel"]["window"] == 24  # max(4 x 6, 2 x 12)
    again = cli("forecast", "--checkpoint", "run", "--level", "80")
    assert again.code == 0, again.err
    assert again.out == result.out
    assert cli("forecast", "--checkpoint", "run", "--horizon", "5").err == \
        "seqtool: error: --horizon 5: this run's model forecasts 6 values at once\n"


def test_training_beats_naive2_on_validation_and_the_loss_goes_down(tmp_path):
    from seqtool.core.session import start_run
    from seqtool.core.spec import resolve_spec

    data = monthly_panel(tmp_path / "p.csv", series=30)
    spec = resolve_spec(None, str(data), {"task": "panel", "forecast.horizon": 6, "train.epochs": 4, "forecast.ensemble": 3,
                                          "train.threads": 1, "output.out": str(tmp_path / "run")})
    summary = start_run(spec).fit()
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [m for m in metrics if "train_loss" in m]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert summary["panel"]["validation"][0]["method"] == "network"
    assert summary["panel"]["validation"][0]["owa"] < 0.8  # naive2 is 1 by definition


def test_eval_scores_a_run_on_a_test_file_as_m4_does(cli, tmp_path):
    result = cli("forecast", "m4-weekly-train", "--wide", "--horizon", "13", "--out", "run", *FAST)
    assert result.code == 0, result.err
    scored = cli("eval", "run", "--test", "m4-weekly-test", "--json")
    assert scored.code == 0, scored.err
    out = json.loads(scored.out)
    rows = {r["method"]: r for r in out["scores"]}
    assert set(rows) == {"model", "network", "theta", "naive2", "seasonal naive", "autoets", "autoarima", "autotheta", "ets+arima+theta"}
    assert rows["autoets"]["owa"] < 1.0 and rows["ets+arima+theta"]["owa"] < 1.0  # the statistical members beat Naive2 here
    assert round(rows["naive2"]["smape"], 3) == 9.161 and round(rows["naive2"]["mase"], 3) == 2.777
    per = list(csv.DictReader(open(tmp_path / "run" / "test-scores.csv")))
    assert len(per) == 359 and per[0]["unique_id"] == "W1"
    assert np.mean([float(r["model-smape"]) for r in per]) == pytest.approx(rows["model"]["smape"], rel=1e-5)
    assert cli("eval", "run").err == "seqtool: error: a panel run is scored on a test file: seqtool eval RUN [DATA] --test TEST.csv\n"


@pytest.mark.parametrize("text, message", [
    ("unique_id,ds,y\na,1,1\na,1,2\n", "lines 2 and 3: series a has two rows for 1"),
    ("unique_id,ds,y\n" + "".join(f"a,{t},{t}\n" for t in range(1, 20)) + "b,1,3\nb,2,4\n",
     "1 series have no more values than the horizon (3), so none can be held out to validate: b (each needs at least 4)"),
])
def test_bad_panels_exit_1_with_one_line_and_write_nothing(cli, tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    result = cli("forecast", "bad.csv", "--horizon", "3", "--out", "run", *FAST)
    assert result.code == 1 and result.out == ""
    assert result.err.endswith(message + "\n") and result.err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_panel_needs_a_horizon_and_refuses_single_series_options(cli, tmp_path):
    data = monthly_panel(tmp_path / "p.csv")
    assert cli("forecast", data, *FAST).err == \
        "seqtool: error: panel forecasting needs --horizon H: the model forecasts H values of every series at once\n"
    result = cli("forecast", data, "--horizon", "3", "--k", "1,2")
    assert result.code == 2 and result.err == "seqtool: error: --k does not apply to task panel (it is used by forecast)\n"


def test_a_csv_with_an_id_column_is_a_panel_and_panel_flags_are_for_panel_runs(cli, tmp_path):
    import yaml

    data = monthly_panel(tmp_path / "p.csv")
    result = cli("train", data, "--horizon", "6", "--dry-run")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["task"] == "panel"
    assert cli("train", "airline-passengers", "--dry-run").code == 0  # no id column: one series (lm by default)
    (tmp_path / "s.txt").write_text("".join(f"{v}\n" for v in range(40)))
    assert cli("forecast", "s.txt", "--epochs", "1", "--out", "one", "--quiet").code == 0
    assert cli("eval", "one", "--test", "x.csv").err == "seqtool: error: --test is for panel runs; this is a forecasting run\n"


def split_long(path, horizon, train_path, test_path):
    """Each series' last `horizon` rows go to the test file (long layout), the rest to training."""
    rows = list(csv.DictReader(open(path)))
    by_id: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r["unique_id"], r["ds"])):
        by_id.setdefault(r["unique_id"], []).append(r)
    header = "unique_id,ds,y\n"
    train_path.write_text(header + "".join(f"{r['unique_id']},{r['ds']},{r['y']}\n" for rs in by_id.values() for r in rs[:-horizon]))
    test_path.write_text(header + "".join(f"{r['unique_id']},{r['ds']},{r['y']}\n" for rs in by_id.values() for r in rs[-horizon:]))
    return by_id


def test_long_test_file_new_data_and_bad_test_files_through_the_cli(cli, tmp_path):
    by_id = split_long(monthly_panel(tmp_path / "all.csv"), 6, tmp_path / "train.csv", tmp_path / "test.csv")
    assert cli("forecast", "train.csv", "--horizon", "6", "--out", "run", *FAST).code == 0
    scored = cli("eval", "run", "--test", "test.csv", "--out", "scores", "--json")
    assert scored.code == 0, scored.err
    assert json.loads((tmp_path / "scores" / "test.json").read_text())["scores"] == json.loads(scored.out)["scores"]
    assert len((tmp_path / "scores" / "test-scores.csv").read_text().splitlines()) == 1 + 12
    # the saved model on newer data: the full series, so the forecasts start where the test part ended
    newer = cli("forecast", "--checkpoint", "run", "all.csv")
    assert newer.code == 0, newer.err
    first = next(csv.DictReader(io.StringIO(newer.out)))
    last = by_id[first["unique_id"]][-1]["ds"]
    year, month = int(last[:4]), int(last[5:7])
    assert first["ds"] == f"{year + month // 12}-{month % 12 + 1:02d}-01"
    # a test file without some series, or with too few values
    lines = (tmp_path / "test.csv").read_text().splitlines()
    (tmp_path / "some.csv").write_text("\n".join(line for line in lines if not line.startswith("S3,")) + "\n")
    result = cli("eval", "run", "--test", "some.csv")
    assert result.code == 1 and result.err == "seqtool: error: some.csv has no values for 1 series: S3\n"
    s0 = [line for line in lines if line.startswith("S0,")]
    (tmp_path / "short.csv").write_text("\n".join(line for line in lines if line not in s0[-2:]) + "\n")
    result = cli("eval", "run", "--test", "short.csv")
    assert result.code == 1 and result.err == "seqtool: error: short.csv: series S0 has 4 values; the forecasts have 6\n"
    assert cli("eval", "run", "--test", "missing.csv").code == 1
