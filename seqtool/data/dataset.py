"""Prepared text datasets: the vocabulary and token ids of a corpus, saved by `seqtool preprocess`
as a token store (seqtool.data.store) and accepted by `seqtool train` in place of raw text.

Datasets written by earlier versions (a torch zip of int64 ids) still load, read as plain data."""

from __future__ import annotations

import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

import numpy as np

from seqtool.data.corpora import check_regular_file, read_bytes, decode_text, resolve_corpus
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.data.subword import Subwords
from seqtool.data.store import (StoreWriter, TextSource, build_vocab, count_tokens, encode_chunks, id_dtype, is_store,
                                max_id_in_file, open_store, read_blocks, text_source)
from seqtool.data.text import EOS, UNK, Vocab

DATASET_FORMAT = "seqtool-dataset"
SUBWORD_LEVELS = ("bpe", "unigram")
LEVELS = ("char", "word", *SUBWORD_LEVELS)
DEFAULT_VOCAB_SIZE = 4000  # subword pieces when no size is given (the spec's and preprocess's default too)


@dataclass
class PreparedText:
    vocab: Vocab
    ids: torch.Tensor  # token ids of the whole corpus, in the smallest unsigned type that holds them (maybe a memory map)
    level: str
    clean: str
    counts: list[int]  # frequency of each vocabulary entry in the (training) text: unigram sampling, stats, softmax clusters
    splits: dict[str, list[int]] | None = None  # a train/valid/test layout: name -> [start, stop) in ids
    path: Path | None = None  # the token store the ids map, if any
    subwords: Subwords | None = None  # bpe / unigram: the model the pieces come from (kept in the store too)

    def tokens(self) -> list[str]:
        return self.vocab.decode(self.ids.tolist())

    def blocks(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Ids [start, stop) as numpy blocks; a store is read, not mapped (see read_blocks)."""
        stop = self.ids.numel() if stop is None else stop
        if self.path is not None:
            yield from read_blocks(self.path, self.ids.numpy().dtype, start, stop)
            return
        for begin in range(start, stop, 1 << 24):
            yield self.ids[begin : min(stop, begin + (1 << 24))].numpy()

    def part(self, name: str) -> torch.Tensor:
        start, stop = self.splits[name]
        return self.ids[start:stop]

    def save(self, path: str | Path) -> None:
        """Write the token store (see seqtool.data.store), atomically."""
        writer = StoreWriter(Path(path), id_dtype(len(self.vocab)))
        try:
            for start in range(0, self.ids.numel(), 1 << 24):
                writer.append(self.ids[start : start + (1 << 24)].numpy())
            writer.finish(self.footer())
        except BaseException:
            writer.abort()
            raise

    def footer(self) -> dict:
        footer = {"format": DATASET_FORMAT, "version": 2, "vocab": self.vocab.to_list(), "counts": self.counts,
                  "level": self.level, "clean": self.clean, "splits": self.splits}
        if self.subwords is not None:
            footer["subwords"] = self.subwords.state()
        return footer


def prepare_text(text: str, level: str, clean: str, min_freq: int = 0, reserved: tuple[str, ...] = ()) -> PreparedText:
    """A text in memory as a prepared dataset (the same encoder as files, in one piece)."""
    return prepare_sources([TextSource("the text", text=text)], level, clean, min_freq, reserved)


@dataclass
class SubwordRequest:
    """What a bpe / unigram level needs to learn its model: the size, and which share of the first
    source is training text (1.0 for a layout's train.txt; 1 - val_fraction for a text whose tail
    is held out)."""

    vocab_size: int
    fraction: float = 1.0


def prepare_subwords(sources: list[TextSource], level: str, clean: str, request: SubwordRequest, names: tuple[str, ...] = (),
                     out: Path | None = None) -> PreparedText:
    """bpe / unigram: learn the model on the training text, then encode every source with it; the
    vocabulary is <unk>, <eos> and the model's pieces, the counts those of the first source."""
    from seqtool.data.store import learning_lines

    subwords = Subwords.learn(learning_lines(sources[0], clean, request.fraction), level, request.vocab_size,
                              f"the training text of {sources[0].name}")
    vocab = Vocab([UNK, EOS] + [p for p in subwords.vocabulary() if p not in (UNK, EOS)])
    data = PreparedText(vocab, torch.zeros(0), level, clean, [0] * len(vocab), None, subwords=subwords)
    counts = np.zeros(len(vocab), dtype=np.int64)
    return _encode_sources(data, sources, names, out, lambda source: encode_chunks(source, vocab, level, clean, subwords), counts)


def _encode_sources(data: PreparedText, sources: list[TextSource], names: tuple[str, ...], out: Path | None, encode,
                    counts: np.ndarray | None = None) -> PreparedText:
    """Every source's ids from `encode(source)`, into the token store at `out` (mapped back) or into
    memory; with `names` the sources are a layout's parts and data.splits says where each lies.
    `counts`, when given, adds up the first source's tokens before the footer is written."""
    dtype = id_dtype(len(data.vocab))
    writer = StoreWriter(out, dtype) if out is not None else None
    pieces, bounds = [], []
    try:
        for k, source in enumerate(sources):
            begin = writer.size if writer else sum(p.size for p in pieces)
            for ids in encode(source):
                if k == 0 and counts is not None:
                    counts += np.bincount(ids, minlength=counts.size)
                writer.append(ids) if writer else pieces.append(ids)
            stop = writer.size if writer else sum(p.size for p in pieces)
            if stop == begin:
                raise SeqtoolError(f"{source.name} has no tokens after '{data.clean}' normalisation")
            bounds.append([begin, stop])
        data.splits = dict(zip(names, bounds)) if names else None
        if counts is not None:
            data.counts = counts.tolist()
        if writer:
            writer.finish(data.footer())
            return open_prepared(out, str(out))
    except BaseException:
        if writer:
            writer.abort()
        raise
    data.ids = torch.from_numpy(np.concatenate(pieces) if pieces else np.zeros(0, dtype))
    return data


def prepare_sources(sources: list[TextSource], level: str, clean: str, min_freq: int = 0, reserved: tuple[str, ...] = (),
                    names: tuple[str, ...] = (), out: Path | None = None, subword: SubwordRequest | None = None) -> PreparedText:
    """Encode sources in bounded chunks with the vocabulary of the first (the training text).

    With `names` the sources are the parts of a layout (train, valid, test) and `splits` says where
    each lies. With `out` the ids stream into a token store there (memory-mapped back), else memory."""
    if level in SUBWORD_LEVELS:
        if min_freq > 1 or reserved:
            raise UsageError(f"--level {level}: every piece of the subword vocabulary is kept; --min-freq and --reserved do not apply")
        return prepare_subwords(sources, level, clean, subword or SubwordRequest(DEFAULT_VOCAB_SIZE), names, out)
    counts = count_tokens(sources[0], level, clean)
    if level == "word" and EOS not in reserved:
        reserved = (*reserved, EOS)  # the line end is structure: --min-freq never turns it into <unk>
    vocab = build_vocab(counts, min_freq, reserved)
    first = sources[0].name
    if sum(counts.values()) < 2:
        raise SeqtoolError(f"{first}: the corpus has {sum(counts.values())} token(s) after '{clean}' normalisation; "
                           "a language model needs at least 2")
    if all(t == UNK or t in reserved for t in vocab.itos):
        raise SeqtoolError(f"every token occurs fewer than --min-freq {min_freq} times: the vocabulary would be only <unk>; lower --min-freq")
    # counts come from the training text only, like the vocabulary: its token counts, <unk> taking the rest
    frequency = [0] + [counts.get(t, 0) for t in vocab.itos[1:]]
    frequency[0] = sum(counts.values()) - sum(frequency)
    data = PreparedText(vocab, torch.zeros(0), level, clean, frequency)
    return _encode_sources(data, sources, names, out, lambda source: encode_chunks(source, vocab, level, clean))


def open_prepared(path: Path, name: str) -> PreparedText:
    """A token store as a PreparedText whose ids are a read-only memory map; checked before use."""
    footer, ids = open_store(path)
    try:
        vocab = Vocab(list(footer["vocab"]))
        splits = footer.get("splits")
        data = PreparedText(vocab, ids, str(footer["level"]), str(footer["clean"]), [int(c) for c in footer["counts"]],
                            {str(k): [int(a), int(b)] for k, a, b in ((k, *v) for k, v in splits.items())} if splits else None,
                            path=Path(path))
        ok = (footer.get("format") == DATASET_FORMAT and ids.numel() >= 2 and len(data.counts) == len(vocab)
              and np.dtype(footer["dtype"]) == id_dtype(len(vocab)) and max_id_in_file(path, np.dtype(footer["dtype"]), ids.numel()) < len(vocab)
              and all(0 <= a < b <= ids.numel() for a, b in (data.splits or {}).values()))
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if ok and data.level in SUBWORD_LEVELS:
        data.subwords = Subwords.from_state(footer.get("subwords") or {})
        ok = data.subwords.kind == data.level
    if not ok or data.level not in LEVELS or data.clean not in ("letters", "lower", "none"):
        raise SeqtoolError(f"{name} is a damaged seqtool dataset (vocabulary, ids or settings do not fit together)")
    return data


def encode_text(arg: str, vocab: Vocab, level: str, clean: str, encoding: str = "utf-8", errors: str = "strict",
                subwords: Subwords | None = None) -> torch.Tensor:
    """A text file (or '-', a catalog name) as ids of an existing vocabulary, read in chunks; words
    it lacks read as <unk>."""
    pieces = list(encode_chunks(text_source(arg, encoding, errors), vocab, level, clean, subwords))
    return torch.from_numpy(np.concatenate(pieces) if pieces else np.zeros(0, id_dtype(len(vocab))))


LAYOUT = ("train", "valid", "test")


def layout_sources(directory: Path, encoding: str, errors: str) -> list[TextSource]:
    """DIR/train.txt, valid.txt and test.txt: the word-benchmark layout, each checked."""
    from seqtool.data.corpora import check_regular_file

    missing = [f"{name}.txt" for name in LAYOUT if not (directory / f"{name}.txt").exists()]
    if missing:
        raise SeqtoolError(f"{directory} is a directory without {' and '.join(missing)}: a corpus directory holds "
                           "train.txt, valid.txt and test.txt")
    for name in LAYOUT:
        check_regular_file(directory / f"{name}.txt")
    return [TextSource(str(directory / f"{name}.txt"), path=directory / f"{name}.txt", encoding=encoding, errors=errors)
            for name in LAYOUT]


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
    # datasets in this older format predate the subword levels: char or word only
    if not ok or prepared.level not in ("char", "word") or prepared.clean not in ("letters", "lower", "none"):
        raise SeqtoolError(f"{name} is a damaged seqtool dataset (vocabulary, ids or settings do not fit together)")
    return prepared


def load_corpus(arg: str, level: str, clean: str, min_freq: int, encoding: str = "utf-8", errors: str = "strict",
                reserved: tuple[str, ...] = (), out: Path | None = None, subword: SubwordRequest | None = None) -> PreparedText:
    """A corpus argument as token ids: a token store (memory-mapped), a directory in the
    train/valid/test layout, a text file (streamed in chunks), '-' or a catalog name. With `out`,
    text is encoded into a token store there."""
    source = resolve_corpus(arg)
    if source != "-":
        path = Path(source)
        if path.is_dir():
            layout = SubwordRequest(subword.vocab_size) if subword else None  # train.txt is all training text
            return prepare_sources(layout_sources(path, encoding, errors), level, clean, min_freq, reserved, LAYOUT, out, layout)
        check_regular_file(path)
        if is_store(path):
            return open_prepared(path, str(path))
        with open(path, "rb") as fh:
            zipped = fh.read(2) == b"PK"
        if zipped:
            prepared = _parse_dataset(read_bytes(path), str(path))
            if prepared is not None:
                return prepared
        return prepare_sources([text_source(arg, encoding, errors)], level, clean, min_freq, reserved, out=out, subword=subword)
    name = "standard input"
    data = read_bytes(source)
    prepared = _parse_dataset(data, name)
    if prepared is not None:
        return prepared
    return prepare_sources([TextSource(name, text=decode_text(data, name, encoding, errors))], level, clean, min_freq, reserved, out=out,
                           subword=subword)
