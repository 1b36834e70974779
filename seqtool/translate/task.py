"""Translation: an encoder–decoder trained with teacher forcing on sentence pairs, validated each
epoch by loss and by the BLEU of real (greedy) decoding; the best checkpoint is the best BLEU."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from seqtool.translate import pairs as P
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.nn.seq2seq import Seq2Seq, Seq2SeqEnsemble, masked_cross_entropy
from seqtool.translate.search import Hypothesis, beam_search, greedy
from seqtool.core.task import Task
from seqtool.data.subword import Subwords
from seqtool.data.text import Vocab

LEVELS = ("word", "bpe", "unigram")


@dataclass
class Encoded:
    src: torch.Tensor  # (n, steps) ids
    src_len: torch.Tensor  # (n,)
    tgt: torch.Tensor
    tgt_len: torch.Tensor

    def __len__(self) -> int:
        return self.src.size(0)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows `index`, cut to the longest valid length among them (less padding to step through)."""
        src_len, tgt_len = self.src_len[index], self.tgt_len[index]
        return self.src[index, : int(src_len.max())], src_len, self.tgt[index, : int(tgt_len.max())], tgt_len


def read_pairs(corpus: str | None, target: str | None, encoding: str = "utf-8", errors: str = "strict") -> list[P.Pair]:
    """Pairs from one tab-separated corpus, or from two aligned files (corpus = source side)."""
    from seqtool.data.corpora import read_text

    if not corpus:
        raise UsageError("no corpus given: pass PAIRS (a tab-separated file, '-' or a catalog name such as fra-eng) or --src/--tgt")
    text = read_text(corpus, encoding, errors)
    where = "standard input" if corpus == "-" else corpus
    if target is None:
        return P.parse_pairs(text.split("\n"), where)
    if corpus == "-" and target == "-":
        raise UsageError("--src and --tgt cannot both be standard input")
    return P.parse_aligned(text.split("\n"), read_text(target, encoding, errors).split("\n"), f"{where} + {target}")


