"""Language-model minibatches: labels are inputs shifted by one; sequential and random partitioning.

Batches are built from two streams with the same generator seed: `pos` (0, 1, 2, ...) tells where
every element came from, and a random-valued stream checks the values against the original ids.
"""

import pytest
import torch

import seqtool.data.batching as batching
from seqtool.data.batching import make_batches, num_batches

SAMPLINGS = ("sequential", "random")
SHAPES = [(200, 4, 7), (1000, 8, 16), (97, 3, 5), (64, 1, 1)]  # (tokens, batch, steps)


def batches(ids, batch, steps, sampling, seed=0):
    return list(make_batches(ids, batch, steps, sampling, torch.Generator().manual_seed(seed)))


def positions(n, batch, steps, sampling, seed=0):
    return batches(torch.arange(n), batch, steps, sampling, seed)


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("n, batch, steps", SHAPES)
def test_shapes_and_labels_are_the_inputs_shifted_by_one(sampling, n, batch, steps):
    ids = torch.randint(0, 30, (n,), generator=torch.Generator().manual_seed(1))
    got = batches(ids, batch, steps, sampling, seed=3)
    where = positions(n, batch, steps, sampling, seed=3)
    assert len(got) == len(where) > 0
    for (x, y), (px, py) in zip(got, where):
        assert x.shape == y.shape == (steps, batch)  # time-major
        assert x.dtype == y.dtype == torch.long
        assert torch.equal(py, px + 1)  # each label is the next token of the stream
        assert torch.equal(x, ids[px]) and torch.equal(y, ids[px + 1])


@pytest.mark.parametrize("n, batch, steps", SHAPES)
def test_sequential_rows_continue_each_other(n, batch, steps):
    where = positions(n, batch, steps, "sequential", seed=5)
    for (px, _), (nx, _) in zip(where, where[1:]):
        # row i of batch k+1 starts exactly where row i of batch k ended
        assert torch.equal(nx[0], px[-1] + 1)
        assert torch.equal(nx, px + steps)
    for px, _ in where:
        assert torch.equal(px - px[0], torch.arange(steps)[:, None].expand(-1, batch))  # contiguous columns


@pytest.mark.parametrize("n, batch, steps", SHAPES)
def test_sequential_covers_a_contiguous_block_once(n, batch, steps):
    where = positions(n, batch, steps, "sequential", seed=2)
    seen = torch.cat([px.reshape(-1) for px, _ in where])
    assert seen.unique().numel() == seen.numel()  # nothing read twice
    offset = int(where[0][0][0, 0])
    assert 0 <= offset < steps
    rows = (n - offset - 1) // batch  # tokens per row
    assert len(where) == rows // steps
    # the rows partition [offset, offset + batch*rows); the epoch reads the first len*steps of each
    for i in range(batch):
        column = torch.cat([px[:, i] for px, _ in where])
        assert torch.equal(column, torch.arange(offset + i * rows, offset + i * rows + len(where) * steps))


@pytest.mark.parametrize("n, batch, steps", SHAPES)
def test_random_windows_are_contiguous_disjoint_and_counted(n, batch, steps):
    where = positions(n, batch, steps, "random", seed=4)
    starts = torch.cat([px[0] for px, _ in where])
    for px, _ in where:
        assert torch.equal(px - px[0], torch.arange(steps)[:, None].expand(-1, batch))
    offset = int(starts.min()) % steps
    assert bool(((starts - offset) % steps == 0).all())  # windows on a grid of `steps` from the offset
    assert starts.unique().numel() == starts.numel()  # no window twice, and on the grid: no overlap
    count = (n - offset - 1) // steps  # windows that fit (each needs its label too)
    assert len(where) == count // batch
    assert int(starts.max()) + steps <= n - 1


def test_random_windows_are_shuffled():
    starts = torch.cat([px[0] for px, _ in positions(2000, 4, 10, "random", seed=0)])
    assert not torch.equal(starts, starts.sort().values)


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_the_same_seed_gives_identical_batches_and_another_seed_differs(sampling):
    ids = torch.randint(0, 30, (500,), generator=torch.Generator().manual_seed(0))
    a = batches(ids, 4, 8, sampling, seed=11)
    b = batches(ids, 4, 8, sampling, seed=11)
    assert len(a) == len(b)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    c = positions(500, 4, 8, sampling, seed=12)
    d = positions(500, 4, 8, sampling, seed=11)
    assert [p.tolist() for p, _ in c] != [p.tolist() for p, _ in d]


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("n, batch, steps", SHAPES + [(50, 4, 6), (31, 2, 7)])
def test_num_batches_is_exact_at_the_worst_offset_and_a_lower_bound_otherwise(monkeypatch, sampling, n, batch, steps):
    predicted = num_batches(n, batch, steps, sampling)
    actual = {}
    for offset in range(steps):
        monkeypatch.setattr(batching, "_offset", lambda s, g, o=offset: o)
        actual[offset] = len(positions(n, batch, steps, sampling))
    assert actual[steps - 1] == predicted
    assert all(count >= predicted for count in actual.values())


def test_offsets_vary_with_the_seed_and_stay_below_steps():
    offsets = {int(positions(300, 2, 9, "sequential", seed=s)[0][0][0, 0]) for s in range(40)}
    assert offsets <= set(range(9)) and len(offsets) > 1


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_too_short_a_stream_yields_nothing(sampling):
    assert batches(torch.arange(10), 4, 8, sampling) == []
    assert num_batches(10, 4, 8, sampling) == 0
