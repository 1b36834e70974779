"""The forecasting task: splitting, scaling without leakage, checks on the data, and the report's
numbers against values computed by hand with a hand-built linear model."""

import math

import pytest
import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.nn.forecaster import ARForecaster
from seqtool.core.spec import apply_overrides, spec_defaults
from seqtool.forecast.task import ForecastTask


#: the preprocessing fixed, so that values can be computed by hand
PLAIN = {"forecast.transform": "none", "forecast.difference": "0", "forecast.tau": 4}


def make_spec(corpus=None, cell="mlp", **overrides):
    spec = spec_defaults("forecast", cell)
    spec.data.corpus = str(corpus) if corpus else None
    return apply_overrides(spec, overrides)


@pytest.fixture
def csv_file(tmp_path):
    def write(values, name="s.csv", header="t,v"):
        path = tmp_path / name
        path.write_text(header + "\n" + "".join(f"{i + 1},{v}\n" for i, v in enumerate(values)))
        return path

    return write


def test_defaults_follow_the_model_family():
    mlp, gru = spec_defaults("forecast", "mlp"), spec_defaults("forecast", "gru")
    assert spec_defaults("forecast").model.cell == "auto"  # chosen from the data (test_cli_forecast)
    with pytest.raises(UsageError, match="model.cell auto is chosen from the data when a spec is resolved"):
        ForecastTask.from_spec(spec_defaults("forecast"))
    assert (mlp.model.cell, mlp.model.hidden, mlp.forecast.tau, mlp.train.batch) == ("mlp", 10, None, 16)  # tau: season + 1
    assert (gru.model.cell, gru.model.hidden, gru.forecast.tau, gru.forecast.train_horizon) == ("gru", 32, None, 16)
    assert (mlp.forecast.transform, mlp.forecast.difference, mlp.forecast.combine) == ("auto", "auto", "auto")
    assert spec_defaults("lm").model.hidden == 256


def test_scaler_and_training_windows_see_only_the_training_part(csv_file):
    values = [math.sin(i / 3) + i / 10 for i in range(40)]
    a = ForecastTask.from_spec(make_spec(csv_file(values, "a.csv"), **PLAIN, **{"forecast.n_train": 30}))
    wild = values[:30] + [1e6 * (-1) ** i for i in range(10)]
    b = ForecastTask.from_spec(make_spec(csv_file(wild, "b.csv"), **PLAIN, **{"forecast.n_train": 30}))
    assert a.task_state() == b.task_state()
    assert torch.equal(a.segments, b.segments)
    train = torch.tensor(values[:30], dtype=torch.float64)
    assert math.isclose(a.transform.scaler.mean, train.mean().item()) and math.isclose(a.transform.scaler.std, train.std(correction=0).item())
    fit = 30 - a.n_val  # the network trains before the validation part
    assert a.n_val == 7 and a.segments.shape == (fit - 5 + 1, 5)  # tau 4 + one label; the last label is value `fit`
    assert torch.allclose(a.segments[-1].double(), a.transform.forward(train[fit - 5: fit]), atol=1e-6)
    auto = ForecastTask.from_spec(make_spec(csv_file(values, "a.csv"), **{"forecast.n_train": 30}))
    wild_auto = ForecastTask.from_spec(make_spec(csv_file(wild, "b.csv"), **{"forecast.n_train": 30}))
    assert auto.task_state() == wild_auto.task_state()  # the automatic choices too see only the training part


def test_default_split_and_season(csv_file, tmp_path):
    assert ForecastTask.from_spec(make_spec(csv_file(range(50)))).n_train == 40  # the first 80%
    sine = ForecastTask.from_spec(make_spec(**{"forecast.synthetic": "sine"}))
    assert (sine.n_train, len(sine.series), sine.season) == (600, 1000, 1)
    monthly = tmp_path / "m.csv"
    monthly.write_text("month,x\n" + "".join(f"{1950 + i // 12}-{i % 12 + 1:02d},{i + (i % 12) ** 2}\n" for i in range(48)))
    assert ForecastTask.from_spec(make_spec(monthly)).season == 12


def test_bad_data_and_combinations(csv_file):
    with pytest.raises(SeqtoolError, match="too short: 5 value"):
        ForecastTask.from_spec(make_spec(csv_file([1, 2, 3, 4, 5])))
    with pytest.raises(SeqtoolError, match="constant"):
        ForecastTask.from_spec(make_spec(csv_file([3] * 20)))
    with pytest.raises(UsageError, match="leaves nothing to test"):
        ForecastTask.from_spec(make_spec(csv_file(range(20)), **{"forecast.n_train": 20}))
    with pytest.raises(SeqtoolError, match="the training part before validation has 4 values and needs at least 7"):
        ForecastTask.from_spec(make_spec(csv_file(range(20)), **PLAIN, **{"forecast.n_train": 5, "forecast.train_horizon": 2}))
    with pytest.raises(UsageError, match="bidirectional cannot be used for forecasting"):
        ForecastTask.from_spec(make_spec(csv_file(range(20)), "gru", **{"model.bidirectional": True}))
    with pytest.raises(UsageError, match="either a data file or --synthetic"):
        ForecastTask.from_spec(make_spec(csv_file(range(20)), **{"forecast.synthetic": "sine"}))
    with pytest.raises(UsageError, match="no data"):
        ForecastTask.from_spec(make_spec())
    with pytest.raises(UsageError, match="--k 50,60: no test value"):
        ForecastTask.from_spec(make_spec(csv_file(range(20)), **{"forecast.k": [50, 60]}))
    assert ForecastTask.from_spec(make_spec(csv_file(range(20)), **{"forecast.k": [1, 50]})).skipped_k == [50]
    with pytest.raises(UsageError, match="forecast.k must be"):
        make_spec(**{"forecast.k": [0]})
    with pytest.raises(UsageError, match="'mlp' is only for forecast and panel; task lm takes rnn, gru or lstm"):
        apply_overrides(spec_defaults("lm"), {"model.cell": "mlp"})


