"""RecurrentStack: the scratch implementation is numerically the fused one, with the same shapes and weights."""

import pytest
import torch

from seqtool.nn.stack import RecurrentStack

TOL = dict(rtol=1e-10, atol=1e-12)
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]


pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _pair(cell, nonlinearity="tanh", **kwargs):
    fused = RecurrentStack(5, 6, cell, nonlinearity=nonlinearity, impl="fused", **kwargs)
    scratch = RecurrentStack(5, 6, cell, nonlinearity=nonlinearity, impl="scratch", **kwargs)
    scratch.load_state_dict(fused.state_dict())
    return fused, scratch


def _random_state(cell, layers_dirs, batch):
    h = torch.randn(layers_dirs, batch, 6, requires_grad=True)
    if cell != "lstm":
        return h, [h]
    c = torch.randn(layers_dirs, batch, 6, requires_grad=True)
    return (h, c), [h, c]


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def _run(stack, x, state, leaves):
    out, final = stack(x, state)
    # a loss that reads every output and every final state, with unequal weights
    loss = (out * torch.linspace(-1, 2, out.numel()).view_as(out)).sum()
    loss = loss + sum((s**2).sum() for s in _flat(final))
    params = list(stack.parameters())
    grads = torch.autograd.grad(loss, params + [x] + leaves)
    return out, _flat(final), grads


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize(
    "config",
    [dict(), dict(num_layers=2, bidirectional=True), dict(num_layers=2, batch_first=True)],
    ids=["1-layer", "2-layer-bidirectional", "2-layer-batch-first"],
)
def test_scratch_matches_fused_outputs_states_and_gradients(cell, nonlinearity, config):
    fused, scratch = _pair(cell, nonlinearity, **config)
    steps, batch = 7, 3
    layers_dirs = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
    x = torch.randn(*((batch, steps) if config.get("batch_first") else (steps, batch)), 5, requires_grad=True)
    state, leaves = _random_state(cell, layers_dirs, batch)
    want = _run(fused, x, state, leaves)
    got = _run(scratch, x, state, leaves)
    torch.testing.assert_close(got[0], want[0], **TOL)
    for g, w in zip(got[1], want[1]):
        torch.testing.assert_close(g, w, **TOL)
    assert len(got[2]) == len(want[2])
    for g, w in zip(got[2], want[2]):  # parameter, input and initial-state gradients
        torch.testing.assert_close(g, w, **TOL)
    # the state really matters: a different initial state gives a different output
    other, _ = _random_state(cell, layers_dirs, batch)
    assert not torch.allclose(scratch(x, other)[0], got[0])


