"""Parallel sentence pairs for translation: parsing, the classic normalisation, word tokens,
vocabularies with fixed specials, padded id tensors with valid lengths, and a split by source.

Sentences are normalised once (lowercase, Unicode spaces -> ' ', punctuation split off) so that
`sentence.split()` is the token list; `detokenize` turns tokens back into ordinary text.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from seqtool.core.errors import SeqtoolError
from seqtool.data.subword import Subwords
from seqtool.data.text import BOS, EOS, PAD, UNK, Vocab

#: fixed indices of the specials in every translation vocabulary
SPECIALS = (UNK, PAD, BOS, EOS)
UNK_ID, PAD_ID, BOS_ID, EOS_ID = range(4)

#: marks split off as tokens of their own ('.' and ',' stay inside numbers such as 3.5)
_SPLIT = re.compile(r'[!?;:«»"]|(?<!\d)[.,]|[.,](?!\d)')
#: marks that French (and some corpora) write with a space before them; English does not
SPACEABLE = "!?;:"


def normalize_sentence(text: str) -> str:
    """The classic recipe: lowercase, every Unicode space (nbsp, narrow nbsp, thin) -> ' ', curly
    apostrophe -> ', and one space between words and punctuation."""
    text = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in text)
    text = text.replace("\u2019", "'").lower()
    return " ".join(_SPLIT.sub(lambda m: f" {m.group(0)} ", text).split())


def tokenize_sentence(text: str) -> list[str]:
    return normalize_sentence(text).split()


def learn_spacing(raw_sentences: Iterable[str]) -> str:
    """Which of SPACEABLE the corpus usually writes after a space ("Va !" vs "Go!"), so that
    detokenised output follows the target language's own typography."""
    spaced: dict[str, int] = {}
    tight: dict[str, int] = {}
    for sentence in raw_sentences:
        for i, ch in enumerate(sentence):
            if ch in SPACEABLE and i > 0:
                counter = spaced if sentence[i - 1].isspace() else tight
                counter[ch] = counter.get(ch, 0) + 1
    return "".join(m for m in SPACEABLE if spaced.get(m, 0) > tight.get(m, 0))


def detokenize(tokens: Sequence[str], spaced: str = "") -> str:
    """Tokens -> text: no space before '.' and ',', nor before the marks of SPACEABLE that are
    not in `spaced`. ["je", "suis", "chez", "moi", "."] -> "je suis chez moi."."""
    out = ""
    for tok in tokens:
        glue = tok in ".," or (tok in SPACEABLE and tok not in spaced)
        out += tok if (glue or not out) else " " + tok
    return out


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Pair:
    source: str  # raw text as read
    target: str


def parse_pairs(lines: Iterable[str], where: str = "corpus") -> list[Pair]:
    """`source<TAB>target[<TAB>anything]` lines; extra columns (attribution) are ignored and
    blank lines skipped. A line without a tab or with an empty side is an error naming the line."""
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise SeqtoolError(f"{where}, line {number}: no tab; expected source<TAB>target")
        _check_side(cols[0], "source", where, number)
        _check_side(cols[1], "target", where, number)
        pairs.append(Pair(cols[0].strip(), cols[1].strip()))
    if not pairs:
        raise SeqtoolError(f"{where}: no sentence pairs found")
    return pairs


def parse_aligned(source_lines: Sequence[str], target_lines: Sequence[str], where: str = "corpus") -> list[Pair]:
    """Two files, line i of one translating line i of the other; both lines blank = skipped."""
    src = [s.rstrip("\r\n") for s in source_lines]
    tgt = [t.rstrip("\r\n") for t in target_lines]
    while src and not src[-1].strip():
        src.pop()
    while tgt and not tgt[-1].strip():
        tgt.pop()
    if len(src) != len(tgt):
        raise SeqtoolError(f"{where}: source has {len(src)} lines but target has {len(tgt)}; the files must be aligned")
    pairs = []
    for number, (s, t) in enumerate(zip(src, tgt), 1):
        if not s.strip() and not t.strip():
            continue
        _check_side(s, "source", where, number)
        _check_side(t, "target", where, number)
        pairs.append(Pair(s.strip(), t.strip()))
    if not pairs:
        raise SeqtoolError(f"{where}: no sentence pairs found")
    return pairs


def _check_side(text: str, side: str, where: str, number: int) -> None:
    if not normalize_sentence(text):
        raise SeqtoolError(f"{where}, line {number}: empty {side} side")


def reverse_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    return [Pair(p.target, p.source) for p in pairs]


def filter_length(pairs: Sequence[Pair], max_len: int | None) -> list[Pair]:
    """Drop pairs with more than max_len tokens on either side (None keeps all)."""
    if max_len is None:
        return list(pairs)
    return [p for p in pairs if len(tokenize_sentence(p.source)) <= max_len and len(tokenize_sentence(p.target)) <= max_len]


