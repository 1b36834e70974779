"""`seqtool forecast` end to end: the synthetic sine, the airline-passengers catalog CSV, stdin,
pipelines, specs and the bad inputs a user will try."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--threads", "1", "--quiet"]


def one_error_line(result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtool: error: "), result.err
    return lines[0]


def test_synthetic_sine_writes_a_run_with_the_metrics_table(cli):
    result = cli("forecast", "--synthetic", "sine", "--model", "mlp", "--epochs", "2", "--out", "run", *FAST)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0].split() == ["k", "method", "n", "mae", "rmse", "smape", "mase"]
    methods = ["model", "network", "naive", "seasonal", "drift", "ets", "arima", "theta", "ets+arima+theta"]  # 'seasonal naive' splits
    assert [line.split()[0] for line in lines[1::9]] == ["1", "4", "16", "64", "multi"]
    assert [line.split()[1] for line in lines[1:10]] == methods
    run = Path("run")
    for name in ("spec.yaml", "report.json", "report.md", "forecast.png", "learning_curve.png", "checkpoints/best.pt", "metrics.jsonl"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    fc = report["forecast"]
    assert (fc["values"], fc["n_train"], fc["n_test"], fc["model"], fc["tau"]) == (1000, 600, 400, "mlp", 4)
    assert {(r["k"], r["method"]) for r in fc["k_step"]} == {(k, m) for k in (1, 4, 16, 64)
                                                           for m in ("model", "network", "naive", "seasonal naive", "drift", "ets", "arima",
                                                                     "theta", "ets+arima+theta")}
    one_step = next(r for r in fc["k_step"] if r["k"] == 1 and r["method"] == "model")
    assert one_step["mse"] < 0.2 and one_step["n"] == 400
    md = (run / "report.md").read_text()
    assert "## Forecast evaluation" in md and "| 64 | naive | 400 |" in md and "forecast.png" in md and "coverage-80" in md
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    assert spec["task"] == "forecast" and spec["model"]["cell"] == "mlp" and spec["forecast"]["synthetic"] == "sine"


def test_catalog_csv_with_horizon_prints_csv_continuing_the_months(cli):
    result = cli("forecast", "airline-passengers", "--n-train", "120", "--epochs", "3", "--horizon", "12", "--k", "1,12", "--out", "air", *FAST)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0] == "time,forecast" and len(lines) == 13
    assert [line.split(",")[0] for line in lines[1:]] == [f"1961-{m:02d}" for m in range(1, 13)]
    assert all(float(line.split(",")[1]) > 0 for line in lines[1:])
    fc = json.loads(Path("air/report.json").read_text())["forecast"]
    assert (fc["series"], fc["n_train"], fc["n_test"], fc["season"]) == ("Passengers", 120, 24, 12)
    snaive = next(r for r in fc["k_step"] if r["k"] == 1 and r["method"] == "seasonal naive")
    assert 1.0 < snaive["mase"] < 3.0  # the last two years grew faster than the ten before


def test_recurrent_model_from_stdin_and_a_spec_file(cli, tmp_path):
    spec = tmp_path / "f.yaml"
    spec.write_text("task: forecast\nmodel: {cell: lstm, hidden: 8}\ntrain: {epochs: 1}\nforecast: {tau: 16, k: [1, 2]}\n")
    values = "".join(f"{(i % 7) * 1.5 + i / 10}\n" for i in range(80)).encode()
    result = cli("forecast", "-", "--spec", str(spec), "--train-horizon", "3", "--out", "r", *FAST, stdin=values)
    assert result.code == 0, result.err
    saved = yaml.safe_load(Path("r/spec.yaml").read_text())
    assert saved["model"]["cell"] == "lstm" and saved["model"]["hidden"] == 8
    assert saved["forecast"]["tau"] == 16 and saved["forecast"]["train_horizon"] == 3 and saved["train"]["epochs"] == 1
    assert saved["train"]["lr"] == 0.005  # the recurrent family's default, chosen because the spec names lstm
    assert [line.split()[0] for line in result.out.strip().splitlines()[1:]] == ["1"] * 9 + ["2"] * 9 + ["multi"] * 9


def test_bidirectional_is_refused_with_the_reason(cli):
    line = one_error_line(cli("forecast", "--synthetic", "sine", "--model", "gru", "--bidirectional", *FAST), 2)
    assert "read the future values" in line


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--model", "transformer", "--synthetic", "sine"], 2, "model.cell"),
        (["--synthetic", "sine", "--k", "1,x"], 2, "--k: expected comma-separated positive integers"),
        (["--synthetic", "cosine"], 2, "forecast.synthetic"),
        (["--synthetic", "sine", "--tau", "0"], 2, "forecast.tau must be > 0"),
        (["--synthetic", "sine", "--n-train", "1000"], 2, "leaves nothing to test"),
        ([], 2, "no data"),
        (["nope.csv"], 1, "no such file or catalog corpus: nope.csv"),
        (["--synthetic", "sine", "--length", "5"], 1, "series too short: 5 value(s), need at least 8 to split into training, validation"),
        (["--synthetic", "sine", "--length", "12", "--tau", "6"], 1, "the training part before validation has 7 values and needs at least 8"),
        (["--synthetic", "sine", "--length", "12", "--difference", "2,x"], 2, "--difference: expected auto, 0, or lags"),
        (["--synthetic", "sine", "--level", "100"], 2, "forecast.intervals must be percentages between 1 and 99"),
    ],
)
def test_bad_flags_and_data_give_one_line(cli, args, code, message):
    assert message in one_error_line(cli("forecast", *args, *FAST), code)


def test_bad_files_give_one_line(cli, tmp_path):
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("t,v\n" + "".join(f"{i},{'' if i == 5 else i * i % 11}\n" for i in range(30)))
    line = one_error_line(cli("forecast", str(gaps), *FAST), 1)
    assert "1 missing value(s) (first on line 7); pass --fill ffill or --fill interpolate" in line
    assert cli("forecast", str(gaps), "--fill", "interpolate", "--epochs", "1", "--k", "1", *FAST).code == 0
    flat = tmp_path / "flat.txt"
    flat.write_text("5\n" * 30)
    assert "constant" in one_error_line(cli("forecast", str(flat), *FAST), 1)
    words = tmp_path / "words.csv"
    words.write_text("t,v\n1,3\n2,4\n3,five\n4,6\n")
    assert "line 4: 'five' in v is not a number" in one_error_line(cli("forecast", str(words), *FAST), 1)


def test_pipeline_in_a_real_subprocess(tmp_path):
    """stdout carries only the CSV, so `seqtool forecast data --horizon H > next.csv` works."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    data = tmp_path / "data.csv"
    data.write_text("day,value\n" + "".join(f"2024-01-{d:02d},{d % 5 + d / 3:.3f}\n" for d in range(1, 31)))
    proc = subprocess.run([sys.executable, "-m", "seqtool", "forecast", str(data), "--horizon", "3", "--epochs", "2", "--k", "1"],
                          capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().strip().splitlines()
    assert lines[0] == "time,forecast" and [line.split(",")[0] for line in lines[1:]] == ["2024-01-31", "2024-02-01", "2024-02-02"]
    assert "run directory:" in proc.stderr.decode()


def test_train_task_forecast_and_eval_reproduce_the_report(cli, tmp_path):
    """The one training path: `train --task forecast` writes the run; `eval RUN` reprints its
    held-out table exactly; `eval RUN OTHER.csv` scores another series with the run's transform."""
    result = cli("train", "--task", "forecast", "airline-passengers", "--n-train", "120", "--k", "1,12", "--epochs", "2",
                 "--transform", "log", "--difference", "12", "--out", "air", *FAST)
    assert result.code == 0, result.err
    report = json.loads(Path("air/report.json").read_text())["forecast"]
    scored = cli("eval", "air", "--json")
    assert scored.code == 0, scored.err
    again = json.loads(scored.out)
    assert again["k_step"] == report["k_step"] and again["multi_step"] == report["multi_step"]
    table = cli("eval", "air")
    assert table.out.splitlines()[0].split() == ["k", "method", "n", "mae", "rmse", "smape", "mase"]
    from seqtool.data.corpora import locate

    lines = locate("airline-passengers").read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(lines[:133]) + "\n")  # 132 months: 120 train + 12 test
    other = json.loads(cli("eval", "air", "short.csv", "--json").out)
    assert (other["n_train"], other["n_test"], other["transform"], other["difference"]) == (120, 12, "log", [12])
    assert other["combination"] == again["combination"]  # the run's choice, not a new one
    assert one_error_line(cli("eval", "air", "--beam", "2"), 2).endswith("--beam is for translation runs; this is a forecasting run")


def snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_forecast_from_a_saved_run_continues_the_new_data(cli, tmp_path):
    """No training: the run's network, transform, combination and interval widths on new data; the
    run directory untouched, the output deterministic, timestamps continued."""
    from seqtool.data.corpora import locate

    trained = cli("forecast", "airline-passengers", "--n-train", "120", "--k", "1,12", "--epochs", "3", "--out", "air", *FAST)
    assert trained.code == 0, trained.err
    before = snapshot(Path("air"))
    first = cli("forecast", "--checkpoint", "air", "airline-passengers", "--horizon", "12", "--level", "80,95")
    assert first.code == 0, first.err
    lines = first.out.strip().splitlines()
    assert lines[0] == "time,forecast,lo-80,hi-80,lo-95,hi-95"
    assert [line.split(",")[0] for line in lines[1:]] == [f"1961-{m:02d}" for m in range(1, 13)]
    for line in lines[1:]:
        f, lo80, hi80, lo95, hi95 = map(float, line.split(",")[1:])
        assert lo95 <= lo80 < f < hi80 <= hi95
    assert cli("forecast", "-c", "air", "airline-passengers", "--horizon", "12", "--level", "80,95").out == first.out
    assert snapshot(Path("air")) == before
    # a shorter history: the forecast starts right after it, from the run's model, not a refit
    full = locate("airline-passengers").read_text().splitlines()
    (tmp_path / "to1958.csv").write_text("\n".join(full[:121]) + "\n")
    short = cli("forecast", "-c", "air", "to1958.csv", "--horizon", "2", "--out", "next.csv")
    assert short.code == 0 and short.out == ""
    assert Path("next.csv").read_text().splitlines()[1].startswith("1959-01,")
    report = json.loads(Path("air/report.json").read_text())["forecast"]
    one = next(r for r in report["k_step"] if r["k"] == 1 and r["method"] == "model")
    assert report["n_train"] == 120 and one["n"] == 24