@pytest.mark.parametrize("impl", ["fused", "scratch"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_seed_shape_example(impl, cell):
    # embedding 8, hidden 16, 2 layers, batch 4, 7 steps
    x = torch.randn(7, 4, 8)
    uni = RecurrentStack(8, 16, cell, num_layers=2, impl=impl)
    out, state = uni(x)
    assert out.shape == (7, 4, 16) and uni.output_size == 16
    for s in _flat(state):
        assert s.shape == (2, 4, 16)
    assert isinstance(state, tuple) == (cell == "lstm")
    bi = RecurrentStack(8, 16, cell, num_layers=2, bidirectional=True, impl=impl)
    out, state = bi(x)
    assert out.shape == (7, 4, 32) and bi.output_size == 32
    for s in _flat(state):
        assert s.shape == (4, 4, 16)
    out, state = RecurrentStack(8, 16, cell, num_layers=2, batch_first=True, impl=impl)(x.transpose(0, 1))
    assert out.shape == (4, 7, 16)
    for s in _flat(state):
        assert s.shape == (2, 4, 16)  # the state is never batch-first, as in torch


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_dict_moves_between_implementations_and_same_seed_gives_same_weights(cell):
    kwargs = dict(num_layers=2, bidirectional=True)
    torch.manual_seed(3)
    fused = RecurrentStack(5, 6, cell, impl="fused", **kwargs)
    torch.manual_seed(3)
    scratch = RecurrentStack(5, 6, cell, impl="scratch", **kwargs)
    fsd, ssd = fused.state_dict(), scratch.state_dict()
    assert list(fsd) == list(ssd)  # same names in the same order (optimizer states line up too)
    assert "rnn.weight_hh_l1_reverse" in fsd
    for k in fsd:
        assert torch.equal(fsd[k], ssd[k]), k
    # perturb the fused weights, then carry them over in both directions
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(torch.randn_like(p))
    scratch.load_state_dict(fused.state_dict())
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(scratch(x)[0], fused(x)[0], **TOL)
    back = RecurrentStack(5, 6, cell, impl="fused", **kwargs)
    back.load_state_dict(scratch.state_dict())
    torch.testing.assert_close(back(x)[0], fused(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_dropout_between_layers_as_torch(cell):
    # on CPU both implementations draw the same masks from the same seed, so train mode matches too
    fused, scratch = _pair(cell, num_layers=3, dropout=0.5)
    x = torch.randn(6, 4, 5)
    torch.manual_seed(11)
    want = fused(x)[0]
    torch.manual_seed(11)
    got = scratch(x)[0]
    torch.testing.assert_close(got, want, **TOL)
    assert not torch.allclose(got, scratch.eval()(x)[0])  # dropout was active in training
    torch.testing.assert_close(scratch(x)[0], fused.eval()(x)[0], **TOL)


@pytest.mark.parametrize("impl", ["fused", "scratch"])
def test_reset_parameters_orthogonal_blocks_and_forget_bias(impl):
    stack = RecurrentStack(5, 6, "lstm", num_layers=2, bidirectional=True, impl=impl)
    before = {k: v.clone() for k, v in stack.state_dict().items()}
    stack.reset_parameters(orthogonal=True, forget_bias=1.0)
    eye = torch.eye(6)
    for name, p in stack.rnn.named_parameters():
        if name.startswith("weight_hh"):
            for g in range(4):
                block = p[g * 6 : (g + 1) * 6].detach()
                torch.testing.assert_close(block @ block.t(), eye, rtol=0, atol=1e-6)
        elif name.startswith("weight_ih"):
            assert torch.equal(p, before[f"rnn.{name}"])  # input weights untouched
        elif name.startswith("bias_ih"):
            assert torch.all(p[6:12] == 1.0)
            assert torch.equal(p[:6], before[f"rnn.{name}"][:6])
        else:
            assert torch.all(p[6:12] == 0.0)  # the two biases add up: total forget bias is exactly 1


def test_unbatched_input_matches_fused():
    fused, scratch = _pair("lstm", num_layers=2, bidirectional=True)
    x = torch.randn(5, 5)
    state = (torch.randn(4, 6), torch.randn(4, 6))
    (want, (wh, wc)), (got, (gh, gc)) = fused(x, state), scratch(x, state)
    assert got.shape == (5, 12) and gh.shape == (4, 6)
    for g, w in [(got, want), (gh, wh), (gc, wc)]:
        torch.testing.assert_close(g, w, **TOL)


def test_forward_steps_exposes_per_step_states_of_every_layer():
    stack = RecurrentStack(5, 6, "gru", num_layers=2, bidirectional=True, impl="scratch")
    x = torch.randn(7, 3, 5)
    out, state, steps = stack.forward_steps(x)
    assert len(steps) == 2 and all(len(layer) == 2 for layer in steps)
    torch.testing.assert_close(torch.stack(steps[-1][0]), out[..., :6], rtol=0, atol=0)
    torch.testing.assert_close(torch.stack(steps[-1][1]), out[..., 6:], rtol=0, atol=0)
    assert torch.equal(steps[1][0][-1], state[2]) and torch.equal(steps[1][1][0], state[3])
    with pytest.raises(ValueError, match="scratch"):
        RecurrentStack(5, 6, "gru").forward_steps(x)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="impl"):
        RecurrentStack(5, 6, impl="cudnn")
    with pytest.raises(ValueError, match="nonlinearity"):
        RecurrentStack(5, 6, "rnn", impl="scratch", nonlinearity="sigmoid")
    stack = RecurrentStack(5, 6, "lstm", impl="scratch")
    with pytest.raises(ValueError, match="pair"):
        stack(torch.randn(3, 2, 5), torch.zeros(1, 2, 6))
    with pytest.raises(ValueError, match="shape"):
        stack(torch.randn(3, 2, 5), (torch.zeros(2, 2, 6), torch.zeros(2, 2, 6)))
