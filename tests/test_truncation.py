"""Truncation strategies: fixed is truncated BPTT, random is unbiased for full BPTT, full is exact."""

import itertools

import pytest
import torch
from torch import nn

from seqtool.nn.stack import RecurrentStack
from seqtool.lm.truncation import (
    draw_cuts,
    fixed_segments,
    keep_probability,
    scale_grad,
    segments_from_cuts,
    truncated_backward,
)


pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


class Problem:
    """A small GRU regressor whose targets depend on inputs several steps back."""

    def __init__(self, length: int, seed: int = 0):
        torch.manual_seed(seed)
        self.rnn = RecurrentStack(2, 4, "gru")
        self.head = nn.Linear(4, 1)
        with torch.no_grad():  # a slowly forgetting recurrence, so truncation visibly matters
            self.rnn.rnn.bias_ih_l0[4:8].fill_(1.5)
        self.x = torch.randn(length, 3, 2)
        self.y = torch.cumsum(self.x[..., :1], dim=0) * 0.3
        self.state0 = torch.randn(1, 3, 4)
        self.calls = []

    def params(self):
        return list(self.rnn.parameters()) + list(self.head.parameters())

    def run_chunk(self, a, b, state):
        self.calls.append((a, b, state.requires_grad))
        out, state = self.rnn(self.x[a:b], state)
        return ((self.head(out) - self.y[a:b]) ** 2).mean(dim=(1, 2)).sum(), state

    def gradient(self, **kwargs):
        for p in self.params():
            p.grad = None
        result = truncated_backward(self.run_chunk, self.x.shape[0], self.state0, **kwargs)
        return torch.cat([p.grad.flatten() for p in self.params()]), result