def test_recurrent_context_shrinks_to_fit_a_short_training_part(csv_file):
    task = ForecastTask.from_spec(make_spec(csv_file([math.sin(i) for i in range(40)]), "gru", **PLAIN | {"forecast.tau": None},
                                            **{"forecast.n_train": 30}))
    assert task.context == 30 - task.n_val - 16 and task.segments.shape == (1, 30 - task.n_val)
    assert task.build_model().context == 7


def test_report_numbers_match_a_hand_built_model(csv_file):
    values = [1.0, 2.0, 4.0, 3.0, 5.0, 6.0, 8.0, 7.0, 9.0, 10.0, 12.0, 11.0]
    spec = make_spec(csv_file(values), **PLAIN, **{"forecast.n_train": 8, "forecast.k": [1, 2], "forecast.season": 2, "forecast.horizon": 3,
                                                   "forecast.combine": "none"})
    task = ForecastTask.from_spec(spec)
    net = nn.Linear(4, 1).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.5]]))  # ẑ_t = 0.5 z_{t-1} in scaled units
        net.bias.zero_()
    model = ARForecaster(4, net=net)
    res, _ = task.forecast_results(model, torch.device("cpu"))
    x, sc = torch.tensor(values, dtype=torch.float64), task.transform.scaler
    z = sc.transform(x)
    scale = (x[2:8] - x[:6]).abs().mean().item()  # in-sample seasonal naive (m = 2) on the training part
    assert math.isclose(res["mase_scale"], scale)
    rows = {(r["k"], r["method"]): r for r in res["k_step"]}
    for k in (1, 2):
        t = torch.arange(8, 12)
        pred = sc.inverse(0.5**k * z[t - k])
        assert math.isclose(rows[k, "model"]["mse"], ((pred - x[t]) ** 2).mean().item(), rel_tol=1e-9)
        assert math.isclose(rows[k, "model"]["mase"], (pred - x[t]).abs().mean().item() / scale, rel_tol=1e-9)
        assert math.isclose(rows[k, "naive"]["mae"], (x[t - k] - x[t]).abs().mean().item())
        assert math.isclose(rows[k, "seasonal naive"]["mae"], (x[t - 2] - x[t]).abs().mean().item())  # ceil(k/2) = 1 season back
        assert rows[k, "model"]["n"] == 4
    multi = {r["method"]: r for r in res["multi_step"]}
    expected = sc.inverse(z[7] * 0.5 ** torch.arange(1, 5, dtype=torch.float64))
    assert math.isclose(multi["model"]["mse"], ((expected - x[8:]) ** 2).mean().item(), rel_tol=1e-9)
    assert math.isclose(multi["seasonal naive"]["mae"], (torch.tensor([8.0, 7.0, 8.0, 7.0]) - x[8:]).abs().mean().item())
    assert [h["time"] for h in res["horizon"]] == ["13", "14", "15"]
    ahead = sc.inverse(z[11] * 0.5 ** torch.arange(1, 4, dtype=torch.float64))
    assert torch.allclose(torch.tensor([h["forecast"] for h in res["horizon"]], dtype=torch.float64), ahead)


def test_spec_files_pick_forecast_defaults_by_task_and_model():
    from seqtool.core.spec import from_dict

    assert from_dict({"task": "forecast"}).model.cell == "auto"
    assert from_dict({"task": "forecast"}, cell="mlp").train.epochs == 5
    gru = from_dict({"task": "forecast", "model": {"cell": "gru"}, "forecast": {"k": [1, 2]}})
    assert (gru.train.lr, gru.train.epochs, gru.forecast.k) == (0.005, 30, [1, 2])
    assert from_dict({"task": "forecast"}, cell="lstm").train.lr == 0.005  # a --model flag picks the family
    assert from_dict({"task": "forecast", "model": {"hidden": 7}}).model.hidden == 7  # the file beats the defaults
    with pytest.raises(UsageError, match="unknown key 'forecast.window'"):
        from_dict({"task": "forecast", "forecast": {"window": 3}})
    with pytest.raises(UsageError, match="forecast.fill"):
        from_dict({"task": "forecast", "forecast": {"fill": "mean"}})
