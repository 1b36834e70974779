"""Greedy and beam search on hand-built decoders whose probabilities are known."""

import math

import pytest
import torch

from seqtool.translate.search import beam_search, greedy

BOS, EOS, A, B = 2, 3, 4, 5
VOCAB = 6


class Prefixes:
    """Decoder state of the table model: the tokens generated so far, one tuple per row."""

    def __init__(self, rows):
        self.rows = rows

    def select(self, index):
        return Prefixes([self.rows[i] for i in index.tolist()])


class TableDecoder:
    """P(next | prefix) from a dict {prefix: {token: prob}}; unlisted tokens have probability 0.
    Counts step calls so tests can see when decoding stopped."""

    def __init__(self, table, per_sentence=None):
        self.table, self.per_sentence, self.calls = table, per_sentence, 0

    def start(self, src, src_len):
        return Prefixes([(int(s[0]),) for s in src])  # remember which sentence a row belongs to

    def step(self, tokens, state):
        self.calls += 1
        rows = [row if tok == BOS else row + (tok,) for row, tok in zip(state.rows, tokens.tolist())]
        logits = torch.full((len(rows), VOCAB), float("-inf"))
        for i, row in enumerate(rows):
            table = self.per_sentence[row[0]] if self.per_sentence else self.table
            for tok, p in table.get(row[1:], {EOS: 1.0}).items():
                logits[i, tok] = math.log(p)
        return logits, Prefixes(rows), None


def run_beam(model, k, alpha=0.0, nbest=1, max_len=10, n=1):
    src = torch.zeros(n, 1, dtype=torch.long)
    return beam_search(model, src, torch.ones(n, dtype=torch.long), BOS, EOS, max_len, beam=k, length_penalty=alpha, nbest=nbest)


# greedy takes A (0.5) then stops (A,EOS) = 0.2; the best sequence is B,EOS = 0.36
TRAP = {(): {A: 0.5, B: 0.4, EOS: 0.1}, (A,): {A: 0.3, B: 0.3, EOS: 0.4}, (B,): {EOS: 0.9, A: 0.1}, (A, A): {EOS: 1.0}, (A, B): {EOS: 1.0}, (B, A): {EOS: 1.0}}


def test_greedy_follows_the_arg_max_and_stops_at_eos():
    model = TableDecoder(TRAP)
    (hyp,) = greedy(model, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long), BOS, EOS, max_len=10)
    assert hyp.tokens == [A] and hyp.finished
    assert hyp.score == pytest.approx(math.log(0.5 * 0.4))
    assert model.calls == 2  # stopped right after <eos>


def test_greedy_batch_stops_each_sentence_at_its_own_eos_and_cuts_at_max_len():
    tables = {0: {(): {A: 1.0}, (A,): {EOS: 1.0}}, 1: {(): {B: 1.0}, (B,): {B: 1.0}, (B, B): {B: 1.0}, (B, B, B): {EOS: 1.0}}}
    model = TableDecoder(None, per_sentence=tables)
    src = torch.tensor([[0], [1]])
    short, long = greedy(model, src, torch.ones(2, dtype=torch.long), BOS, EOS, max_len=10)
    assert short.tokens == [A] and long.tokens == [B, B, B]
    assert model.calls == 4
    model.calls = 0
    _, cut = greedy(model, src, torch.ones(2, dtype=torch.long), BOS, EOS, max_len=2)
    assert cut.tokens == [B, B] and not cut.finished and model.calls == 2


def test_beam_finds_the_known_best_sequence_greedy_misses():
    (best,) = run_beam(TableDecoder(TRAP), k=2)[0]
    assert best.tokens == [B] and best.score == pytest.approx(math.log(0.36))


def test_beam_of_one_equals_greedy():
    (hyp,) = run_beam(TableDecoder(TRAP), k=1)[0]
    assert hyp.tokens == [A] and hyp.score == pytest.approx(math.log(0.2))


