"""The language model: RNNLM, scoring (surprisal, perplexity), truncated BPTT in the trainer,
training that learns, and generation (greedy, seeded sampling, top-k, top-p)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqtool.lm.sampling import filter_logits, sample
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.lm.evaluate import evaluate_lm
from seqtool.nn.lm import RNNLM
from seqtool.core.restore import restore
from seqtool.core.spec import from_dict
from seqtool.lm.task import LanguageModelTask, perplexity_report, token_surprisals
from seqtool.core.session import start_run

TEXT = "the quick brown fox jumps over the lazy dog. "
CPU = torch.device("cpu")


def lm_spec(tmp_path, text=TEXT * 30, name="run", epochs=3, **sections):
    corpus = tmp_path / f"{name}.txt"
    corpus.write_text(text)
    raw = {
        "data": {"corpus": str(corpus), "steps": 16, "val_fraction": 0.1, "clean": "lower", "sampling": "sequential"},
        "model": {"hidden": 32, "layers": 1, "embed": 16, "dropout": 0.0},
        "train": {"batch": 8, "epochs": epochs, "max_seconds": None, "threads": 1, "lr": 0.01, "schedule": "none", "seed": 0},
        "output": {"dir": str(tmp_path / name)},
    }
    for section, fields in sections.items():
        raw[section].update(fields)
    return from_dict(raw)


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """A small GRU trained until it has memorised TEXT (a few seconds on one thread)."""
    tmp_path = tmp_path_factory.mktemp("memorised")
    trainer = start_run(lm_spec(tmp_path, epochs=15))
    trainer.fit()
    trainer.model.eval()
    return trainer


# ---- the model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("embed", [0, 5])
def test_rnnlm_output_and_state_shapes(cell, embed):
    torch.manual_seed(0)
    model = RNNLM(vocab_size=11, embed=embed, hidden=6, layers=2, cell=cell)
    tokens = torch.randint(0, 11, (7, 4))  # (steps, batch)
    logits, state = model(tokens)
    assert logits.shape == (7, 4, 11)
    states = state if cell == "lstm" else (state,)
    assert len(states) == (2 if cell == "lstm" else 1)
    for s in states:
        assert s.shape == (2, 4, 6)  # (layers, batch, hidden)
    assert (model.embedding is None) == (embed == 0)
    # continuing from the returned state equals reading both halves in one go
    first, state1 = model(tokens[:3])
    second, _ = model(tokens[3:], state1)
    torch.testing.assert_close(torch.cat([first, second]), logits)


def test_one_hot_input_equals_an_identity_embedding():
    torch.manual_seed(0)
    one_hot = RNNLM(vocab_size=9, embed=0, hidden=5, layers=1)
    embedded = RNNLM(vocab_size=9, embed=9, hidden=5, layers=1)
    embedded.rnn.load_state_dict(one_hot.rnn.state_dict())
    embedded.head.load_state_dict(one_hot.head.state_dict())
    with torch.no_grad():
        embedded.embedding.weight.copy_(torch.eye(9))
    tokens = torch.randint(0, 9, (6, 3))
    torch.testing.assert_close(one_hot(tokens)[0], embedded(tokens)[0])


def test_tie_weights_shares_one_tensor():
    model = RNNLM(vocab_size=13, embed=8, hidden=8, layers=1, tie_weights=True)
    assert model.head.weight is model.embedding.weight
    untied = RNNLM(vocab_size=13, embed=8, hidden=8, layers=1)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(untied) - n(model) == 13 * 8  # counted once
    with torch.no_grad():
        model.embedding.weight[3].fill_(0.5)
    assert torch.equal(model.head.weight[3], torch.full((8,), 0.5))


def test_tie_weights_rejects_mismatched_sizes(tmp_path):
    with pytest.raises(ValueError, match="embed == hidden"):
        RNNLM(vocab_size=13, embed=8, hidden=16, tie_weights=True)
    with pytest.raises(ValueError, match="embed == hidden"):
        RNNLM(vocab_size=13, embed=0, hidden=16, tie_weights=True)
    with pytest.raises(UsageError, match="--tie-weights needs --embed equal to --hidden"):
        LanguageModelTask.from_spec(lm_spec(tmp_path, model={"tie_weights": True, "embed": 16, "hidden": 32}))


def test_a_language_model_refuses_bidirectional_and_no_held_out_split(tmp_path):
    with pytest.raises(UsageError, match="bidirectional"):
        LanguageModelTask.from_spec(lm_spec(tmp_path, model={"bidirectional": True}))
    with pytest.raises(UsageError, match="--val-fraction must be > 0"):
        LanguageModelTask.from_spec(lm_spec(tmp_path, data={"val_fraction": 0.0}))


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_the_smallest_accepted_corpus_gives_a_batch_at_every_offset(tmp_path, sampling, monkeypatch):
    import seqtool.data.batching as batching

    # batch 2 x steps 4 + 4 = 12 training tokens needed; val_fraction 0.25 of 16 chars holds out 4: 2 validate, 2 test
    fields = dict(data={"steps": 4, "val_fraction": 0.25, "clean": "none", "sampling": sampling}, train={"batch": 2})
    task = LanguageModelTask.from_spec(lm_spec(tmp_path, text="abcdefghijklmnop", **fields))
    assert (task.train_ids.numel(), task.val_ids.numel(), task.test_ids.numel()) == (12, 2, 2)
    assert torch.equal(torch.cat([task.train_ids, task.val_ids, task.test_ids]), torch.arange(16) + 1)  # in order, no overlap
    assert task.batches_per_epoch() == 1
    for offset in range(4):
        monkeypatch.setattr(batching, "_offset", lambda s, g, o=offset: o)
        assert len(list(task.train_batches(0, torch.Generator()))) >= 1
    with pytest.raises(SeqtoolError, match="fewer than one batch needs"):
        LanguageModelTask.from_spec(lm_spec(tmp_path, text="abcdefghijklmno", **fields))  # 11 training tokens
    with pytest.raises(SeqtoolError, match="held-out validation split has 1 token"):
        LanguageModelTask.from_spec(lm_spec(tmp_path, text="abcdefghijklmnopq", data={**fields["data"], "val_fraction": 0.05}, train={"batch": 2}))


# ---- scoring -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_surprisals_in_chunks_equal_one_pass_scoring(cell):
    torch.manual_seed(1)
    model = RNNLM(vocab_size=10, embed=4, hidden=8, layers=2, cell=cell, dropout=0.5)
    model.train()
    ids = torch.randint(0, 10, (53,))
    with torch.no_grad():
        model.eval()
        logits, _ = model(ids[:-1, None])
        expected = F.cross_entropy(logits[:, 0], ids[1:], reduction="none")
        model.train()
    for chunk in (1, 3, 7, 52, 10_000):
        got = token_surprisals(model, ids, CPU, chunk=chunk)
        assert got.shape == (52,)
        torch.testing.assert_close(got, expected)
    assert model.training  # the model's mode is restored


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = RNNLM(vocab_size=17, embed=4, hidden=8, layers=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    report = perplexity_report(token_surprisals(model, torch.randint(0, 17, (40,)), CPU, chunk=9))
    assert report["tokens"] == 39
    assert report["perplexity"] == pytest.approx(17.0, rel=1e-6)
    assert report["cross_entropy_nats"] == pytest.approx(math.log(17), rel=1e-6)
    assert report["bits_per_token"] == pytest.approx(math.log2(17), rel=1e-6)


def test_perplexity_report_by_hand_and_of_nothing():
    report = perplexity_report(torch.tensor([math.log(2.0), math.log(8.0)]))
    assert report["cross_entropy_nats"] == pytest.approx(math.log(4.0))  # mean of log 2 and log 8
    assert report["perplexity"] == pytest.approx(4.0)
    assert report["bits_per_token"] == pytest.approx(2.0)
    with pytest.raises(Exception, match="fewer than 2 tokens"):
        perplexity_report(torch.zeros(0))


# ---- truncated BPTT in the trainer -------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_hidden_state_is_carried_and_detached_between_sequential_batches(tmp_path, cell, monkeypatch):
    trainer = start_run(lm_spec(tmp_path, text=TEXT * 12, epochs=2, model={"cell": cell}, train={"batch": 4}))
    calls = []
    original = trainer.task.train_loss

    def spy(model, batch, state, device):
        loss, count, new_state = original(model, batch, state, device)
        calls.append((trainer.state.epoch, state, new_state))
        return loss, count, new_state

    monkeypatch.setattr(trainer.task, "train_loss", spy)
    carried = []
    trainer.callbacks.append(lambda tr: carried.append(tr.carry))
    trainer.fit()
    as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
    assert {epoch for epoch, _, _ in calls} == {0, 1}
    for (epoch, incoming, produced), (next_epoch, next_incoming, _) in zip(calls, calls[1:]):
        assert all(t.grad_fn is not None for t in as_tuple(produced))  # produced inside the graph
        if next_epoch != epoch:
            assert next_incoming is None  # a new epoch starts from a fresh state
            continue
        for received, sent in zip(as_tuple(next_incoming), as_tuple(produced)):
            assert received.grad_fn is None and not received.requires_grad  # detached
            assert torch.equal(received, sent)  # ... but the same values: the state carries over
    assert calls[0][1] is None
    assert all(t.grad_fn is None for c in carried for t in as_tuple(c))


def test_random_sampling_starts_every_batch_from_a_fresh_state(tmp_path):
    task = LanguageModelTask.from_spec(lm_spec(tmp_path, data={"sampling": "random"}))
    torch.manual_seed(0)
    model = task.build_model()
    batch = next(iter(task.train_batches(0, torch.Generator().manual_seed(0))))
    fresh, count, _ = task.train_loss(model, batch, None, CPU)
    _, _, junk = task.train_loss(model, batch, None, CPU)
    carried, _, _ = task.train_loss(model, batch, torch.randn_like(junk) * 3, CPU)
    assert count == 8 * 16
    assert torch.equal(fresh, carried)


# ---- training ----------------------------------------------------------------------------------
def test_short_training_lowers_held_out_perplexity(tmp_path):
    trainer = start_run(lm_spec(tmp_path, epochs=3))
    vocab = len(trainer.task.vocab)
    before = trainer.task.evaluate(trainer.model, CPU)["val_ppl"]
    assert before > vocab / 2  # an untrained model is close to a uniform guess
    summary = trainer.fit()
    rows = trainer.run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary["final"]["val_ppl"] < before / 3
    assert summary["best"]["val_ppl"] == min(r["val_ppl"] for r in rows)


def test_greedy_generation_reproduces_a_memorised_string(memorised):
    task, model = memorised.task, memorised.model
    out = task.generate(model, "the quick", length=80, greedy=True)
    assert out == [(TEXT * 3)[: len("the quick") + 80]]
    # the prefix is normalised like the training text (clean=lower)
    assert task.generate(model, "THE LAZY", length=10, greedy=True) == ["the lazy dog. the "]


def test_memorised_text_scores_near_perfect_perplexity(memorised):
    run = memorised.run.path
    best = memorised.state.best
    result, rows = evaluate_lm(str(run), None, device="cpu", per_token=True)
    report = json.loads((run / "report.json").read_text())
    assert report["best"]["val_ppl"] == pytest.approx(best)
    assert result["perplexity"] == pytest.approx(report["test"]["test_ppl"], rel=1e-5)  # the best checkpoint on the test split
    assert result["perplexity"] < 1.5
    assert len(rows) == result["tokens"]
    text_file = run / "probe.txt"
    text_file.write_text(TEXT * 2)
    result, _ = evaluate_lm(str(run), str(text_file), device="cpu")
    assert result["tokens"] == len(TEXT * 2) - 1 and result["perplexity"] < 2.0


def test_restore_rebuilds_the_same_model(memorised):
    restored = restore(str(memorised.run.path), task="lm", device="cpu", which="last")
    tokens = memorised.task.train_ids[:50, None]
    with torch.no_grad():
        torch.testing.assert_close(restored.model(tokens)[0], memorised.model(tokens)[0])


# ---- generation --------------------------------------------------------------------------------
def test_seeded_sampling_is_reproducible_and_another_seed_differs(memorised):
    task, model = memorised.task, memorised.model
    kwargs = dict(length=60, num=3, temperature=3.0)  # hot enough to stray from the memorised text
    a = task.generate(model, "the", seed=7, **kwargs)
    b = task.generate(model, "the", seed=7, **kwargs)
    c = task.generate(model, "the", seed=8, **kwargs)
    assert a == b
    assert a != c
    assert len(a) == 3 and all(len(t) == 63 and t.startswith("the") for t in a)


def test_top_k_1_equals_greedy(memorised):
    task, model = memorised.task, memorised.model
    greedy = task.generate(model, "fox", length=50, greedy=True)
    assert task.generate(model, "fox", length=50, num=2, seed=3, top_k=1, temperature=5.0) == greedy * 2


def test_an_empty_prefix_starts_from_the_unigram_distribution_and_never_from_unk(memorised):
    task, model = memorised.task, memorised.model
    texts = task.generate(model, "", length=5, num=20, seed=0)
    assert all(len(t) == 6 for t in texts)
    assert all(t[0] in TEXT for t in texts)


def test_each_new_token_costs_one_model_step():
    torch.manual_seed(0)
    model = RNNLM(vocab_size=7, embed=3, hidden=5, layers=1)
    lengths = []
    model.register_forward_hook(lambda module, args, output: lengths.append(args[0].shape))
    out = sample(model, [1, 2, 3, 4], 6, num=2, generator=torch.Generator().manual_seed(0))
    assert len(out) == 2 and all(len(row) == 6 for row in out)
    assert lengths[0] == (4, 2)  # the prefix once, to warm the state up
    assert lengths[1:] == [(1, 2)] * 6  # then one step per token (the last one is read but unused)


def test_banned_tokens_are_never_sampled():
    model = RNNLM(vocab_size=5, embed=3, hidden=4, layers=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0, 0.0]))  # token 0 would dominate
    out = sample(model, [1], 50, num=4, banned=[0], generator=torch.Generator().manual_seed(0))
    assert all(0 not in row for row in out)
    assert {t for row in out for t in row} == {1, 2, 3, 4}


def test_filter_logits_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.10, 0.50, 0.15, 0.25])  # sorted: 0.50, 0.25, 0.15, 0.10
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).nonzero().view(-1).tolist()  # noqa: E731
    assert kept(0.4) == [1]  # 0.50 alone reaches 0.4
    assert kept(0.7) == [1, 3]  # 0.50 + 0.25 = 0.75 >= 0.7
    assert kept(0.8) == [1, 2, 3]  # 0.75 < 0.8, add 0.15 -> 0.90
    assert kept(0.95) == [0, 1, 2, 3]
    # kept tokens keep their logits; renormalised they sum to one
    filtered = filter_logits(logits, top_p=0.7)
    assert filtered[1] == logits[1] and filtered[3] == logits[3]
    torch.testing.assert_close(filtered.softmax(-1), torch.tensor([0.0, 0.5 / 0.75, 0.0, 0.25 / 0.75]))


def test_filter_logits_top_k_and_temperature():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, -1.0, 5.0, 4.0]])
    top2 = filter_logits(logits, top_k=2)
    assert torch.isfinite(top2).tolist() == [[False, True, True, False], [False, False, True, True]]
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2)
    assert torch.equal(filter_logits(logits, top_k=10), logits)  # k >= vocabulary: nothing removed
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)


def test_parallel_streams_score_every_token_once_and_match_with_full_warmup():
    """Streams split the text; with warm-up covering the whole history they equal one-pass scoring,
    and with a short warm-up they stay close (the parts only lose distant history)."""
    torch.manual_seed(0)
    model = RNNLM(11, embed=5, hidden=12, layers=2, cell="lstm").double()
    ids = torch.randint(0, 11, (1000,))
    exact = token_surprisals(model, ids, CPU, chunk=64)
    assert exact.shape == (999,)
    full_history = token_surprisals(model, ids, CPU, chunk=64, streams=4, warmup=1000)
    torch.testing.assert_close(full_history, exact)  # warmup > position: each part reads from token 0
    short = token_surprisals(model, ids, CPU, chunk=64, streams=4, warmup=100)
    assert short.shape == exact.shape
    torch.testing.assert_close(short[:249], exact[:249])  # the first part has its whole history
    assert (short - exact).abs().max() < 1e-3


def test_words_spell_their_letters_and_a_separator_and_unknown_words_count_as_rare_ones():
    import torch

    from seqtool.data.text import Vocab, detokenize
    from seqtool.lm.task import per_character, spelled_sizes

    vocab = Vocab(["<unk>", "<eos>", "a", "bb", "été", "cc"])
    counts = [0, 3, 2, 1, 1, 5]  # seen once: bb (2 letters) and été (3): an <unk> counts 2.5 (+ its space)
    tokens = ["a", "bb", "<eos>", "été", "<eos>", "<eos>", "a"]
    text = detokenize(tokens, "word")  # 'a bb\nété\n\na': 11 characters, 13 bytes; the last word's separator makes 12, 14
    assert spelled_sizes(vocab, "word", counts, torch.tensor(vocab.encode(tokens))) == (len(text) + 1, len(text.encode()) + 1)
    assert spelled_sizes(vocab, "word", counts, torch.tensor([0, 0])) == (7, 7)  # two <unk>: 2 x (2.5 + 1)
    assert spelled_sizes(Vocab(["<unk>", "a", "é"]), "char", [0, 1, 1], torch.tensor([1, 2, 2])) == (3, 5)
    bits = per_character({"cross_entropy_nats": math.log(2), "tokens": 10}, 20, 40)  # 10 bits in all
    assert (bits["bits_per_char"], bits["bits_per_byte"]) == (0.5, 0.25)
