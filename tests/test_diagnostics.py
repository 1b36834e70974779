"""Gradient-flow and spectral diagnostics against analytic values and an independent measurement."""

import json
import math

import pytest
import torch

from seqtool.lm.diagnostics import (
    GradFlow,
    format_grad_flow_table,
    grad_flow,
    plot_grad_flow,
    recurrent_singular_values,
)
from seqtool.nn.stack import RecurrentStack


pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _linear_rnn(impl: str, hidden: int = 3, batch_first: bool = False) -> RecurrentStack:
    """h_t = relu(0.5 h_{t-1} + sum(x_t)): with positive inputs and state, relu is the identity."""
    stack = RecurrentStack(2, hidden, "rnn", nonlinearity="relu", impl=impl, batch_first=batch_first)
    with torch.no_grad():
        stack.rnn.weight_hh_l0.copy_(0.5 * torch.eye(hidden))
        stack.rnn.weight_ih_l0.fill_(1.0)
        stack.rnn.bias_ih_l0.zero_()
        stack.rnn.bias_hh_l0.zero_()
    return stack


@pytest.mark.parametrize("impl", ["fused", "scratch"])
def test_linear_rnn_with_recurrent_weight_half_decays_as_half_to_the_power_T_minus_t(impl):
    T = 12
    x = torch.rand(T, 5, 2) + 0.1
    h0 = torch.rand(1, 5, 3) + 0.1
    flow = grad_flow(_linear_rnn(impl), x, h0)
    assert len(flow.norms) == 1 and flow.steps == T
    want = [math.sqrt(3) * 0.5 ** (T - t) for t in range(1, T + 1)]  # ∂(Σ h_T)/∂h_t = 0.5^(T−t)·1
    assert flow.last == pytest.approx(want, rel=1e-12)
    assert flow.relative() == pytest.approx([0.5 ** (T - t) for t in range(1, T + 1)], rel=1e-12)
    # a readout u with ‖u‖ = 5 scales every step by 5; batch_first input gives the same curve
    u = torch.tensor([3.0, 4.0, 0.0])
    flow = grad_flow(_linear_rnn(impl, batch_first=True), x.transpose(0, 1), h0, loss_fn=lambda y: y @ u)
    assert flow.last == pytest.approx([5 * 0.5 ** (T - t) for t in range(1, T + 1)], rel=1e-12)


def test_grad_flow_of_the_last_layer_matches_restarting_the_fused_stack_at_every_step():
    # independent measurement: ∂loss_T/∂h_t is the gradient with respect to the initial state of a
    # fused run over x[t:] started from the state reached after x[:t]
    stack = RecurrentStack(4, 6, "lstm", num_layers=2)
    x = torch.randn(9, 3, 4)
    flow = grad_flow(stack, x)
    T = x.shape[0]
    for t in range(1, T):
        _, (h, c) = stack(x[:t])
        h = h.detach().requires_grad_(True)
        out, _ = stack(x[t:], (h, c.detach()))
        (g,) = torch.autograd.grad(out[-1].sum(), h)
        assert flow.last[t - 1] == pytest.approx(g[-1].norm(dim=-1).mean().item(), rel=1e-10)
    assert flow.last[-1] == pytest.approx(math.sqrt(6), rel=1e-12)  # ∂(Σ h_T)/∂h_T = ones
    assert len(flow.norms) == 2 and all(v > 0 for v in flow.norms[0])


