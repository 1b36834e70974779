"""Translation quality: corpus BLEU and chrF through sacrebleu (comparable, with a signature), and
the classic per-sentence BLEU of the d2l chapter (n-grams up to k, weight 1/2**n per precision)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from seqtool.data.text import ngram_counts


@dataclass
class CorpusScore:
    bleu: float  # 0..100
    chrf: float  # 0..100
    bleu_signature: str
    chrf_signature: str


def corpus_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> CorpusScore:
    """hypotheses[i] is scored against every string in references[i] (any number, at least one)."""
    from sacrebleu.metrics import BLEU, CHRF  # imported here: slow to import, needed only at eval

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    width = max((len(r) for r in references), default=1)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hypotheses), streams)
    c = chrf.corpus_score(list(hypotheses), streams)
    return CorpusScore(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))


def sentence_bleu(prediction: Sequence[str], reference: Sequence[str], k: int = 2) -> float:
    """Classic BLEU of one token sequence: exp(min(0, 1 - len_ref/len_pred)) * prod_n p_n^(1/2^n)
    for n = 1..min(k, len_pred), with clipped n-gram matches. 0 for an empty prediction."""
    if not prediction:
        return 0.0
    score = math.exp(min(0.0, 1 - len(reference) / len(prediction)))
    for n in range(1, min(k, len(prediction)) + 1):
        pred, ref = ngram_counts(prediction, n), ngram_counts(reference, n)
        matches = sum((pred & ref).values())
        score *= (matches / (len(prediction) - n + 1)) ** (0.5**n)
    return score
