import math

import pytest
import torch

from seqtool.core.errors import UsageError
from seqtool.translate.pairs import EOS_ID, normalize_sentence
from seqtool.core.spec import RunSpec, apply_overrides, from_dict, load_spec
from seqtool.translate.pairs import looks_like_pairs
from seqtool.translate.task import TranslationTask

PAIRS = "".join(f"{en}\t{fr}\tCC-BY\n" for en, fr in [
    ("Go.", "Va !"), ("Go.", "Marche."), ("Hi.", "Salut !"), ("Run!", "Cours !"), ("Run!", "Courez !"),
    ("Who?", "Qui ?"), ("Wow!", "Ça alors !"), ("Fire!", "Au feu !"), ("Help!", "À l'aide !"), ("Jump.", "Saute."),
    ("Stop!", "Ça suffit !"), ("Wait!", "Attends !"), ("I see.", "Je comprends."), ("I try.", "J'essaye."),
])


@pytest.fixture
def task(tmp_path):
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text(PAIRS, encoding="utf-8")
    spec = apply_overrides(RunSpec(), {"task": "translate", "data.corpus": str(corpus), "data.level": "word", "data.steps": 4, "data.val_fraction": 0.25,
                                       "model.embed": 8, "model.hidden": 8, "model.layers": 1, "train.batch": 4})
    return TranslationTask.from_spec(spec)


def test_split_vocabularies_and_spacing_come_from_the_training_side(task):
    assert task.src_vocab.itos[:4] == task.tgt_vocab.itos[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    # 25% of 12 distinct sources are held out, each with all its translations: 2 validate, 1 tests
    assert (len(task.val_sources), len(task.test_sources)) == (2, 1)
    assert not {normalize_sentence(s) for s in task.val_sources} & {normalize_sentence(s) for s in task.test_sources}
    assert len(task.val) == sum(len(r) for r in task.val_refs)
    assert task.spacing == "!?"  # French writes "Va !"
    held_out = {normalize_sentence(s) for s in task.val_sources + task.test_sources}
    trained = {tuple(row[: n - 1]) for row, n in zip(task.train.src.tolist(), task.train.src_len.tolist())}
    assert all(tuple(task.src_vocab.encode(s.split())) not in trained for s in held_out)


def test_batches_cover_the_training_pairs_once_in_a_seeded_order(task):
    def epoch(seed):
        return list(task.train_batches(0, torch.Generator().manual_seed(seed)))

    batches = epoch(1)
    assert len(batches) == task.batches_per_epoch()
    assert sum(b[0].size(0) for b in batches) == len(task.train)
    for src, src_len, tgt, tgt_len in batches:
        assert src.size(1) == int(src_len.max()) and tgt.size(1) == int(tgt_len.max())  # no all-pad columns
        last = tgt.gather(1, (tgt_len - 1).unsqueeze(1)).squeeze(1)
        assert ((last == EOS_ID) | (tgt_len == 4)).all()  # <eos> ends every target not cut at 4 steps
    again, other = epoch(1), epoch(2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other))


def test_evaluate_reports_loss_bleu_and_chrf_and_translate_keeps_order(task):
    torch.manual_seed(0)
    model = task.build_model()
    metrics = task.evaluate(model, torch.device("cpu"))
    assert set(metrics) == {"val_loss", "val_bleu", "val_chrf"}
    # an untrained model: its loss is close to a uniform guess over the target vocabulary
    assert metrics["val_loss"] == pytest.approx(math.log(len(task.tgt_vocab)), rel=0.1)
    from seqtool.translate.bleu import corpus_scores

    hyps = [task.target_text(h[0].tokens) for h in task.translate(model, task.val_sources, torch.device("cpu"))]
    expected = corpus_scores(hyps, [[task.reference_text(r) for r in refs] for refs in task.val_refs])
    assert (metrics["val_bleu"], metrics["val_chrf"]) == (expected.bleu, expected.chrf)  # the same decoding, scored independently
    assert model.training  # evaluate puts the model back as it found it
    sentences = ["Go.", "", "I see a dog that runs.", "  ", "Hi."]
    out = task.translate(model, sentences, torch.device("cpu"), batch=2, beam=2, nbest=2)
    assert [len(h) for h in out] == [2, 0, 2, 0, 2]
    alone = task.translate(model, ["I see a dog that runs."], torch.device("cpu"), beam=2, nbest=2)
    assert [h.tokens for h in alone[0]] == [h.tokens for h in out[2]]


def test_members_train_side_by_side_each_on_its_own_loss(tmp_path):
    """--members 2: two translators initialised apart in one model; the training loss is the mean of
    their own losses, so each member's gradient is half of what its loss alone gives it."""
    from seqtool.nn.seq2seq import Seq2SeqEnsemble, masked_cross_entropy
    from seqtool.translate.pairs import decoder_input

    corpus = tmp_path / "pairs.tsv"
    corpus.write_text(PAIRS, encoding="utf-8")
    spec = apply_overrides(RunSpec(), {"task": "translate", "data.corpus": str(corpus), "data.level": "word", "data.steps": 4,
                                       "data.val_fraction": 0.25, "model.embed": 8, "model.hidden": 8, "model.layers": 1,
                                       "model.dropout": 0.0, "train.batch": 4, "model.members": 2})
    task = TranslationTask.from_spec(spec)
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, Seq2SeqEnsemble) and len(model.members) == 2
    first, second = (dict(m.named_parameters()) for m in model.members)
    assert not torch.equal(first["out.weight"], second["out.weight"])  # initialised apart
    batch = next(task.train_batches(0, torch.Generator().manual_seed(0)))
    loss, count, _ = task.train_loss(model, batch, None, torch.device("cpu"))
    src, src_len, tgt, tgt_len = batch
    own = [masked_cross_entropy(m(src, src_len, decoder_input(tgt)), tgt, tgt_len, spec.translate.label_smoothing)[0] for m in model.members]
    torch.testing.assert_close(loss, (own[0] + own[1]) / 2)
    loss.backward()
    alone = torch.autograd.grad(own[1], list(model.members[1].parameters()))
    for p, g in zip(model.members[1].parameters(), alone):
        torch.testing.assert_close(p.grad, g / 2)


def test_a_checkpointed_task_rebuilds_the_same_model_shape(task):
    again = TranslationTask.from_checkpoint(task.spec, task.task_state())
    assert again.task_state() == task.task_state()
    assert again.build_model().state_dict().keys() == task.build_model().state_dict().keys()


def test_looks_like_pairs(tmp_path):
    (tmp_path / "p.tsv").write_text(PAIRS)
    (tmp_path / "t.txt").write_text("It was a dark night.\nAnd\tthen a tab.\n")
    assert looks_like_pairs(str(tmp_path / "p.tsv"))
    assert not looks_like_pairs(str(tmp_path / "t.txt"))
    assert not looks_like_pairs("-")


def test_translate_spec_section(tmp_path):
    (tmp_path / "fr.txt").write_text("x")
    path = tmp_path / "s.yaml"
    path.write_text("task: translate\ndata:\n  corpus: en.txt\ntranslate:\n  target: fr.txt\n  attention: additive\n  beam: 5\n")
    spec = load_spec(path)
    assert spec.translate.tgt == str(tmp_path / "fr.txt") and spec.translate.beam == 5
    with pytest.raises(UsageError, match="unknown key 'translate.beams'"):
        from_dict({"translate": {"beams": 5}})
    with pytest.raises(UsageError, match="translate.beam must be > 0"):
        from_dict({"translate": {"beam": 0}})
