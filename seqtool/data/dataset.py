"""Prepared text datasets: the vocabulary and token ids of a corpus, saved by `seqtool preprocess`
and accepted by `seqtool train` in place of raw text."""

from __future__ import annotations

import io
import pickle
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from seqtool.data.corpora import read_bytes, decode_text, resolve_corpus
from seqtool.core.errors import SeqtoolError
from seqtool.core.run import atomic_write_bytes
from seqtool.data.text import UNK, Vocab, detokenize, ngram_counts, normalize, tokenize

DATASET_FORMAT = "seqtool-dataset"


@dataclass
class PreparedText:
    vocab: Vocab
    ids: torch.Tensor  # int64 token ids of the whole corpus
    level: str
    clean: str
    counts: list[int]  # frequency of each vocabulary entry (for unigram sampling and stats)

    def tokens(self) -> list[str]:
        return self.vocab.decode(self.ids.tolist())

    def save(self, path: str | Path) -> None:
        buffer = io.BytesIO()
        torch.save(
            {"format": DATASET_FORMAT, "version": 1, "vocab": self.vocab.to_list(), "ids": self.ids,
             "level": self.level, "clean": self.clean, "counts": self.counts},
            buffer,
        )
        atomic_write_bytes(Path(path), buffer.getvalue())


def prepare_text(text: str, level: str, clean: str, min_freq: int = 0, reserved: tuple[str, ...] = ()) -> PreparedText:
    tokens = tokenize(normalize(text, clean), level)
    if len(tokens) < 2:
        raise SeqtoolError(f"the corpus has {len(tokens)} token(s) after '{clean}' normalisation; a language model needs at least 2")
    vocab = Vocab.build(tokens, min_freq=min_freq, reserved=reserved)
    if all(t == UNK or t in reserved for t in vocab.itos):
        raise SeqtoolError(f"every token occurs fewer than --min-freq {min_freq} times: the vocabulary would be only <unk>; lower --min-freq")
    ids = torch.tensor(vocab.encode(tokens), dtype=torch.long)
    frequency = Counter(ids.tolist())
    return PreparedText(vocab, ids, level, clean, [frequency.get(i, 0) for i in range(len(vocab))])


def _parse_dataset(data: bytes, name: str) -> PreparedText | None:
    if not data.startswith(b"PK"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SeqtoolError(f"refusing to load {name}: it holds Python objects, not just tensors and plain data, "
                           "and unpickling them could run code") from None
    except Exception:  # noqa: BLE001 - any other failure: not a torch file, read it as text
        return None
    if not isinstance(raw, dict) or raw.get("format") != DATASET_FORMAT:
        raise SeqtoolError(f"{name} is a zip/torch file but not a seqtool dataset")
    try:
        vocab = Vocab(list(raw["vocab"]))
        ids = raw["ids"].long()
        prepared = PreparedText(vocab, ids, str(raw["level"]), str(raw["clean"]), [int(c) for c in raw["counts"]])
        ok = ids.dim() == 1 and ids.numel() >= 2 and int(ids.min()) >= 0 and int(ids.max()) < len(vocab) and len(prepared.counts) == len(vocab)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError):
        ok = False
    if not ok or prepared.level not in ("char", "word") or prepared.clean not in ("letters", "lower", "none"):
        raise SeqtoolError(f"{name} is a damaged seqtool dataset (vocabulary, ids or settings do not fit together)")
    return prepared


def load_corpus(arg: str, level: str, clean: str, min_freq: int, encoding: str = "utf-8", errors: str = "strict") -> PreparedText:
    """A corpus argument (path, '-', catalog name or prepared dataset) as token ids."""
    source = resolve_corpus(arg)
    name = "standard input" if source == "-" else str(source)
    data = read_bytes(source)
    prepared = _parse_dataset(data, name)
    if prepared is not None:
        return prepared
    return prepare_text(decode_text(data, name, encoding, errors), level, clean, min_freq)


def ngram_table(tokens: list[str], n: int, top: int, level: str) -> list[tuple[str, int]]:
    """The most frequent n-grams, written as text ('t h e' for chars reads as 'the')."""
    return [(detokenize(g, level), c) for g, c in ngram_counts(tokens, n).most_common(top)]
