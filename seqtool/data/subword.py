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
#: BPE encodes a chunk a word at a time unless more than this share of its words are distinct (text
#: unlike natural language, where line by line is then cheaper). Measured on a 16 MB War and Peace
#: chunk with a share of its words made new (3 rounds, medians; the variant before blocks shared one
#: table): word at a time ahead at 5% distinct (14.4 against 11.6 MB/s), level at about 9 to 15%,
#: behind at 22%; a natural chunk has about 1%.
MAX_DISTINCT_WORDS = 0.08
WORD_BLOCK = 8192  # lines cut into words at a time


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
        """Many lines at once as ids, each line ended by `eos`, mapped through `table` (sentencepiece
        id -> seqtool id), flattened and joined in numpy, never token by token in Python.

        Pieces never cross a space, so a word's pieces do not depend on the words around it: a
        chunk is cut into words, each distinct word is encoded once and the chunk is assembled from
        them (on natural text a 16 MB chunk has about 1% distinct words). Text where most words are
        new (over MAX_DISTINCT_WORDS of them distinct) is encoded line by line, which is then
        cheaper. BPE merges are deterministic (the best-scoring pair, leftmost on ties), so its ids
        are exactly those of line by line. A unigram word whose best segmentations tie exactly (the
        same pieces in another order: 'o'+'oo' and 'oo'+'o') may come out as the other one: which
        one sentencepiece picks inside a line depends on the rounding of the line's running score
        (2 of 30,328 lines of War and Peace with scrambled letters; none in the plain text)."""
        if lines:
            ids = self._ids_of_words(lines, table, eos)
            if ids is not None:
                return ids
        rows = self._sp.encode(lines, out_type=int, num_threads=2) if lines else []
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        out = np.full(flat.size + len(rows), eos, dtype=table.dtype)
        body = np.ones(out.size, dtype=bool)
        body[np.cumsum(lengths + 1) - 1] = False  # each line's <eos>
        out[body] = table[flat]
        return out

    def _ids_of_words(self, lines: list[str], table: np.ndarray, eos: int) -> np.ndarray | None:
        """The lines as ids, WORD_BLOCK lines at a time: the block's new distinct words are encoded
        (once in the chunk) and appended to a ragged table of pieces, and every word of the block is
        gathered from that table in numpy. None once more than MAX_DISTINCT_WORDS of the words are
        distinct (the share estimated as the blocks go by). Block-sized word lists and arrays reuse
        the memory the previous block freed, where chunk-sized ones would be fresh pages each time."""
        code = {"\n": 0}  # distinct word -> its row in the table; '\n' is a line end, '' the gap between two spaces
        flat = np.asarray([eos], dtype=table.dtype)  # the table's pieces, row after row (row 0: the line end's <eos>)
        starts, lengths = np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64)
        out, seen = [], 0
        for start in range(0, len(lines), WORD_BLOCK):
            words = " \n ".join(lines[start : start + WORD_BLOCK]).split(" ")
            words.append("\n")  # the block's last line end
            new = [word for word in dict.fromkeys(words) if word not in code]
            if new:
                code.update(zip(new, range(len(code), len(code) + len(new))))
                rows = self._sp.encode(new, out_type=int, num_threads=2)
                sizes = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
                starts = np.concatenate([starts, flat.size + np.cumsum(sizes) - sizes])
                lengths = np.concatenate([lengths, sizes])
                ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(sizes.sum()))
                flat = np.concatenate([flat, table[ids]])
            which = np.fromiter(map(code.__getitem__, words), dtype=np.int64, count=len(words))
            counts = lengths[which]
            ends = np.cumsum(counts)
            out.append(flat[np.arange(int(ends[-1])) + np.repeat(starts[which] - (ends - counts), counts)])
            seen += len(words)
            if len(code) > MAX_DISTINCT_WORDS * seen * len(lines) / min(start + WORD_BLOCK, len(lines)):
                return None
        return np.concatenate(out)

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