def test_the_network_is_an_ensemble_and_runs_saved_with_one_network_still_forecast(cli, tmp_path):
    """The MLP network is five MLPs side by side (--ensemble); a run saved before that (one network,
    its spec holding the panel's ensemble default) restores as one network and forecasts as it did."""
    import torch

    from seqtool.core.run import save_checkpoint

    assert cli("forecast", "airline-passengers", "--model", "mlp", "--n-train", "120", "--k", "1,12", "--epochs", "2", "--out", "ens",
               *FAST).code == 0
    payload = torch.load(Path("ens/checkpoints/best.pt"), weights_only=True)
    assert payload["task_state"]["members"] == 5 and payload["model"]["net.hidden.weight"].shape == (5, 13, 10)
    weights = json.loads(Path("ens/report.json").read_text())["forecast"]["weights"]
    assert all(len(w) == 12 for w in weights.values())  # one weight per step ahead
    assert all(sum(w[j] for w in weights.values()) == pytest.approx(1.0) for j in range(12))
    assert cli("forecast", "airline-passengers", "--model", "mlp", "--n-train", "120", "--k", "1", "--epochs", "2", "--ensemble", "1",
               "--out", "one", *FAST).code == 0
    before = cli("forecast", "-c", "one", "--horizon", "4")
    assert before.code == 0, before.err
    path = Path("one/checkpoints/best.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["model"]["net.0.weight"].shape == (10, 13)  # the classic net's own keys
    del payload["task_state"]["members"]
    payload["spec"]["forecast"]["ensemble"] = 5
    save_checkpoint(path, payload)
    after = cli("forecast", "-c", "one", "--horizon", "4")
    assert after.code == 0, after.err
    assert after.out == before.out
    assert "side-by-side members are for --model mlp" in one_error_line(
        cli("forecast", "airline-passengers", "--model", "gru", "--ensemble", "3", "--out", "g", *FAST), 2)
    assert not Path("g").exists()


@pytest.mark.parametrize("args, code, message", [
    (["--horizon", "0"], 2, "give --horizon H"),
    (["--horizon", "3", "--level", "90"], 2, "--level 90: the run calibrated intervals at 80, 95 only"),
    (["--horizon", "3", "--epochs", "9"], 2, "--epochs does not apply with --checkpoint"),
])
def test_forecast_from_a_saved_run_refuses_what_does_not_apply(cli, args, code, message):
    assert cli("forecast", "--synthetic", "sine", "--length", "200", "--epochs", "1", "--k", "1", "--out", "s", *FAST).code == 0
    assert message in one_error_line(cli("forecast", "-c", "s", *args), code)


def test_training_forecast_with_horizon_and_levels_prints_the_bands(cli):
    result = cli("forecast", "--synthetic", "sine", "--length", "200", "--epochs", "1", "--k", "1", "--horizon", "3", "--level", "80",
                 "--out", "s", *FAST)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0] == "time,forecast,lo-80,hi-80" and len(lines) == 4
    for line in lines[1:]:
        _, f, lo, hi = line.split(",")
        assert float(lo) < float(f) < float(hi)
    saved = json.loads(Path("s/report.json").read_text())["forecast"]["horizon"]
    assert [round(row["forecast"], 6) for row in saved] == [round(float(line.split(",")[1]), 6) for line in lines[1:]]


