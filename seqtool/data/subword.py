"""Subword vocabularies (BPE and unigram) with sentencepiece.

sentencepiece because it learns both kinds with one call from an iterator of sentences, writes
the whole model as one serialised protobuf that seqtool keeps inside the run and its checkpoints
(base64 text: loading stays weights-only and runs no code), and its detokenisation is exact: a
piece carries its leading space ('▁'), so decoding needs no language rules. Every character of the
training text is kept (character coverage 1.0), so the targets a model learns never hold <unk>;
a character only new input has reads as <unk> on the source side.

The model is learnt on the training part only; seqtool adds its own specials (<unk>, <pad>,
<bos>, <eos>) in front of the pieces in its Vocab.
"""

from __future__ import annotations

import base64
import io
import itertools
import random
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from seqtool.core.errors import SeqtoolError

KINDS = ("bpe", "unigram")
#: lines a model learns from at most: a seeded sample of a larger text, drawn as the text streams by,
#: so learning time and memory stay bounded whatever the corpus size. Unigram's learner builds a
#: suffix array over its sample, about twice BPE's memory per line, so it reads fewer.
LEARN_LINES = {"bpe": 1_000_000, "unigram": 300_000}
#: sentencepiece's own reserved pieces, which seqtool's Vocab replaces with its specials
_RESERVED = ("<unk>", "<s>", "</s>")


@dataclass
class Subwords:
    kind: str
    proto: bytes = field(repr=False)

    def __post_init__(self):
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(self.proto)

    @classmethod
    def learn(cls, sentences: Iterable[str], kind: str, vocab_size: int, what: str = "the training part") -> "Subwords":
        """A `kind` model of `vocab_size` pieces (specials included) learnt from `sentences`."""
        if kind not in KINDS:
            raise ValueError(f"unknown subword kind {kind!r}; choose one of {', '.join(KINDS)}")
        lines, total = sample_lines((s for s in sentences if s.strip()), LEARN_LINES[kind])
        if not lines:
            raise SeqtoolError(f"{what} has no text to learn a {kind} vocabulary from")
        out = io.BytesIO()
        try:
            _train(lines, out, kind, vocab_size, hard=True)
        except RuntimeError as exc:
            low, high = _usable(lines, kind, str(exc))
            sampled = f", {len(lines):,} of them sampled" if len(lines) < total else ""
            raise SeqtoolError(f"--vocab-size {vocab_size} does not fit {what} ({total:,} lines{sampled}): a {kind} vocabulary "
                               f"here can have {low} to {high} pieces") from None
        return cls(kind, out.getvalue())

    def pieces(self, text: str) -> list[str]:
        return self._sp.EncodeAsPieces(text)

    def ids_of_lines(self, lines: list[str], table: np.ndarray, eos: int) -> np.ndarray:
        """Many lines at once as ids, each line ended by `eos`: sentencepiece's own ids (its two
        threads share the lines) mapped through `table` (sentencepiece id -> seqtool id), flattened
        and joined in numpy, never token by token in Python."""
        rows = self._sp.encode(lines, out_type=int, num_threads=2) if lines else []
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        out = np.full(flat.size + len(rows), eos, dtype=table.dtype)
        body = np.ones(out.size, dtype=bool)
        body[np.cumsum(lengths + 1) - 1] = False  # each line's <eos>
        out[body] = table[flat]
        return out

    def id_table(self, stoi: dict[str, int], dtype) -> np.ndarray:
        """sentencepiece id -> the id of the same piece in a seqtool vocabulary (<unk> if absent)."""
        return np.asarray([stoi.get(self._sp.IdToPiece(i), 0) if i > 2 else 0 for i in range(self._sp.GetPieceSize())], dtype=dtype)

    def text(self, pieces: Iterable[str]) -> str:
        return self._sp.DecodePieces(list(pieces))

    def vocabulary(self) -> list[str]:
        """The pieces in id order, without sentencepiece's reserved ones."""
        return [self._sp.IdToPiece(i) for i in range(self._sp.GetPieceSize()) if self._sp.IdToPiece(i) not in _RESERVED]

    def state(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.proto).decode("ascii")}

    @classmethod
    def from_state(cls, state: dict) -> "Subwords":
        try:
            return cls(state["kind"], base64.b64decode(state["model"], validate=True))
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise SeqtoolError(f"the run's subword model is damaged ({type(exc).__name__})") from None


def sample_lines(lines: Iterable[str], cap: int, seed: int = 0) -> tuple[list[str], int]:
    """-> (at most `cap` of the lines, how many there were): all of them, in order, when they fit;
    else a uniform seeded sample kept as they stream by (reservoir sampling), never all in memory."""
    kept: list[str] = []
    rng = random.Random(seed)
    total = 0
    for total, line in enumerate(lines, 1):
        if len(kept) < cap:
            kept.append(line)
        else:
            j = rng.randrange(total)
            if j < cap:
                kept[j] = line
    return kept, total


def _train(lines: list[str], out: io.BytesIO, kind: str, vocab_size: int, hard: bool) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, vocab_size=vocab_size, model_type=kind, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=hard, minloglevel=2, num_threads=2,
        input_sentence_size=0)  # every line given: they are already at most LEARN_LINES (sample_lines)


def _usable(lines: list[str], kind: str, message: str) -> tuple[int, int]:
    """The smallest and largest vocabulary sizes the text allows: the characters plus the
    reserved pieces, and what a learner with no limit ends at (sentencepiece's '<= N' when it says)."""
    import re

    low = len({ch for s in lines for ch in s.replace(" ", "\u2581")}) + len(_RESERVED) + 1  # the word-start mark '▁' too
    found = re.search(r"<=\s*(\d+)", message)
    if found:
        return low, int(found.group(1))
    out = io.BytesIO()
    _train(lines, out, kind, 1 << 20, hard=False)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(out.getvalue())
    return low, sp.GetPieceSize()
