import math

import pytest
import torch

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.forecast.series import Scaler, Transform, check_series, fill_missing, future_times, parse_series, synthetic_sine, windows

AIRLINE_HEAD = '"Month","Passengers"\r\n"1949-01",112\r\n"1949-02",118\r\n"1949-03",132\r\n"1949-04",129'


def test_csv_with_header_picks_last_numeric_column_and_first_as_time():
    s = parse_series(AIRLINE_HEAD)
    assert s.values.tolist() == [112, 118, 132, 129]
    assert s.times == ["1949-01", "1949-02", "1949-03", "1949-04"]
    assert (s.name, s.time_name) == ("Passengers", "Month")


def test_default_is_the_last_numeric_column_not_the_last_column():
    text = "t,a,b,note\n1,10,100,x\n2,11,101,y\n3,12,102,z\n"
    s = parse_series(text)
    assert s.name == "b" and s.values.tolist() == [100, 101, 102]
    assert s.times == ["1", "2", "3"]


def test_column_by_name_or_position_and_time_column():
    text = "a,b,c\n1,10,7\n2,20,8\n"
    assert parse_series(text, column="a").values.tolist() == [1, 2]
    s = parse_series(text, column="2", time_column="c")
    assert s.values.tolist() == [10, 20] and s.times == ["7", "8"]


def test_unknown_column_names_the_choices():
    with pytest.raises(UsageError, match="--column 'x' not found; columns: a, b"):
        parse_series("a,b\n1,2\n", column="x")
    with pytest.raises(UsageError, match="same column"):
        parse_series("a,b\n1,2\n", column="b", time_column="b")


def test_one_number_per_line_with_blank_lines_and_semicolons():
    s = parse_series("1.5\n\n2.5\n-3e2\n\n")
    assert s.values.tolist() == [1.5, 2.5, -300.0] and s.times == ["1", "2", "3"] and s.name == "value"
    assert parse_series("value\n4\n5\n").values.tolist() == [4, 5]
    semi = parse_series("d;v\np;1\nq;2\n")
    assert semi.values.tolist() == [1, 2] and semi.times == ["p", "q"]


def test_missing_values_are_an_error_naming_count_and_line():
    with pytest.raises(SeqtoolError, match=r"2 missing value\(s\) \(first on line 3\); pass --fill"):
        parse_series("t,v\n1,1\n2,\n3,NA\n4,4\n")


def test_fill_ffill_and_interpolate():
    text = "t,v\n1,\n2,1\n3,NA\n4,?\n5,4\n6,nan\n"
    assert parse_series(text, fill="ffill").values.tolist() == [1, 1, 1, 1, 4, 4]
    s = parse_series(text, fill="interpolate")
    assert s.values.tolist() == [1, 1, 2, 3, 4, 4] and s.filled == 4
    assert fill_missing([None, 2.0, None, None, 8.0], "interpolate") == [2.0, 2.0, 4.0, 6.0, 8.0]


def test_non_numeric_cell_names_the_line():
    with pytest.raises(SeqtoolError, match=r"line 3: 'abc' in v is not a number"):
        parse_series("t,v\n1,1\n2,abc\n3,3\n4,4\n")
    with pytest.raises(SeqtoolError, match="not a number"):
        parse_series("1\n2\ninf\n")


def test_no_numeric_column_empty_and_bad_fill():
    with pytest.raises(SeqtoolError, match="no numeric column"):
        parse_series("a,b\nx,y\nz,w\n")
    with pytest.raises(SeqtoolError, match="no data"):
        parse_series("\n\n")
    with pytest.raises(UsageError, match="--fill"):
        parse_series("1\n2\n", fill="mean")
    with pytest.raises(SeqtoolError, match="every value is missing"):
        parse_series("t,v\n1,NA\n2,NA\n", column="v", fill="ffill")


def test_check_series_too_short_and_constant():
    s = parse_series("1\n2\n3\n")
    with pytest.raises(SeqtoolError, match="too short: 3 value"):
        check_series(s, 5)
    check_series(s, 3)
    with pytest.raises(SeqtoolError, match="constant"):
        check_series(parse_series("7\n7\n7\n7\n"), 2)