def test_a_missing_month_is_refused_or_filled_and_counted(cli, tmp_path):
    months = [f"{1990 + i // 12}-{i % 12 + 1:02d}" for i in range(72)]
    rows = [f"{m},{100 + 10 * ((i % 12) in (5, 6, 7)) + i * 0.5 + (i * 7919 % 13) / 5:.2f}" for i, m in enumerate(months) if i != 30]
    path = tmp_path / "gappy.csv"
    path.write_text("month,sales\n" + "\n".join(rows) + "\n")
    line = one_error_line(cli("forecast", str(path), "--k", "1", "--out", "r", *FAST), 1)
    assert line == (f"seqtool: error: {path}: line 32: 1992-08 follows 1992-06, 1992-07 expected (the step is 1 month); "
                    "1 missing time step(s) in all; pass --fill ffill or --fill interpolate to fill them")
    assert not Path("r").exists()  # nothing written
    result = cli("forecast", str(path), "--k", "1", "--fill", "interpolate", "--epochs", "1", "--out", "r", *FAST)
    assert result.code == 0, result.err
    report = json.loads(Path("r/report.json").read_text())["forecast"]
    assert (report["values"], report["filled"], report["gaps_filled"]) == (72, 1, 1) and report["season"] == 12
    assert "--fill filled 1 value(s), 1 of them missing time steps" in Path("r/report.md").read_text()


def test_model_auto_trains_the_latent_gru_where_the_series_can_train_it_else_the_mlps():
    """--model auto (the default for one series): the spec is the one `--model gru` would give (its
    defaults, the flags kept) when the GRU's task builds on the data, else `--model mlp`'s."""
    from seqtool.core.spec import resolve_spec

    def resolved(data, **flags):
        return resolve_spec(None, data, {"task": "forecast", **{f"forecast.{k}": v for k, v in flags.items()}})

    long = resolved("airline-passengers", n_train=120)
    assert (long.model.cell, long.train.epochs, long.forecast.train_horizon, long.forecast.ensemble) == ("gru", 30, 16, 1)
    short = resolved("monthly-shampoo-sales", n_train=24)  # 16 values before validation: too few for 16 steps of rollout
    assert (short.model.cell, short.train.epochs, short.forecast.train_horizon, short.forecast.ensemble) == ("mlp", 5, 1, 5)
    assert resolved("airline-passengers", ensemble=3).model.cell == "mlp"  # members are for the MLP
    kept = resolve_spec(None, "airline-passengers", {"task": "forecast", "train.epochs": 3, "forecast.tau": 20})
    assert (kept.model.cell, kept.train.epochs, kept.forecast.tau, kept.train.lr) == ("gru", 3, 20, 0.005)


def test_model_auto_reads_standard_input_once(cli):
    values = "\n".join(str(100 + 10 * math.sin(i / 2) + i) for i in range(120)) + "\n"
    result = cli("forecast", "-", "--k", "1", "--epochs", "1", "--out", "piped", *FAST, stdin=values.encode())
    assert result.code == 0, result.err
    report = json.loads(Path("piped/report.json").read_text())["forecast"]
    assert (report["model"], report["values"]) == ("gru", 120)
