"""--max-seconds is the whole run's wall budget: a bounded validation sample, the test scoring kept
in the budget (sampled when the whole test split would not fit), and --val-tokens 0 scores everything."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqtool.lm.task import sample_spans, score_spans, span_targets, stream_spans, token_surprisals
from seqtool.nn.lm import RNNLM


def test_a_validation_sample_is_seeded_spread_and_the_same_every_time():
    spans = sample_spans(1_000_000, 131072, seed=3)
    assert spans == sample_spans(1_000_000, 131072, seed=3) != sample_spans(1_000_000, 131072, seed=4)
    assert len(spans) == 16 and sum(stop - first for _, first, stop in spans) == 131072
    for i, (begin, first, stop) in enumerate(spans):  # one chunk in each sixteenth, warmed up on the tokens before it
        assert i * 62500 <= first and stop <= (i + 1) * 62500 and begin == max(0, first - 256)
    assert sample_spans(5000, 131072, seed=0) == stream_spans(5000, 16) == sample_spans(5000, None, seed=0)  # small parts: all of it


def test_scoring_spans_equals_scoring_the_whole_text_where_they_cover_it():
    torch.manual_seed(0)
    model = RNNLM(11, 8, 16, 1, "gru", 0.0, False, "fused", None).eval()
    ids = torch.randint(0, 11, (3000,))
    whole = token_surprisals(model, ids, torch.device("cpu"), streams=1)
    spans = [(0, 0, 100), (400, 500, 700), (1900, 2000, 2999)]  # (begin, first, stop): read from begin, score first..stop
    got = score_spans(model, ids, torch.device("cpu"), spans, chunk=64)
    assert got.shape == (100 + 200 + 999,)
    assert torch.allclose(got[:100], whole[:100], atol=1e-5)  # the first span reads from the start: the same history
    assert torch.equal(span_targets(ids, spans), torch.cat([ids[1:101], ids[501:701], ids[2001:3000]]))
    alone = score_spans(model, ids, torch.device("cpu"), [spans[1]])  # side by side in a batch = one at a time
    assert torch.allclose(got[100:300], alone, atol=1e-5)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """A 6M-character store (letters and spaces from a fixed Markov chain): its 300k-token test split
    takes the default model several seconds to score."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz    ", dtype=np.uint8)
    text = letters[rng.integers(0, letters.size, 6_000_000)].tobytes()
    (folder / "big.txt").write_bytes(text)
    from seqtool.cli import main

    with pytest.raises(SystemExit) as done:
        main(["preprocess", str(folder / "big.txt"), "--clean", "none", "--out", str(folder / "big.tokens"), "--top", "0", "--json"])
    assert done.value.code == 0
    return folder / "big.tokens"


def test_a_time_budget_holds_validation_and_the_test_scoring(cli, big_store, tmp_path):
    budget = 6
    result = cli("train", big_store, "--threads", "1", "--max-seconds", str(budget), "--out", "run", "--quiet")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["final"]["val_tokens"] == 131072  # the default sample, not the 300k-token validation part
    test = report["test"]
    assert test["test_split_tokens"] == 299_999 and test["test_tokens"] < test["test_split_tokens"]  # sampled to fit
    assert test["test_sampled_by"] == "--max-seconds"
    # the run's own wall time (training, validation, test): within the budget, give or take one step
    # and the error of predicting scoring time from a probe on a busy machine
    assert report["wall_seconds"] < budget * 1.5, report["wall_seconds"]


def test_val_tokens_0_scores_every_held_out_token_and_says_so(cli, big_store, tmp_path):
    result = cli("train", big_store, "--threads", "1", "--hidden", "16", "--layers", "1", "--max-seconds", "2",
                 "--val-tokens", "0", "--out", "run")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["final"]["val_tokens"] == 299_999 and report["test"]["test_tokens"] == 299_999
    assert "test_split_tokens" not in report["test"]
    assert "(on 299,999 tokens)" in result.err  # the epoch line says what validation scored
    again = cli("train", big_store, "--threads", "1", "--hidden", "16", "--layers", "1", "--max-seconds", "2",
                "--test-tokens", "5000", "--out", "capped", "--quiet")
    assert again.code == 0, again.err
    capped = json.loads((tmp_path / "capped" / "report.json").read_text())["test"]
    assert capped["test_tokens"] == 5000 - 5000 % 16 and capped["test_sampled_by"] == "--test-tokens"