def test_synthetic_sine_is_the_classic_formula_and_seeded():
    clean = synthetic_sine(50, noise=0.0)
    t = torch.arange(1, 51, dtype=torch.float64)
    assert torch.equal(clean.values, torch.sin(0.01 * t)) and clean.times[0] == "1" and clean.times[-1] == "50"
    a, b, c = synthetic_sine(1000, 0.2, seed=3), synthetic_sine(1000, 0.2, seed=3), synthetic_sine(1000, 0.2, seed=4)
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)
    residual = a.values - torch.sin(0.01 * torch.arange(1, 1001, dtype=torch.float64))
    assert 0.18 < residual.std().item() < 0.22  # noise is the standard deviation
    with pytest.raises(UsageError):
        synthetic_sine(0)
    with pytest.raises(UsageError):
        synthetic_sine(10, noise=-1)


def test_windows_features_and_labels():
    x = torch.arange(7.0)
    f, y = windows(x, 3)
    assert f.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]
    assert y.tolist() == [3, 4, 5, 6]
    f, y = windows(torch.arange(3.0), 3)
    assert f.shape == (0, 3) and y.shape == (0,)


def test_scaler_uses_training_statistics_only():
    train = torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64)
    sc = Scaler.fit(train)
    assert sc.mean == 4.0 and math.isclose(sc.std, math.sqrt(5.0))
    test = torch.tensor([1000.0, -1000.0], dtype=torch.float64)
    assert torch.allclose(sc.transform(test), (test - 4.0) / math.sqrt(5.0))
    assert torch.allclose(sc.inverse(sc.transform(test)), test)
    assert Scaler(**sc.state()) == sc
    with pytest.raises(SeqtoolError, match="constant"):
        Scaler.fit(torch.tensor([2.0, 2.0, 2.0]))


def test_future_times_continue_the_time_axis():
    assert future_times(["1958-11", "1958-12"], 3) == ["1959-01", "1959-02", "1959-03"]
    assert future_times(["1981-12-30", "1981-12-31"], 2) == ["1982-01-01", "1982-01-02"]
    assert future_times(["1990-01-01", "1990-01-08", "1990-01-15"], 1) == ["1990-01-22"]
    assert future_times(["5", "10", "15"], 2) == ["20", "25"]
    assert future_times(["0.5", "1.0"], 2) == ["1.5", "2"]
    assert future_times(["a", "b", "c"], 2) == ["4", "5"]


def test_transform_differences_and_undoes_them_with_its_own_forecasts():
    x = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0], dtype=torch.float64)
    tr = Transform(Scaler(0.0, 1.0), None, (2,))
    assert tr.forward(x).tolist() == [20.0, 20.0, 20.0]  # z[i] belongs to x[i + 2]
    # forecasts of the differences from origin 3 (x[3] = 40) for x[4], x[5], x[6]:
    # x[4] = 1 + x[2], x[5] = 2 + x[3], x[6] = 3 + (forecast of x[4])
    table = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    assert tr.to_original(table, x, [3]).tolist() == [[31.0, 42.0, 34.0]]


def test_transform_log_and_scaling_fitted_on_the_training_part():
    train = torch.tensor([1.0, 2.0, 8.0, 16.0], dtype=torch.float64)
    tr = Transform.fit(train, 0.0, [1])  # lambda 0: the log
    logs = torch.log(train)
    diffs = logs[1:] - logs[:-1]  # log 2, log 4, log 2
    assert math.isclose(tr.scaler.mean, diffs.mean().item()) and math.isclose(tr.scaler.std, diffs.std(correction=0).item())
    z = tr.forward(train)
    assert torch.allclose(tr.to_original(z[None, 1:], train, [1]), train[2:][None])  # exact z gives back the values
    with pytest.raises(SeqtoolError, match="--transform log needs positive values; value 2 is 0"):
        Transform.fit(torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64), 0.0)
    with pytest.raises(SeqtoolError, match="constant"):
        Transform.fit(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), None, [1])  # a straight line: all differences equal
    assert Transform.from_state(tr.state()) == tr
    old = {"scaler": {"mean": 0.5, "std": 2.0}, "log": True, "lag": 12}  # as runs before Box-Cox saved it
    assert Transform.from_state(old) == Transform(Scaler(0.5, 2.0), 0.0, (12,))


