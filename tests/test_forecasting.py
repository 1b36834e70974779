"""Prediction procedures checked against hand-built linear models whose forecasts are known in
closed form: x̂_t = 0.5 x_{t-1} gives k-step forecasts 0.5^k x_{t-k}; x̂_t = 2 x_{t-1} - x_{t-2}
continues a straight line."""

import pytest
import torch
from torch import nn

from seqtool.forecast.baselines import naive_table, seasonal_naive_table
from seqtool.forecast.predict import eval_targets, forecast_from, forecast_table, k_step, one_step
from seqtool.nn.forecaster import ARForecaster, LatentForecaster, build_forecaster
from seqtool.nn.stack import RecurrentStack


def linear_ar(weights: list[float]) -> ARForecaster:
    net = nn.Linear(len(weights), 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([weights]))
        net.bias.zero_()
    return ARForecaster(len(weights), net=net).double()


def relu_rnn(w_hh: float, head: float, context: int) -> LatentForecaster:
    """h_t = relu(x_t + w_hh h_{t-1}), x̂_{t+1} = head · h_t."""
    stack = RecurrentStack(1, 1, "rnn", batch_first=True, nonlinearity="relu")
    model = LatentForecaster(stack=stack, context=context)
    with torch.no_grad():
        for name, p in stack.named_parameters():
            p.fill_(1.0 if name.startswith("rnn.weight_ih") else w_hh if name.startswith("rnn.weight_hh") else 0.0)
        model.head.weight.fill_(head)
        model.head.bias.zero_()
    return model.double()


SERIES = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0], dtype=torch.float64)


def test_recursive_forecast_feeds_back_its_own_outputs():
    half = linear_ar([0.0, 0.5])  # x̂_t = 0.5 x_{t-1}
    got = forecast_table(half, SERIES, [5], 4)[0]  # x[5] = 9
    assert torch.allclose(got, torch.tensor([4.5, 2.25, 1.125, 0.5625], dtype=torch.float64))
    line = linear_ar([-1.0, 2.0])  # x̂_t = 2 x_{t-1} - x_{t-2}: continues the line through x[4], x[5]
    assert torch.allclose(forecast_table(line, SERIES, [5], 3)[0], torch.tensor([13.0, 17.0, 21.0], dtype=torch.float64))


def test_one_step_uses_the_true_history_not_predictions():
    line = linear_ar([-1.0, 2.0])
    targets = [6, 7, 8]
    expected = torch.stack([2 * SERIES[t - 1] - SERIES[t - 2] for t in targets])
    assert torch.allclose(one_step(line, SERIES, targets), expected)


def test_k_step_prediction_for_t_comes_from_t_minus_k():
    half = linear_ar([0.0, 0.5])
    targets = list(range(6, 12))
    preds = k_step(half, SERIES, targets, [1, 2, 4])
    for k in (1, 2, 4):
        assert torch.allclose(preds[k], 0.5**k * SERIES[torch.tensor(targets) - k])
    line = linear_ar([-1.0, 2.0])  # from origin o: x[o] + k (x[o] - x[o-1])
    t = torch.tensor(targets)
    assert torch.allclose(k_step(line, SERIES, targets, [3])[3], SERIES[t - 3] + 3 * (SERIES[t - 3] - SERIES[t - 4]))


def test_latent_model_rollout_closed_form():
    memoryless = relu_rnn(w_hh=0.0, head=0.5, context=8)  # x̂_{t+1} = 0.5 relu(x_t)
    targets = list(range(5, 12))
    preds = k_step(memoryless, SERIES, targets, [1, 3])
    for k in (1, 3):
        assert torch.allclose(preds[k], 0.5**k * SERIES[torch.tensor(targets) - k])
    assert torch.allclose(forecast_table(memoryless, SERIES, [5], 3)[0], torch.tensor([4.5, 2.25, 1.125], dtype=torch.float64))


def test_latent_model_reads_the_last_context_values_from_a_zero_state():
    summing = relu_rnn(w_hh=1.0, head=1.0, context=3)  # h = sum of the values read so far
    # origin 5 reads x[3..5] = 1 + 5 + 9; origin 1 (fewer than 3 values) reads x[0..1] = 3 + 1
    got = forecast_from(summing, SERIES, [5, 1], steps=2)
    # step 2 feeds the prediction back on top of the state: h + h
    assert got.tolist() == [[15.0, 30.0], [4.0, 8.0]]


