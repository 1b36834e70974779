"""Text preprocessing: normalisation, tokenisation, the vocabulary and n-gram statistics."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

CLEANS = ("letters", "lower", "none")
LEVELS = ("char", "word")
UNK, PAD, BOS, EOS = "<unk>", "<pad>", "<bos>", "<eos>"

_NOT_LETTERS = re.compile(r"[^A-Za-z]+")
_NOT_LETTERS_OR_NEWLINE = re.compile(r"[^A-Za-z\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")


def unify_newlines(text: str) -> str:
    """Windows (\\r\\n) and old Mac (\\r) line ends read as \\n, so mixed files tokenise alike."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def normalize(text: str, clean: str = "letters", keep_lines: bool = False) -> str:
    """letters: the classic Time Machine recipe (letters only, lowercase, other runs -> one space);
    lower: lowercase only; none: the raw text. Line ends are unified first; keep_lines (word level,
    where a line end is the <eos> token) keeps them through the letters recipe, line by line."""
    text = unify_newlines(text)
    if clean == "letters":
        if keep_lines:
            return _SPACE_AROUND_NEWLINE.sub("\n", _NOT_LETTERS_OR_NEWLINE.sub(" ", text)).lower().strip(" ")
        return _NOT_LETTERS.sub(" ", text).lower().strip()
    if clean == "lower":
        return text.lower()
    if clean == "none":
        return text
    raise ValueError(f"unknown clean mode {clean!r}; choose one of {', '.join(CLEANS)}")


def tokenize(text: str, level: str = "char", eos: bool = True) -> list[str]:
    """char: every character. word: whitespace-separated words, and (eos) <eos> at the end of every
    line, empty lines included: the word-benchmark convention (a final line end adds no empty line)."""
    if level == "char":
        return list(text)
    if level == "word":
        if not eos:
            return text.split()
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the text ended with a line end
        return [w for line in lines for w in (*line.split(), EOS)]
    raise ValueError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")


def text_tokens(text: str, level: str, clean: str) -> list[str]:
    """A corpus's tokens: normalised as `clean` says, then tokenised at `level`."""
    return tokenize(normalize(text, clean, keep_lines=level == "word"), level)


def detokenize(tokens: Iterable[str], level: str) -> str:
    """Tokens back to text; a word-level <eos> is the line end it stands for."""
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n").replace(EOS, "\n")


@dataclass
class Vocab:
    """Token <-> index. Reserved tokens come first (`<unk>` is always index 0), then tokens by
    descending frequency (ties broken by first appearance, so the order is deterministic)."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("vocabulary has duplicate tokens")
        if not self.itos or self.itos[0] != UNK:
            raise ValueError("vocabulary must start with <unk>")
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 0, reserved: Sequence[str] = ()) -> "Vocab":
        counts = Counter(tokens)
        specials = [UNK] + [t for t in reserved if t != UNK]
        ordered = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: keeps first-seen order on ties
        itos = specials + [t for t, c in ordered if c >= max(min_freq, 1) and t not in specials]
        return cls(itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    @property
    def unk(self) -> int:
        return 0

    def index(self, token: str) -> int:
        return self.stoi.get(token, 0)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(t, 0) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def to_list(self) -> list[str]:
        return list(self.itos)


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counts of n-grams (as tuples) over a token sequence."""
    return Counter(zip(*(tokens[i:] for i in range(n))))