def test_seasonal_and_first_differences_box_cox_and_their_exact_inverse():
    """(1 - B)(1 - B^12) with Box-Cox 0.5: the model's exact z, fed back from any origin, gives the series again;
    and a forecast of z = 0 (no change in the changes) continues last year's pattern shifted by the latest change."""
    t = torch.arange(60, dtype=torch.float64)
    x = 100 + t + 10 * torch.sin(2 * math.pi * t / 12) + torch.linspace(0, 3, 60) ** 2
    tr = Transform.fit(x[:48], 0.5, [12, 1])
    assert tr.coefficients() == [1.0, -1.0] + [0.0] * 10 + [-1.0, 1.0]
    b = (x ** 0.5 - 1) / 0.5
    expected = (b[13:] - b[12:-1]) - (b[1:-12] - b[:-13])
    assert torch.allclose(tr.scaler.inverse(tr.forward(x)), expected)
    z = tr.forward(x)
    for origin in (20, 35, 47):
        table = z[origin - 13 + 1: origin - 13 + 1 + 8][None]
        assert torch.allclose(tr.to_original(table, x, [origin]), x[origin + 1: origin + 9][None])
    flat = tr.to_original(torch.full((1, 1), -tr.scaler.mean / tr.scaler.std, dtype=torch.float64), x, [47])
    inverse = lambda v: (0.5 * v + 1) ** 2  # noqa: E731
    assert torch.allclose(flat, inverse(b[47] + b[36] - b[35])[None, None])


# ---- gaps in the time column ----------------------------------------------------------------------
@pytest.mark.parametrize("rows, line, message", [
    (["2020-01,1", "2020-02,2", "2020-04,3", "2020-05,5"], 4, "2020-04 follows 2020-02, 2020-03 expected (the step is 1 month)"),
    (["2020-01,1", "2020-04,2", "2020-10,3", "2021-01,5"], 4, "2020-10 follows 2020-04, 2020-07 expected (the step is 3 months)"),
    (["1990,1", "1991,2", "1993,3", "1994,1"], 4, "1993 follows 1991, 1992 expected (the step is 1)"),
    (["2020-01-06,1", "2020-01-13,2", "2020-01-27,3", "2020-02-03,4"], 4, "2020-01-27 follows 2020-01-13, 2020-01-20 expected (the step is 7 days)"),
    (["2020-01-01 00:00,1", "2020-01-01 01:00,2", "2020-01-01 03:00,3", "2020-01-01 04:00,4"], 4,
     "2020-01-01 03:00 follows 2020-01-01 01:00, 2020-01-01 02:00:00 expected (the step is 1 hour)"),
])
def test_a_missing_step_is_refused_with_its_line_and_the_expected_stamp(rows, line, message):
    with pytest.raises(SeqtoolError) as info:
        parse_series("t,v\n" + "\n".join(rows) + "\n", source="s.csv")
    assert str(info.value) == (f"s.csv: line {line}: {message}; 1 missing time step(s) in all; "
                               "pass --fill ffill or --fill interpolate to fill them")


def test_fill_inserts_the_missing_steps_and_counts_them():
    text = "month,v\n2020-01,1\n2020-02,2\n2020-05,8\n2020-06,,\n2020-07,3\n"
    s = parse_series(text, fill="interpolate")
    assert s.times == ["2020-01", "2020-02", "2020-03", "2020-04", "2020-05", "2020-06", "2020-07"]
    assert s.values.tolist() == [1.0, 2.0, 4.0, 6.0, 8.0, 5.5, 3.0]
    assert (s.filled, s.gaps_filled) == (3, 2)  # two missing months and one empty cell
    assert parse_series(text, fill="ffill").values.tolist() == [1.0, 2.0, 2.0, 2.0, 8.0, 8.0, 3.0]
    hours = parse_series("t,v\n2020-01-01T00:00,1\n2020-01-01T01:00,2\n2020-01-01T03:00,4\n2020-01-01T04:00,5\n", fill="interpolate")
    assert hours.times[2] == "2020-01-01T02:00" and hours.values[2] == 3.0  # written as the input writes them


def test_skipped_days_are_kept_unless_fill_and_odd_steps_are_refused():
    text = "day,v\n2020-01-01,1\n2020-01-02,2\n2020-01-04,4\n2020-01-05,5\n"
    assert parse_series(text).times == ["2020-01-01", "2020-01-02", "2020-01-04", "2020-01-05"]  # as today: counted later
    filled = parse_series(text, fill="interpolate")
    assert filled.times[2] == "2020-01-03" and filled.values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] and filled.gaps_filled == 1
    with pytest.raises(SeqtoolError, match=r"line 4: time 2020-02 is not a whole number of steps \(1 month\) after 2020-02"):
        parse_series("m,v\n2020-01,1\n2020-02,2\n2020-02,3\n2020-03,4\n")
    labels = parse_series("m,v\n1-01,1\n1-02,2\n1-04,3\n")  # labels that are not dates or integers: taken as they come
    assert labels.times == ["1-01", "1-02", "1-04"]