class TranslationTask(Task):
    name = "translate"
    monitor = "val_bleu"
    monitor_lower_is_better = False
    unit = "tokens"

    def __init__(self, spec, src_vocab: Vocab, tgt_vocab: Vocab, spacing: str,
                 train_pairs: Sequence[P.Pair] | None = None, val_pairs: Sequence[P.Pair] | None = None,
                 test_pairs: Sequence[P.Pair] | None = None, src_side: P.Side | None = None, tgt_side: P.Side | None = None):
        super().__init__(spec)
        self.src_vocab, self.tgt_vocab, self.spacing = src_vocab, tgt_vocab, spacing
        self.src_side, self.tgt_side = src_side or P.Side(), tgt_side or P.Side()
        self.train = self.val = None
        self.val_sources, self.val_refs, self.test_sources, self.test_refs = [], [], [], []
        if train_pairs is not None:
            self.train = self._encode_pairs(train_pairs)
            self.val = self._encode_pairs(val_pairs)
            self.val_sources, self.val_refs = P.group_references(val_pairs)
            self.test_sources, self.test_refs = P.group_references(test_pairs)

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def check_spec(spec) -> None:
        if spec.model.embed <= 0:
            raise UsageError("translation needs word embeddings: --embed must be > 0")
        if spec.data.val_fraction <= 0:
            raise UsageError("translation is validated by BLEU on held-out sources: --val-fraction must be > 0")
        if spec.data.level not in LEVELS:
            raise UsageError(f"--level {spec.data.level}: translation reads {', '.join(LEVELS[:-1])} or {LEVELS[-1]} tokens")
        if spec.data.level != "word" and spec.data.min_freq > 1:
            raise UsageError(f"--level {spec.data.level}: every piece of the subword vocabulary is kept; --min-freq does not apply")
        if spec.translate.joint_vocab and spec.data.level == "word":
            raise UsageError("--joint-vocab shares one subword vocabulary between the sides: give --level bpe or unigram")

    @classmethod
    def from_spec(cls, spec) -> "TranslationTask":
        cls.check_spec(spec)
        d, tr = spec.data, spec.translate
        pairs = read_pairs(d.corpus, tr.tgt, d.encoding, d.encoding_errors)
        if tr.reverse:
            pairs = P.reverse_pairs(pairs)
        kept = P.filter_length(pairs, d.max_len)
        if not kept:
            raise SeqtoolError(f"no sentence pair has at most {d.max_len} tokens on both sides; raise --max-len")
        # held-out sources, halved: validation chooses the checkpoint, test is reported (never seen by the choice)
        train, held = P.split_by_source(kept, d.val_fraction, spec.train.seed)
        if len({P.sentence_key(p.source) for p in held}) < 2:
            raise SeqtoolError(f"{len(kept)} pair(s) are too few to hold out {d.val_fraction:.0%} of the sources "
                               "as a validation and a test split (at least one source each)")
        test, val = P.split_by_source(held, 0.5, spec.train.seed)  # validation gets the odd source
        src_side, tgt_side = cls._learn_sides(spec, train)
        src_vocab = src_side.vocab((p.source for p in train), d.min_freq)
        tgt_vocab = tgt_side.vocab((p.target for p in train), d.min_freq)
        return cls(spec, src_vocab, tgt_vocab, P.learn_spacing(p.target for p in train), train, val, test, src_side, tgt_side)

    @staticmethod
    def _learn_sides(spec, train: Sequence[P.Pair]) -> tuple[P.Side, P.Side]:
        """Words, or subword models learnt on the training pairs alone (one per side, or one for both)."""
        level, size = spec.data.level, spec.data.vocab_size
        if level == "word":
            return P.Side(), P.Side()
        sources = [P.normalize_sentence(p.source) for p in train]
        targets = [P.normalize_sentence(p.target) for p in train]
        if spec.translate.joint_vocab:
            joint = P.Side(Subwords.learn(sources + targets, level, size, "the training pairs (both sides)"))
            return joint, joint
        return (P.Side(Subwords.learn(sources, level, size, "the training sources")),
                P.Side(Subwords.learn(targets, level, size, "the training targets")))

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "TranslationTask":
        sides = [P.Side(Subwords.from_state(task_state[key])) if task_state.get(key) else P.Side()
                 for key in ("src_subwords", "tgt_subwords")]
        return cls(spec, Vocab(list(task_state["src_vocab"])), Vocab(list(task_state["tgt_vocab"])), task_state["spacing"],
                   src_side=sides[0], tgt_side=sides[1])

    def task_state(self) -> dict:
        state = {"src_vocab": self.src_vocab.to_list(), "tgt_vocab": self.tgt_vocab.to_list(), "spacing": self.spacing}
        for key, side in (("src_subwords", self.src_side), ("tgt_subwords", self.tgt_side)):
            if side.subwords is not None:  # the model itself, inside the checkpoint: nothing beside it can get lost
                state[key] = side.subwords.state()
        return state

    def _encode_pairs(self, pairs: Sequence[P.Pair]) -> Encoded:
        steps = self.spec.data.steps
        src, src_len = P.encode([p.source for p in pairs], self.src_vocab, steps, self.src_side)
        tgt, tgt_len = P.encode([p.target for p in pairs], self.tgt_vocab, steps, self.tgt_side)
        return Encoded(src, src_len, tgt, tgt_len)

    def build_model(self) -> nn.Module:
        """One translator, or --members of them initialised one after another (so differently) as an ensemble."""
        members = [self._translator() for _ in range(self.spec.model.members)]
        return members[0] if len(members) == 1 else Seq2SeqEnsemble(members)

    def _translator(self) -> Seq2Seq:
        m, tr = self.spec.model, self.spec.translate
        model = Seq2Seq(len(self.src_vocab), len(self.tgt_vocab), m.embed, m.hidden, m.layers, m.cell, m.dropout,
                        m.bidirectional, tr.attention, pad_id=P.PAD_ID, impl=m.impl, tie_weights=m.tie_weights,
                        share_embeddings=m.tie_weights and tr.joint_vocab)
        for stack in (model.encoder, model.decoder):
            stack.reset_parameters(orthogonal=m.init == "orthogonal", forget_bias=m.forget_bias if m.cell == "lstm" else None)
        return model

    # ---- training ----------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.spec.train.batch)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator:
        order = torch.randperm(len(self.train), generator=generator)
        size = self.spec.train.batch
        for start in range(0, len(order), size):
            yield self.train.rows(order[start : start + size])

    def train_loss(self, model, batch, state, device):
        src, src_len, tgt, tgt_len = (t.to(device, non_blocking=True) for t in batch)
        if self.spec.model.members == 1:
            logits = model(src, src_len, P.decoder_input(tgt)).unsqueeze(0)
        else:  # every member fits its own loss, so they stay different
            logits = model(src, src_len, P.decoder_input(tgt), per_member=True)
        fits = [masked_cross_entropy(member, tgt, tgt_len, self.spec.translate.label_smoothing) for member in logits]
        return sum(loss for loss, _ in fits) / len(fits), fits[0][1], None

    @torch.no_grad()
    def evaluate(self, model, device) -> dict[str, float]:
        from seqtool.translate.bleu import corpus_scores

        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        for start in range(0, len(self.val), 256):
            src, src_len, tgt, tgt_len = (t.to(device) for t in self.val.rows(torch.arange(start, min(start + 256, len(self.val)))))
            loss, count = masked_cross_entropy(model(src, src_len, P.decoder_input(tgt)), tgt, tgt_len)
            total, tokens = total + float(loss) * int(count), tokens + int(count)
        hyps = self.translate(model, self.val_sources, device)
        texts = [self.target_text(h[0].tokens) for h in hyps]
        scores = corpus_scores(texts, [[self.reference_text(r) for r in refs] for refs in self.val_refs])
        model.train(was_training)
        return {"val_loss": total / max(tokens, 1), "val_bleu": scores.bleu, "val_chrf": scores.chrf}

    @torch.no_grad()
    def test(self, model, device) -> dict[str, float]:
        """BLEU and chrF on the test sources, decoded as translate/eval decode by default (the run's beam)."""
        from seqtool.translate.bleu import corpus_scores

        tr = self.spec.translate
        hyps = self.translate(model, self.test_sources, device, beam=tr.beam, length_penalty=tr.length_penalty)
        texts = [self.target_text(h[0].tokens) if h else "" for h in hyps]
        scores = corpus_scores(texts, [[self.reference_text(r) for r in refs] for refs in self.test_refs])
        return {"test_bleu": scores.bleu, "test_chrf": scores.chrf, "test_sources": len(self.test_sources)}

    # ---- inference ---------------------------------------------------------------------------
    def source_tokens(self, sentence: str) -> list[str]:
        """The tokens the encoder reads: normalised words, or their subword pieces."""
        return self.src_side.tokens(sentence)

    def source_ids(self, sentence: str) -> tuple[list[int], list[str]]:
        """Normalised source tokens as ids with <eos>; also the tokens the vocabulary lacks."""
        tokens = self.source_tokens(sentence)
        return self.src_vocab.encode(tokens) + [P.EOS_ID], [t for t in tokens if t not in self.src_vocab]

    def translate(self, model, sentences: Sequence[str], device, *, beam: int = 1, length_penalty: float = 0.0,
                  nbest: int = 1, max_len: int | None = None, attention: bool = False, batch: int = 64) -> list[list[Hypothesis]]:
        """Hypotheses (best first) for each sentence; sentences are batched by length, the order kept.
        A sentence that is empty after normalisation gets no hypothesis."""
        max_len = max_len or self.spec.data.steps
        encoded = [self.source_ids(s)[0] if P.normalize_sentence(s) else None for s in sentences]
        order = sorted((i for i, ids in enumerate(encoded) if ids is not None), key=lambda i: len(encoded[i]))
        out: list[list[Hypothesis]] = [[] for _ in sentences]
        was_training = model.training
        model.eval()
        decoder = model if self.tgt_side.subwords is None else _NoUnknown(model)  # subword output never needs <unk>
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            width = max(len(encoded[i]) for i in chunk)
            src = torch.full((len(chunk), width), P.PAD_ID, dtype=torch.long)
            for row, i in enumerate(chunk):
                src[row, : len(encoded[i])] = torch.tensor(encoded[i])
            src_len = torch.tensor([len(encoded[i]) for i in chunk])
            src = src.to(device)
            if beam == 1 and nbest == 1:
                results = [[h] for h in greedy(decoder, src, src_len, P.BOS_ID, P.EOS_ID, max_len, attention)]
            else:
                results = beam_search(decoder, src, src_len, P.BOS_ID, P.EOS_ID, max_len, beam, length_penalty, nbest, attention)
            for i, hyps in zip(chunk, results):
                out[i] = hyps
        model.train(was_training)
        return out

    def target_tokens(self, ids: Sequence[int]) -> list[str]:
        return self.tgt_vocab.decode(P.strip_ids(ids))

    def target_words(self, ids: Sequence[int]) -> list[str]:
        """The normalised words of an output (subword pieces joined back)."""
        return self.tgt_side.words(self.target_tokens(ids))

    def target_text(self, ids: Sequence[int], tokenized: bool = False) -> str:
        """Detokenised text (`tokenized`: the normalised words and marks, space-separated, whatever the level)."""
        words = self.tgt_side.words(self.target_tokens(ids))
        return " ".join(words) if tokenized else P.detokenize(words, self.spacing)

    def reference_text(self, raw: str) -> str:
        """A reference as the model would write it (normalised, same spacing), for fair BLEU."""
        return P.detokenize(P.tokenize_sentence(raw), self.spacing)

    def report_sections(self, model, device) -> list[str]:
        count = min(12, len(self.test_sources))
        sources, refs = self.test_sources[:count], self.test_refs[:count]
        tr = self.spec.translate
        hyps = self.translate(model, sources, device, beam=tr.beam, length_penalty=tr.length_penalty)
        decoding = "greedy" if tr.beam == 1 else f"beam {tr.beam}, length penalty {tr.length_penalty}"
        lines = [f"## Test-split translations ({decoding})", "", "| source | translation | reference(s) |", "|---|---|---|"]
        for source, hyp, ref in zip(sources, hyps, refs):
            text = self.target_text(hyp[0].tokens) if hyp else ""
            lines.append(f"| {_cell(source)} | {_cell(text)} | {_cell(' / '.join(ref[:3]))} |")
        return ["\n".join(lines)]


class _NoUnknown:
    """The model as search drives it (start, step), with <unk> never chosen: a subword target
    vocabulary spells every training character, so <unk> only ever stands for nothing."""

    def __init__(self, model):
        self.model = model

    def start(self, src, src_len):
        return self.model.start(src, src_len)

    def step(self, tokens, state):
        logits, state, attention = self.model.step(tokens, state)
        logits = logits.clone()
        logits[:, P.UNK_ID] = float("-inf")
        return logits, state, attention


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