def sentence_key(text: str) -> tuple[str, ...]:
    """What makes two sources the same sentence: their words, whatever the case, spacing or
    punctuation ("Run!" and "Run." are one sentence)."""
    return tuple(t for t in tokenize_sentence(text) if not _SPLIT.fullmatch(t))


def split_by_source(pairs: Sequence[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out a seeded random val_fraction of the distinct source sentences (see sentence_key),
    with all their translations, so no source sentence lands in both halves."""
    sources = sorted({sentence_key(p.source) for p in pairs})
    random.Random(seed).shuffle(sources)
    n_val = round(len(sources) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(sources) > 1:
        n_val = 1
    if n_val >= len(sources) and n_val > 0:
        raise SeqtoolError(f"only {len(sources)} distinct source sentences: too few to hold out {val_fraction:.0%}")
    held = set(sources[:n_val])
    train = [p for p in pairs if sentence_key(p.source) not in held]
    val = [p for p in pairs if sentence_key(p.source) in held]
    return train, val


def group_references(pairs: Sequence[Pair]) -> tuple[list[str], list[list[str]]]:
    """Distinct sources (compared normalised; first spelling kept) in first-seen order, each with
    every target it is paired with."""
    first: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for p in pairs:
        key = normalize_sentence(p.source)
        first.setdefault(key, p.source)
        refs.setdefault(key, []).append(p.target)
    return list(first.values()), list(refs.values())


# ----------------------------------------------------------------------------- tensors


@dataclass
class Side:
    """How one side's sentences become tokens and back: the normalised words, or (subwords set)
    the pieces of the normalised sentence, which decode back to its words exactly."""

    subwords: Subwords | None = None

    def tokens(self, sentence: str) -> list[str]:
        if self.subwords is None:
            return tokenize_sentence(sentence)
        normalized = normalize_sentence(sentence)
        return self.subwords.pieces(normalized) if normalized else []

    def words(self, tokens: Sequence[str]) -> list[str]:
        """Tokens -> the normalised words they spell."""
        return list(tokens) if self.subwords is None else self.subwords.text(tokens).split()

    def vocab(self, sentences: Iterable[str], min_freq: int) -> Vocab:
        """<unk> <pad> <bos> <eos> at indices 0..3, then the words by frequency (rarer than
        min_freq: <unk>) or every piece of the subword model."""
        if self.subwords is None:
            return Vocab.build((tok for s in sentences for tok in tokenize_sentence(s)), min_freq, reserved=SPECIALS)
        return Vocab(list(SPECIALS) + [piece for piece in self.subwords.vocabulary() if piece not in SPECIALS])


def build_vocab(sentences: Iterable[str], min_freq: int) -> Vocab:
    """Word vocabulary with <unk> <pad> <bos> <eos> at indices 0..3."""
    return Side().vocab(sentences, min_freq)


def encode(sentences: Sequence[str], vocab: Vocab, steps: int, side: Side | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences -> (ids (n, steps), valid_len (n,)). <eos> is appended, then sequences are
    truncated or padded with <pad> to `steps`; valid_len counts the non-pad positions."""
    side = side or Side()
    ids = torch.full((len(sentences), steps), PAD_ID, dtype=torch.long)
    lengths = torch.empty(len(sentences), dtype=torch.long)
    for i, sentence in enumerate(sentences):
        row = (vocab.encode(side.tokens(sentence)) + [EOS_ID])[:steps]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths[i] = len(row)
    return ids, lengths


def decoder_input(target: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: <bos> followed by the target without its last position."""
    bos = torch.full_like(target[:, :1], BOS_ID)
    return torch.cat([bos, target[:, :-1]], dim=1)


def strip_ids(ids: Iterable[int]) -> list[int]:
    """Generated ids up to (not including) the first <eos>, with <pad>/<bos> dropped."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return out


def claims(corpus: str | None, target: str | None) -> bool:
    """Data given with no --task is translation when it comes with a target side or looks like pairs."""
    return target is not None or looks_like_pairs(corpus)


def looks_like_pairs(corpus: str | None) -> bool:
    """True when the first non-blank lines of a corpus file all contain a tab (stdin is not peeked)."""
    from seqtool.data.corpora import peek

    head = peek(corpus, 1 << 16)
    if head is None:
        return False
    lines = head.decode("utf-8", errors="replace").splitlines()
    if len(head) == 1 << 16:
        lines = lines[:-1]  # possibly cut short
    lines = [line for line in lines if line.strip()][:20]
    return bool(lines) and all("\t" in line for line in lines)