def test_forecast_from_refuses_origins_without_enough_history():
    model = linear_ar([0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="needs 3"):
        forecast_from(model, SERIES, [1], 1)
    with pytest.raises(ValueError, match="outside"):
        forecast_from(model, SERIES, [12], 1)


def test_baselines():
    """Target t from origin t - k: column k - 1 of the table built at that origin."""
    import numpy as np

    x = np.arange(20.0)
    assert naive_table(x, [7, 8], 3)[:, 2].tolist() == [7, 8]
    assert seasonal_naive_table(x, [7, 8], 3, 4)[:, 2].tolist() == [6, 7]  # same season, last known at t-3
    assert seasonal_naive_table(x, [5], 5, 4)[:, 4].tolist() == [2]  # k=5 > m=4: two seasons back
    assert seasonal_naive_table(x, [9], 1, 1).tolist() == naive_table(x, [9], 1).tolist()


def test_eval_targets_share_points_across_methods():
    # need t - k + 1 >= min_context and t - m*ceil(k/m) >= 0
    assert eval_targets(10, 14, 3, 2, 4) == [10, 11, 12, 13]
    assert eval_targets(2, 8, 1, 4, 1) == [4, 5, 6, 7]
    assert eval_targets(2, 8, 2, 1, 6) == [6, 7]


def test_build_forecaster_shapes_and_classic_mlp():
    mlp = build_forecaster("mlp", 4, 10)
    assert [p.shape for p in mlp.parameters()] == [(10, 4), (10,), (1, 10), (1,)]
    x = torch.randn(3, 9)
    preds, carry = mlp.encode(x)
    assert preds.shape == (3, 6) and carry.shape == (3, 4)  # predictions for positions 4..9
    gru = build_forecaster("gru", 16, 8, layers=2)
    preds, state = gru.encode(x)
    assert preds.shape == (3, 9) and state.shape == (2, 3, 8)
    assert gru.rollout(x, 5).shape == (3, 5)
    lstm = build_forecaster("lstm", 16, 8)
    assert lstm.rollout(x, 4).shape == (3, 4)
    with pytest.raises(ValueError):
        build_forecaster("transformer", 4, 10)
    with pytest.raises(ValueError, match="bidirectional"):
        LatentForecaster(stack=RecurrentStack(1, 4, "gru", bidirectional=True, batch_first=True))


def test_side_by_side_members_forecast_their_mean_and_each_learns_alone():
    from seqtool.nn.forecaster import MemberMLP

    torch.manual_seed(0)
    ens = build_forecaster("mlp", 4, 6, members=3)
    assert isinstance(ens.net, MemberMLP) and ens.net.hidden.weight.shape == (3, 4, 6)
    x = torch.randn(2, 9)
    windows = x.unfold(1, 4, 1)
    each = ens.member_predictions(windows)
    assert each.shape == (2, 6, 3)
    for m in range(3):  # member m is an ordinary tau -> hidden -> 1 MLP with its own slice of the weights
        h = torch.relu(windows @ ens.net.hidden.weight[m] + ens.net.hidden.bias[m])
        assert torch.allclose(each[..., m], (h @ ens.net.out.weight[m] + ens.net.out.bias[m]).squeeze(-1), atol=1e-6)
    preds, _ = ens.encode(x)
    assert torch.allclose(preds, each.mean(-1)) and torch.allclose(ens.rollout(x, 3)[:, 0], preds[:, -1])
    assert not torch.equal(each[..., 0], each[..., 1])  # initialised differently
    each[..., 1].sum().backward()  # one member's loss moves only that member's weights
    grads = ens.net.hidden.weight.grad.abs().sum(dim=(1, 2))
    assert grads[1] > 0 and grads[0] == 0 and grads[2] == 0
    assert [p.shape for p in build_forecaster("mlp", 4, 10, members=1).parameters()] == [(10, 4), (10,), (1, 10), (1,)]
    with pytest.raises(ValueError, match="mlp"):
        build_forecaster("gru", 4, 10, members=2)


def test_segment_predictions_roll_out_the_last_horizon_positions():
    half = linear_ar([0.0, 0.5])
    seg = SERIES[None, :6]  # 3 1 4 1 5 9
    tf = half.segment_predictions(seg, horizon=1)  # positions 2..5 from the true values
    assert tf.tolist() == [[0.5, 2.0, 0.5, 2.5]]
    rolled = half.segment_predictions(seg, horizon=3)  # positions 2, 3 true; 4, 5 fed back from position 3
    assert rolled.tolist() == [[0.5, 2.0, 1.0, 0.5]]
    memoryless = relu_rnn(w_hh=0.0, head=0.5, context=8)
    assert memoryless.segment_predictions(seg, horizon=2).tolist() == [[1.5, 0.5, 2.0, 0.5, 0.25]]


def test_k_step_on_differences_integrates_back_to_levels():
    from seqtool.forecast.series import Scaler, Transform

    x = torch.tensor([1.0, 2.0, 4.0, 7.0, 11.0, 16.0, 22.0, 29.0], dtype=torch.float64)  # differences 1 2 3 4 5 6 7
    tr = Transform(Scaler(0.0, 1.0), None, (1,))
    line = linear_ar([-1.0, 2.0])  # continues the differences as a line: the next difference is one more
    targets = [6, 7]
    preds = k_step(line, x, targets, [1, 2], tr)
    assert preds[1].tolist() == [22.0, 29.0]  # exact: the differences really do grow by one
    assert preds[2].tolist() == [22.0, 29.0]
    # origin 4 (x = 11, last differences 3, 4): forecasts 11 + 5, + 6, + 7
    assert forecast_table(line, x, [4], 3, tr)[0].tolist() == [16.0, 22.0, 29.0]
    assert forecast_table(line, x, [2], 1, tr)[0].tolist() == [7.0]  # origin 2 is the first with tau = 2 differences
    with pytest.raises(ValueError):
        forecast_table(line, x, [1], 1, tr)