def test_grad_flow_leaves_the_measured_stack_untouched():
    stack = RecurrentStack(4, 6, "gru", num_layers=2, dropout=0.5, bidirectional=True).float().train()
    before = {k: v.clone() for k, v in stack.state_dict().items()}
    flow = grad_flow(stack, torch.randn(5, 2, 4, dtype=torch.float32), dtype=torch.float64)
    assert stack.training and all(p.grad is None for p in stack.parameters())
    assert all(torch.equal(v, stack.state_dict()[k]) for k, v in before.items())
    assert next(stack.parameters()).dtype == torch.float32
    assert [len(row) for row in flow.norms] == [5, 5]
    # eval mode inside: no dropout, so two measurements agree exactly
    assert grad_flow(stack, torch.ones(5, 2, 4, dtype=torch.float32)) == grad_flow(
        stack, torch.ones(5, 2, 4, dtype=torch.float32)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vanilla_rnn_gradient_vanishes_faster_than_gru_and_lstm(seed):
    # untrained, equal size, torch's default init scale (uniform ±1/sqrt(H)) for all three
    T, back = 40, 39
    reach = {}
    for cell in ("rnn", "gru", "lstm"):
        torch.manual_seed(seed)
        stack = RecurrentStack(16, 32, cell)
        x = torch.randn(T, 16, 16)
        reach[cell] = grad_flow(stack, x).relative()[T - 1 - back]
    # an order of magnitude less gradient left after 39 steps (the measured gap is 25x to 20000x)
    assert reach["rnn"] < reach["lstm"] / 10
    assert reach["rnn"] < reach["gru"] / 10


def test_singular_values_per_gate_block_and_whole_matrix():
    H = 4
    stack = RecurrentStack(3, H, "gru", num_layers=2, bidirectional=True)
    q, _ = torch.linalg.qr(torch.randn(H, H))
    d = torch.diag(torch.arange(1.0, H + 1))
    with torch.no_grad():
        stack.rnn.weight_hh_l1_reverse.copy_(torch.cat([3 * q, d, 0.5 * torch.eye(H)]))
    rows = recurrent_singular_values(stack)
    assert len(rows) == 2 * 2 * 4  # layers x directions x (r, z, n, all)
    got = {r["block"]: r["sigma_max"] for r in rows if r["layer"] == 1 and r["direction"] == "reverse"}
    # stacked blocks: W^T W = 9 I + D^2 + 0.25 I, so σ_max^2 = 9 + H^2 + 0.25
    assert got == pytest.approx({"r": 3.0, "z": float(H), "n": 0.5, "all": math.sqrt(9 + H * H + 0.25)}, rel=1e-12)
    rnn_rows = recurrent_singular_values(_linear_rnn("scratch"))
    assert rnn_rows == [{"layer": 0, "direction": "forward", "block": "h", "sigma_max": pytest.approx(0.5)}]


def test_table_and_plot(tmp_path):
    curves = {
        "rnn": GradFlow([[0.0, 1e-6, 1e-3, 1.0]]),
        "lstm": GradFlow([[1e-2, 1e-1, 0.5, 2.0]]),
    }
    table = format_grad_flow_table(curves).splitlines()
    assert table[0].split() == ["t", "T-t", "rnn", "lstm"]
    first, last = table[1].split(), table[-1].split()
    assert first[:2] == ["4", "0"] and float(first[2]) == 1.0 and float(first[3]) == 2.0
    assert last[:2] == ["1", "3"] and float(last[2]) == 0.0 and float(last[3]) == 1e-2
    assert format_grad_flow_table(curves, relative=True).splitlines()[-1].split()[3] == "5.000e-03"
    path = plot_grad_flow(curves, tmp_path / "sub" / "flow.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(path).shape[:2] == (450, 700)


def test_eval_grad_flow_compares_trained_checkpoints(cli, tmp_path):
    """End to end: tiny RNN, GRU and LSTM language models, then `seqtool eval --grad-flow` on all three."""
    from tests.conftest import TINY

    runs = {}
    for cell in ("rnn", "gru", "lstm"):
        result = cli("train", "timemachine", *TINY, "--cell", cell, "--max-tokens", "20000", "--lr", "0.01",
                     "--seed", "1", "--out", f"run-{cell}")
        assert result.code == 0, result.err
        runs[cell] = result.out.strip()
    args = [a for cell in runs for a in ("--grad-flow", runs[cell])]
    result = cli("eval", *args, "--flow-steps", "40", "--flow-batch", "8", "--flow-plot", "flow.png", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [m["cell"] for m in report["models"]] == ["rnn", "gru", "lstm"]
    reach = {}
    for m in report["models"]:
        assert len(m["grad_norms"]) == 1 and len(m["grad_norms"][0]) == 40
        assert m["relative"][-1] == 1.0
        assert {r["block"] for r in m["singular_values"]} == {"rnn": {"h"}, "gru": {"r", "z", "n", "all"},
                                                               "lstm": {"i", "f", "g", "o", "all"}}[m["cell"]]
        reach[m["cell"]] = m["relative"][0]
    assert reach["rnn"] < reach["gru"] and reach["rnn"] < reach["lstm"]
    assert (tmp_path / "flow.png").read_bytes()[:4] == b"\x89PNG"
    # the text form: a table with one column per checkpoint, the singular values, the plot's path
    result = cli("eval", "run-rnn", "--grad-flow", "run-lstm", "--flow-steps", "10", "--flow-plot", "other.png")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[1].split()[:4] == ["t", "T-t", "run-rnn", "(rnn)"]
    assert any(line.startswith("run-lstm (lstm)") and " f " in line for line in lines)
    assert lines[-1] == "wrote other.png" and (tmp_path / "other.png").is_file()
    bad = cli("eval", "--grad-flow", "run-rnn", "--flow-steps", "0")
    assert bad.code == 2 and "flow-steps" in bad.err
    assert cli("eval").code == 2  # plain eval still needs its CHECKPOINT
