"""The cells from their equations agree with torch's reference cells, step by step and unrolled."""

import pytest
import torch
from torch import nn

from seqtool.nn.cells import gru_step, lstm_step, rnn_step, run_layer

TOL = dict(rtol=1e-12, atol=1e-12)


pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _xp(cell: nn.Module, x: torch.Tensor, fold_hh_bias: bool) -> torch.Tensor:
    bias = cell.bias_ih + cell.bias_hh if fold_hh_bias else cell.bias_ih
    return x @ cell.weight_ih.t() + bias


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_step_matches_torch_cell(nonlinearity):
    ref = nn.RNNCell(5, 6, nonlinearity=nonlinearity)
    x, h = torch.randn(3, 5), torch.randn(3, 6)
    got = rnn_step(_xp(ref, x, True), h, ref.weight_hh.t(), nonlinearity)
    torch.testing.assert_close(got, ref(x, h), **TOL)


def test_gru_step_matches_torch_cell():
    ref = nn.GRUCell(5, 6)
    x, h = torch.randn(3, 5), torch.randn(3, 6)
    got = gru_step(_xp(ref, x, False), h, ref.weight_hh.t(), ref.bias_hh)
    torch.testing.assert_close(got, ref(x, h), **TOL)


def test_lstm_step_matches_torch_cell():
    ref = nn.LSTMCell(5, 6)
    x, h, c = torch.randn(3, 5), torch.randn(3, 6), torch.randn(3, 6)
    got_h, got_c = lstm_step(_xp(ref, x, True), (h, c), ref.weight_hh.t())
    want_h, want_c = ref(x, (h, c))
    torch.testing.assert_close(got_h, want_h, **TOL)
    torch.testing.assert_close(got_c, want_c, **TOL)


def test_gru_update_gate_saturated_open_keeps_the_state():
    # Z = 1 exactly (sigmoid(60) rounds to 1 in float64): H_t = H_{t-1} whatever the input
    h = torch.randn(2, 4)
    xp = torch.randn(2, 12)
    xp[:, 4:8] = 60.0
    torch.testing.assert_close(gru_step(xp, h, torch.randn(4, 12), torch.zeros(12)), h, **TOL)


def test_lstm_open_forget_and_closed_input_gate_carry_the_cell_unchanged():
    h, c = torch.randn(2, 4), torch.randn(2, 4)
    xp = torch.randn(2, 16)
    xp[:, 0:4] = -60.0  # input gate closed
    xp[:, 4:8] = 60.0  # forget gate open
    xp[:, 12:16] = 60.0  # output gate open
    new_h, new_c = lstm_step(xp, (h, c), torch.zeros(4, 16))
    torch.testing.assert_close(new_c, c, rtol=0, atol=0)
    torch.testing.assert_close(new_h, torch.tanh(c), **TOL)


def _layer_weights(ref: nn.RNNBase, suffix: str):
    return [getattr(ref, f"{n}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


@pytest.mark.parametrize("cell,nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")])
def test_run_layer_both_directions_match_a_bidirectional_torch_layer(cell, nonlinearity):
    kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    ref = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](5, 6, bidirectional=True, **kwargs)
    x = torch.randn(7, 3, 5)
    h0 = torch.randn(2, 3, 6)
    c0 = torch.randn(2, 3, 6)
    want_out, want_state = ref(x, (h0, c0) if cell == "lstm" else h0)
    for d, suffix in enumerate(["_l0", "_l0_reverse"]):
        init = (h0[d], c0[d]) if cell == "lstm" else h0[d]
        out, last, hs = run_layer(cell, x, init, *_layer_weights(ref, suffix), reverse=d == 1, nonlinearity=nonlinearity)
        torch.testing.assert_close(out, want_out[..., d * 6 : (d + 1) * 6], **TOL)
        if cell == "lstm":
            torch.testing.assert_close(last[0], want_state[0][d], **TOL)
            torch.testing.assert_close(last[1], want_state[1][d], **TOL)
        else:
            torch.testing.assert_close(last, want_state[d], **TOL)
        # per-step states are in time order; the final state is the last one the loop produced
        assert len(hs) == 7
        assert torch.equal(torch.stack(hs), out)
        assert (hs[0] if d == 1 else hs[-1]) is (last[0] if cell == "lstm" else last)


def test_per_step_states_are_the_tensors_the_recurrence_reads():
    ref = nn.GRU(3, 4)
    x = torch.randn(5, 2, 3)
    out, last, hs = run_layer("gru", x, torch.zeros(2, 4), *_layer_weights(ref, "_l0"))
    grads = torch.autograd.grad(last.sum(), hs)
    # the loss reads only the last state, yet every earlier step receives gradient through the chain
    assert all(g.abs().sum() > 0 for g in grads)
    torch.testing.assert_close(grads[-1], torch.ones(2, 4), rtol=0, atol=0)


def test_unknown_cell_and_nonlinearity_are_refused():
    w = torch.zeros(4, 3), torch.zeros(4, 4)
    with pytest.raises(ValueError, match="unknown cell"):
        run_layer("elman", torch.zeros(2, 1, 3), torch.zeros(1, 4), *w)
    with pytest.raises(ValueError, match="nonlinearity"):
        run_layer("rnn", torch.zeros(2, 1, 3), torch.zeros(1, 4), *w, nonlinearity="sigmoid")