class Markov:
    """Random scores from the last token plus a per-sentence bias (carried in the state)."""

    def __init__(self, seed):
        gen = torch.Generator().manual_seed(seed)
        self.weights = torch.randn(VOCAB, VOCAB, generator=gen) * 2
        self.bias = torch.randn(64, VOCAB, generator=gen) * 3

    def start(self, src, src_len):
        return _Rows(self.bias[: src.size(0)])

    def step(self, tokens, state):
        return self.weights[tokens] + state.bias, state, None


class _Rows:
    def __init__(self, bias):
        self.bias = bias

    def select(self, index):
        return _Rows(self.bias.index_select(0, index))


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_equals_greedy_on_random_models(seed):
    model, n = Markov(seed), 16
    src, lengths = torch.zeros(n, 1, dtype=torch.long), torch.ones(n, dtype=torch.long)
    greedy_hyps = greedy(model, src, lengths, BOS, EOS, 12)
    beam_hyps = [hyps[0] for hyps in beam_search(model, src, lengths, BOS, EOS, 12, beam=1)]
    assert [(h.tokens, h.finished) for h in beam_hyps] == [(h.tokens, h.finished) for h in greedy_hyps]
    assert [h.score for h in beam_hyps] == pytest.approx([h.score for h in greedy_hyps], abs=1e-5)
    assert any(not h.finished for h in greedy_hyps) and any(h.finished for h in greedy_hyps)


# three endings: "" (0.4, length 1), "A" (0.6*0.4 = 0.24, length 2), "A A" (0.6*0.6 = 0.36, length 3)
PENALTY = {(): {EOS: 0.4, A: 0.6}, (A,): {A: 0.6, EOS: 0.4}, (A, A): {EOS: 1.0}}


def test_length_penalty_changes_the_winner_as_computed_by_hand():
    # alpha = 0: log .4 = -0.916 beats log .36 = -1.022 and log .24 = -1.427
    (plain,) = run_beam(TableDecoder(PENALTY), k=2, alpha=0.0)[0]
    assert plain.tokens == [] and plain.normalized == pytest.approx(math.log(0.4))
    # alpha = 1: -0.916/1, -1.427/2 = -0.713, -1.022/3 = -0.341 -> "A A" wins
    (long,) = run_beam(TableDecoder(PENALTY), k=2, alpha=1.0)[0]
    assert long.tokens == [A, A]
    assert long.score == pytest.approx(math.log(0.36))
    assert long.normalized == pytest.approx(math.log(0.36) / 3)


def test_nbest_returns_all_endings_best_first():
    hyps = run_beam(TableDecoder(PENALTY), k=3, nbest=3)[0]
    assert [h.tokens for h in hyps] == [[], [A, A], [A]]
    assert [h.score for h in hyps] == pytest.approx([math.log(0.4), math.log(0.36), math.log(0.24)])


def test_beam_is_batched_per_sentence():
    tables = {0: TRAP, 1: PENALTY}
    src = torch.tensor([[0], [1]])
    out = beam_search(TableDecoder(None, per_sentence=tables), src, torch.ones(2, dtype=torch.long), BOS, EOS, 10, beam=2)
    assert [hyps[0].tokens for hyps in out] == [[B], []]


def test_beam_cut_off_at_max_len_returns_the_best_live_hypothesis():
    forever = {(): {A: 0.9, B: 0.1}, (A,): {A: 0.9, B: 0.1}, (B,): {A: 1.0}, (A, A): {A: 1.0}, (A, B): {A: 1.0}, (B, A): {A: 1.0}}
    (hyp,) = run_beam(TableDecoder(forever), k=2, max_len=2)[0]
    assert hyp.tokens == [A, A] and not hyp.finished


def test_bad_beam_arguments():
    with pytest.raises(ValueError):
        run_beam(TableDecoder(TRAP), k=2, nbest=3)
