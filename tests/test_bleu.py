import math

import pytest
import sacrebleu

from seqtool.translate.bleu import corpus_scores, sentence_bleu


def test_corpus_bleu_matches_sacrebleu_with_a_varying_number_of_references():
    hyps = ["je suis chez moi.", "va !", "il est calme."]
    refs = [["je suis chez moi."], ["va !", "bouge !", "marche."], ["il est tranquille."]]
    score = corpus_scores(hyps, refs)
    streams = [["je suis chez moi.", "va !", "il est tranquille."], [None, "bouge !", None], [None, "marche.", None]]
    assert score.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert score.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score)
    assert 0 < score.bleu < 100
    assert "nrefs:var" in score.bleu_signature and "tok:13a" in score.bleu_signature


def test_corpus_bleu_of_a_perfect_match_is_100_and_extra_references_only_help():
    assert corpus_scores(["the cat sat on the mat ."], [["the cat sat on the mat ."]]).bleu == pytest.approx(100.0)
    one = corpus_scores(["the cat is on the mat ."], [["a cat sat on the mat ."]]).bleu
    two = corpus_scores(["the cat is on the mat ."], [["a cat sat on the mat .", "the cat is on a mat ."]]).bleu
    assert two > one


def test_corpus_scores_needs_one_reference_set_per_hypothesis():
    with pytest.raises(ValueError):
        corpus_scores(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        corpus_scores(["a"], [[]])


def test_classic_sentence_bleu_by_hand():
    assert sentence_bleu("je suis chez moi .".split(), "je suis chez moi .".split()) == 1.0
    assert sentence_bleu([], ["va", "!"]) == 0.0
    assert sentence_bleu("il est mouillé .".split(), "il est calme .".split()) == pytest.approx((3 / 4) ** 0.5 * (1 / 3) ** 0.25)
    # a short prediction pays the brevity penalty exp(1 - 4/3); one bigram of two matches
    assert sentence_bleu("va cours .".split(), "va , cours .".split()) == pytest.approx(math.exp(1 - 4 / 3) * 1.0 * (1 / 2) ** 0.25)
    # clipped counts: "le le le" matches "le" only twice
    assert sentence_bleu(["le", "le", "le"], ["le", "chat", "le"], k=1) == pytest.approx((2 / 3) ** 0.5)