def test_full_is_plain_backpropagation_through_the_whole_sequence():
    prob = Problem(8)
    got, result = prob.gradient(strategy="full")
    out, final = prob.rnn(prob.x, prob.state0)
    loss = ((prob.head(out) - prob.y) ** 2).mean()
    want = torch.cat([g.flatten() for g in torch.autograd.grad(loss, prob.params())])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(result.loss, loss.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(result.state, final.detach(), rtol=0, atol=0)
    assert result.segments == [(0, 8)] and result.state.grad_fn is None


def test_fixed_detaches_every_num_steps_and_frees_each_segment():
    prob = Problem(10)
    got, result = prob.gradient(strategy="fixed", num_steps=4)
    assert result.segments == [(0, 4), (4, 8), (8, 10)]
    assert prob.calls == [(0, 4, False), (4, 8, False), (8, 10, False)]  # every segment starts detached
    # the same objective written as one graph with the state detached at 4 and 8
    losses, state = [], prob.state0
    for a, b in result.segments:
        out, state = prob.rnn(prob.x[a:b], state.detach())
        losses.append(((prob.head(out) - prob.y[a:b]) ** 2).mean(dim=(1, 2)).sum())
    want = torch.autograd.grad(sum(losses) / 10, prob.params())
    torch.testing.assert_close(got, torch.cat([g.flatten() for g in want]), rtol=1e-12, atol=1e-14)
    full, full_result = prob.gradient(strategy="full")
    assert (got - full).norm() > 1e-3 * full.norm()  # truncation changes the gradient here
    torch.testing.assert_close(result.loss, full_result.loss, rtol=1e-12, atol=0)  # not the loss


def test_random_truncation_is_exactly_unbiased_over_all_cut_patterns():
    # every one of the 2^(T-1) cut patterns, weighted by its probability, averages to full BPTT
    T, num_steps = 6, 3
    prob = Problem(T)
    c = keep_probability(num_steps)
    full, _ = prob.gradient(strategy="full")
    expected = torch.zeros_like(full)
    total_p = 0.0
    for pattern in itertools.product([False, True], repeat=T - 1):
        cuts = [k + 1 for k, cut in enumerate(pattern) if cut]
        p = (1 - c) ** len(cuts) * c ** (T - 1 - len(cuts))
        g, result = prob.gradient(strategy="random", num_steps=num_steps, cuts=cuts)
        assert result.segments == segments_from_cuts(T, cuts)
        expected += p * g
        total_p += p
    assert total_p == pytest.approx(1.0, rel=1e-12)
    torch.testing.assert_close(expected, full, rtol=1e-10, atol=1e-13)
    fixed, _ = prob.gradient(strategy="fixed", num_steps=num_steps)
    assert (fixed - full).norm() > 1e-3 * full.norm()


def test_random_truncation_sampled_mean_matches_full_within_sampling_error():
    T, num_steps, draws = 10, 3, 1500
    prob = Problem(T, seed=1)
    full, _ = prob.gradient(strategy="full")
    fixed, _ = prob.gradient(strategy="fixed", num_steps=num_steps)
    generator = torch.Generator().manual_seed(1234)
    samples = torch.stack([prob.gradient(strategy="random", num_steps=num_steps, generator=generator)[0] for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0) / draws**0.5
    z = (mean - full) / se.clamp_min(1e-12)
    assert z.abs().max() < 4.5  # max over ~90 components of roughly standard normal deviates
    # the test has power: the fixed-truncation gradient sits far outside the same error bars
    assert ((fixed - full) / se.clamp_min(1e-12)).abs().max() > 10


def test_draw_cuts_give_geometric_segments_with_mean_num_steps():
    generator = torch.Generator().manual_seed(0)
    length, num_steps = 100_000, 7
    cuts = draw_cuts(length, num_steps, generator)
    lengths = torch.tensor([b - a for a, b in segments_from_cuts(length, cuts)], dtype=torch.float64)
    assert lengths.mean().item() == pytest.approx(num_steps, rel=0.03)
    # geometric: P(L = 1) = 1/num_steps, and P(L > k) = c^k
    assert (lengths == 1).double().mean().item() == pytest.approx(1 / num_steps, rel=0.05)
    assert (lengths > 14).double().mean().item() == pytest.approx(keep_probability(7) ** 14, rel=0.08)
    # seeded draws replay
    again = draw_cuts(length, num_steps, torch.Generator().manual_seed(0))
    assert again == cuts
    assert draw_cuts(20, 1) == list(range(1, 20))  # num_steps 1: every boundary is cut


def test_random_strategy_runs_step_by_step_and_scales_the_gradient_at_uncut_boundaries():
    prob = Problem(5)
    _, result = prob.gradient(strategy="random", num_steps=2, cuts=[3])
    assert result.segments == [(0, 3), (3, 5)]
    assert [(a, b) for a, b, _ in prob.calls] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert [detached for *_, detached in prob.calls] == [False, True, True, False, True]
    x = torch.randn(3, requires_grad=True)
    y = scale_grad(x, 2.5)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad((y * torch.tensor([1.0, 2.0, 3.0])).sum(), x)
    torch.testing.assert_close(g, torch.tensor([2.5, 5.0, 7.5]), rtol=0, atol=0)


def test_segments_and_arguments():
    assert fixed_segments(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert fixed_segments(3, 35) == [(0, 3)]
    with pytest.raises(ValueError, match="cuts"):
        segments_from_cuts(5, [0])
    with pytest.raises(ValueError, match="truncation"):
        truncated_backward(lambda a, b, s: (torch.zeros(()), s), 4, strategy="sometimes")
    with pytest.raises(ValueError, match="num_steps"):
        keep_probability(0)


def test_trainer_full_truncation_takes_the_exact_full_sequence_gradient(tmp_path):
    """One epoch of `truncation: full` = one SGD step on the gradient of the whole streams."""
    import copy

    import torch.nn.functional as F

    from seqtool.core.spec import from_dict
    from seqtool.core.session import start_run

    corpus = tmp_path / "c.txt"
    corpus.write_text("abcde fghij klmno " * 30)
    spec = from_dict({
        "data": {"corpus": str(corpus), "steps": 5, "val_fraction": 0.1},
        "model": {"embed": 4, "hidden": 6, "layers": 1, "dropout": 0.0},
        "train": {"batch": 3, "epochs": 1, "max_seconds": None, "optimizer": "sgd", "lr": 0.5, "schedule": "none",
                  "clip": None, "truncation": "full", "threads": 1},
        "output": {"dir": str(tmp_path / "run")},
    })
    trainer = start_run(spec)
    before = copy.deepcopy(trainer.model)
    ids = trainer.task.train_ids
    usable = ((ids.numel() - 1) // 3) * 3
    x, y = ids[:usable].view(3, -1).t(), ids[1 : usable + 1].view(3, -1).t()
    logits, _ = before(x)
    F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    trainer.fit()
    for (name, p), q in zip(before.named_parameters(), trainer.model.parameters()):
        torch.testing.assert_close(q, p - 0.5 * p.grad, msg=name)


def test_random_truncation_needs_sequential_sampling(tmp_path):
    import pytest as _pytest

    from seqtool.core.errors import UsageError
    from seqtool.core.spec import from_dict
    from seqtool.lm.task import LanguageModelTask

    spec = from_dict({"data": {"corpus": "x", "sampling": "random"}, "train": {"truncation": "random"}})
    with _pytest.raises(UsageError, match="needs --sampling sequential"):
        LanguageModelTask.check_spec(spec)
