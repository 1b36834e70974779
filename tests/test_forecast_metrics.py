import math

import pytest
import torch

from seqtool.forecast.metrics import all_metrics, mae, mase, mse, seasonal_naive_scale, smape


def test_point_errors_against_hand_computed_values():
    f, a = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]  # errors -1, 0, -2
    assert math.isclose(mse(f, a), 5 / 3)
    assert math.isclose(mae(f, a), 1.0)
    # 2|e| / (|a| + |f|): 2/3, 0, 4/8
    assert math.isclose(smape(f, a), 100 * (2 / 3 + 0 + 0.5) / 3)


def test_smape_zero_over_zero_counts_as_perfect_and_range():
    assert smape([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert math.isclose(smape([1.0], [-1.0]), 200.0)


def test_seasonal_naive_scale_and_mase():
    train = [1.0, 3.0, 2.0, 6.0]
    assert math.isclose(seasonal_naive_scale(train, 1), (2 + 1 + 4) / 3)
    assert math.isclose(seasonal_naive_scale(train, 2), (1 + 3) / 2)
    assert math.isnan(seasonal_naive_scale(train, 4))
    assert math.isclose(mase([1.0, 2.0, 3.0], [2.0, 2.0, 5.0], 2.0), 0.5)
    assert math.isnan(mase([1.0], [2.0], 0.0))


def test_all_metrics_and_shape_checks():
    m = all_metrics(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]), 1.0)
    assert m == {"mse": 2.0, "mae": 1.0, "smape": pytest.approx(100 * (0 + 2 * 2 / 6) / 2), "mase": 1.0}
    with pytest.raises(ValueError, match="shape"):
        mse([1.0, 2.0], [1.0])
    assert math.isnan(mse([], []))
