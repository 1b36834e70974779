"""Token stores: a corpus as token ids in the smallest integer type that holds its vocabulary,
built in bounded chunks and read through a memory map, so corpora larger than memory train.

Building reads the text twice, a chunk (CHUNK bytes, cut at a line end) at a time: one pass counts
the tokens (the vocabulary), one encodes them. Characters go through numpy (code points, a count
per code point, a lookup table); words through a dict. Either way the result equals tokenising the
whole text at once (same vocabulary order, same ids).

The store file is the raw ids (uint8 / uint16 / uint32) followed by a JSON footer (vocabulary,
counts, settings, splits), its length (8 bytes, little-endian) and MAGIC: the ids start at byte 0,
so the file maps as one array, and nothing in it is executable.
"""

from __future__ import annotations

import codecs
import json
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from seqtool.core.errors import SeqtoolError
from seqtool.data.text import EOS, UNK, Vocab, normalize, tokenize

MAGIC = b"SEQTOKS1"
CHUNK = 1 << 24  # bytes of text per chunk: bounds the memory of building at a few times this
DTYPES = ((1 << 8, np.uint8), (1 << 16, np.uint16), (1 << 32, np.uint32))


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id of a vocabulary this large."""
    for limit, dtype in DTYPES:
        if vocab_size <= limit:
            return np.dtype(dtype)
    raise SeqtoolError(f"a vocabulary of {vocab_size:,} tokens is too large for a token store (at most 2^32)")


# ---- reading text in chunks ----------------------------------------------------------------------
class TextSource:
    """Text that can be read more than once, chunk by chunk: a file (streamed, checked as it is read,
    like decode_text checks a whole text) or a string already in memory."""

    def __init__(self, name: str, path: Path | None = None, text: str | None = None, encoding: str = "utf-8",
                 errors: str = "strict", chunk: int = CHUNK):
        self.name, self.path, self.text, self.encoding, self.errors, self.chunk = name, path, text, encoding, errors, chunk

    def chunks(self, within_lines: bool = False) -> Iterator[str]:
        """Pieces of about `chunk` characters that end at a line end (words: a line is never split),
        or with within_lines anywhere but inside a \\r\\n (characters: a line may be longer than memory)."""
        size = self.chunk
        if self.text is not None:
            start = 0
            while start < len(self.text):
                if within_lines:
                    stop = min(start + size, len(self.text))
                    stop += self.text[stop - 1 : stop + 1] == "\r\n"
                else:
                    stop = self.text.find("\n", start + size) + 1 or len(self.text)
                yield self.text[start:stop]
                start = stop
            return
        yield from self._file_chunks(size, within_lines)

    def _file_chunks(self, size: int, within_lines: bool) -> Iterator[str]:
        """Decoded pieces of the file: a multi-byte character or a \\r\\n is never cut, nor a line
        unless within_lines. Errors name the byte offset in the whole file."""
        from seqtool.data.corpora import decode_text

        decoder = codecs.getincrementaldecoder(self.encoding)(errors=self.errors)
        offset, first, carry = 0, True, ""
        with open(self.path, "rb") as fh:
            while True:
                data = fh.read(size)
                final = len(data) < size
                if first:
                    if not data:
                        raise SeqtoolError(f"{self.name} is empty")
                    if final:  # the whole file: every check of a text read whole
                        decode_text(data, self.name, self.encoding, self.errors)
                    elif data[: 1 << 16].strip():  # binary (NUL bytes) or a bad encoding shows in the first block
                        decode_text(data[: 1 << 16], self.name, self.encoding, "replace")
                    if data.startswith(codecs.BOM_UTF8):
                        data, offset = data[3:], 3
                try:
                    text = carry + decoder.decode(data, final=final)
                except UnicodeDecodeError as exc:
                    position = offset + exc.start
                    raise SeqtoolError(f"{self.name} is not valid {self.encoding} (byte 0x{exc.object[exc.start]:02x} at offset "
                                       f"{position}); pass --encoding (e.g. latin-1) or --encoding-errors replace") from None
                offset += len(data)
                first = False
                if final:
                    if text:
                        yield text
                    return
                cut = text.rfind("\n") + 1
                if within_lines and not cut:  # no line end in the chunk: cut it anyway, keeping a \r for its \n
                    cut = len(text) - text.endswith("\r")
                if cut:
                    yield text[:cut]
                carry = text[cut:]


def text_source(arg: str, encoding: str = "utf-8", errors: str = "strict") -> TextSource:
    """A corpus argument (path, '-' or catalog name) as a TextSource: a file streams (when its
    encoding reads line by line), anything else is read and decoded whole."""
    from seqtool.data.corpora import encoding_of_bom, check_regular_file, decode_text, read_bytes, resolve_corpus

    source = resolve_corpus(arg)
    if source != "-":
        check_regular_file(Path(source))
        with open(source, "rb") as fh:
            head = fh.read(4)
        if _streams(encoding_of_bom(head, encoding)):  # a UTF-16/32 byte-order mark says the file is read whole
            return TextSource(str(source), path=Path(source), encoding=encoding, errors=errors)
    name = "standard input" if source == "-" else str(source)
    return TextSource(name, text=decode_text(read_bytes(source), name, encoding, errors))


def _streams(encoding: str) -> bool:
    """Encodings whose byte 0x0a is always a line end (UTF-8 and the single-byte ones), so a chunk
    can be cut there; UTF-16/32 files are read whole."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return False
    return not name.startswith(("utf-16", "utf-32"))


# ---- tokens of a chunk ---------------------------------------------------------------------------
class Tokenizer:
    """Normalises and tokenises text chunk by chunk exactly as text_tokens does on the whole text.

    The letters recipe joins runs of non-letters into one space across chunks and strips the text's
    two ends: a chunk's trailing space is held back until the next chunk shows it is not the end.
    At character level it runs on code points in numpy (a regex substitution in Python was most of
    preprocess's time), with the same result."""

    def __init__(self, level: str, clean: str):
        self.level, self.clean = level, clean
        self._started = self._pending = False

    def clean_chunk(self, chunk: str) -> str:
        """Word level (chunks end at a line end): the chunk normalised as text."""
        return normalize(chunk, self.clean, keep_lines=self.level == "word")

    def char_codes(self, chunk: str) -> np.ndarray:
        """Character level: the code points of the normalised chunk."""
        if self.clean != "letters":
            return codepoints(normalize(chunk, self.clean))
        cps = codepoints(chunk)
        table = _LETTERS_TABLES.get(cps.dtype.itemsize)
        mapped = table[cps] if table is not None else np.where(cps < 0x80, _LETTERS_TABLES[1][np.minimum(cps, 0x80)], 0x20).astype(np.uint8)
        letter = mapped != 0x20
        keep = letter.copy()  # a letter, or the first non-letter after one (it becomes the run's space)
        keep[1:] |= letter[:-1]
        keep[:1] |= self._started and not self._pending
        codes = mapped[keep]
        if not codes.size:
            return codes
        if self._pending and codes[0] != 0x20:
            codes = np.concatenate([np.array([0x20], np.uint8), codes])  # the run held back was not the end
        self._started, self._pending = True, bool(codes[-1] == 0x20)
        return codes[:-1] if self._pending else codes

    def words(self, chunk: str) -> list[str]:
        return tokenize(self.clean_chunk(chunk), "word")

    def lines(self, chunk: str) -> list[str]:
        """Subword levels: the chunk's normalised lines, each to be cut into pieces and ended by <eos>
        (the word level's line structure)."""
        lines = self.clean_chunk(chunk).split("\n")
        if lines[-1] == "":
            lines.pop()  # the chunk ended with a line end
        return lines


def _letters_table(size: int) -> np.ndarray:
    """code point -> its lowercase ASCII letter, or a space for everything else (the letters recipe)."""
    table = np.full(size, 0x20, dtype=np.uint8)
    table[0x41:0x5B] = np.arange(0x61, 0x7B)
    table[0x61:0x7B] = np.arange(0x61, 0x7B)
    return table


#: the letters recipe as lookup tables for 1- and 2-byte code points (wider ones go through the first)
_LETTERS_TABLES = {1: _letters_table(1 << 8), 2: _letters_table(1 << 16)}


def codepoints(text: str) -> np.ndarray:
    """The code points of a text as an array, in the narrowest type the text allows: the encodings
    tried first copy Python's own 1- and 2-byte string layouts, so this runs at memory speed."""
    try:
        return np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        pass
    wide = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype=np.uint16)
    if not ((wide >= 0xD800) & (wide < 0xE000)).any():  # no surrogate pairs: one unit per character
        return wide
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


# ---- the two passes ------------------------------------------------------------------------------
def count_tokens(source: TextSource, level: str, clean: str) -> Counter:
    """Token -> count over the source, in order of first appearance (the vocabulary's tie-break)."""
    tokenizer = Tokenizer(level, clean)
    if level == "word":
        counts: Counter = Counter()
        for chunk in source.chunks():
            counts.update(tokenizer.words(chunk))
        return counts
    totals = np.zeros(0, dtype=np.int64)
    order: list[int] = []  # code points in order of first appearance
    for chunk in source.chunks(within_lines=True):
        cps = tokenizer.char_codes(chunk)
        if not cps.size:
            continue
        here = np.bincount(cps)
        if here.size > totals.size:
            totals = np.concatenate([totals, np.zeros(here.size - totals.size, dtype=np.int64)])
        new = set(np.flatnonzero((here > 0) & (totals[: here.size] == 0)).tolist())
        totals[: here.size] += here
        order += _first_seen(cps, new)
    return Counter({chr(cp): int(totals[cp]) for cp in order})


def _first_seen(cps: np.ndarray, wanted: set[int], block: int = 1 << 16) -> list[int]:
    """`wanted` code points in the order they first occur in cps (searched a block at a time)."""
    found: dict[int, int] = {}
    for start in range(0, cps.size, block):
        if len(found) == len(wanted):
            break
        values, first = np.unique(cps[start : start + block], return_index=True)
        for value, index in zip(values.tolist(), first.tolist()):
            if value in wanted and value not in found:
                found[value] = start + index
    return sorted(found, key=found.get)


def build_vocab(counts: Counter, min_freq: int = 0, reserved: tuple[str, ...] = ()) -> Vocab:
    """Vocab.build's vocabulary from counts kept in order of first appearance."""
    specials = [UNK] + [t for t in reserved if t != UNK]
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return Vocab(specials + [t for t, c in ordered if c >= max(min_freq, 1) and t not in specials])


def learning_lines(source: TextSource, clean: str, fraction: float = 1.0) -> Iterator[str]:
    """The normalised lines a subword model learns from: the lines within the first `fraction` of
    the source's UTF-8 bytes (the training part of a text whose tail is held out)."""
    total = len(source.text.encode("utf-8")) if source.text is not None else (source.path.stat().st_size if source.path else 0)
    budget, seen, tokenizer = fraction * total, 0, Tokenizer("word", clean)
    for chunk in source.chunks():
        size = len(chunk.encode("utf-8"))
        if fraction < 1.0 and seen + size > budget:  # the held-out tail starts in this chunk: stop at its line
            kept = []
            for line in chunk.split("\n"):
                size = len(line.encode("utf-8")) + 1
                if seen + size > budget:  # the line the tail starts in: its words before the cut
                    head = line[: max(int(budget - seen), 0)]
                    kept.append(head.rsplit(" ", 1)[0] if " " in head else "")
                    break
                seen += size
                kept.append(line)
            yield from (line for line in tokenizer.lines("\n".join(kept) + "\n") if line.strip())
            return
        seen += size
        yield from (line for line in tokenizer.lines(chunk) if line.strip())


def encode_chunks(source: TextSource, vocab: Vocab, level: str, clean: str, subwords=None) -> Iterator[np.ndarray]:
    """The source's token ids, a chunk at a time, in the store's id type (unknown tokens -> <unk>)."""
    dtype, tokenizer = id_dtype(len(vocab)), Tokenizer(level, clean)
    if subwords is not None:  # bpe / unigram: each line's pieces, then <eos>
        table, eos = subwords.id_table(vocab.stoi, dtype), vocab.index(EOS)
        for chunk in source.chunks():
            yield subwords.ids_of_lines(tokenizer.lines(chunk), table, eos)
        return
    if level == "word":
        get = vocab.stoi.get
        for chunk in source.chunks():
            words = tokenizer.words(chunk)
            yield np.fromiter((get(w, 0) for w in words), dtype=dtype, count=len(words))
        return
    chars = [(ord(t), i) for i, t in enumerate(vocab.itos) if len(t) == 1]
    table = np.zeros(max((cp for cp, _ in chars), default=0) + 2, dtype=dtype)  # the last entry: beyond every known code point
    for cp, i in chars:
        table[cp] = i
    for chunk in source.chunks(within_lines=True):
        cps = tokenizer.char_codes(chunk)
        yield table[np.minimum(cps, min(table.size - 1, np.iinfo(cps.dtype).max))] if cps.size else np.zeros(0, dtype=dtype)


# ---- the store file ------------------------------------------------------------------------------
class StoreWriter:
    """Appends id arrays to a temporary file beside `path`; finish() adds the footer and moves it
    into place atomically (an interrupted build leaves no half-written store)."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype, self.size = Path(path), dtype, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.fh = os.fdopen(fd, "wb")

    def append(self, ids: np.ndarray) -> None:
        self.fh.write(ids.astype(self.dtype, copy=False).tobytes())
        self.size += ids.size

    def finish(self, footer: dict) -> None:
        body = json.dumps({**footer, "dtype": self.dtype.name, "tokens": self.size}).encode("utf-8")
        self.fh.write(body + len(body).to_bytes(8, "little") + MAGIC)
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def is_store(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 16:
                return False
            fh.seek(-len(MAGIC), os.SEEK_END)
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_store(path: Path) -> tuple[dict, torch.Tensor]:
    """-> (footer, ids): the ids are a read-only memory map of the file, not a copy."""
    name = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(size - 16)
            length = int.from_bytes(fh.read(8), "little")
            if length > size - 16:
                raise ValueError("footer length")
            fh.seek(size - 16 - length)
            footer = json.loads(fh.read(length).decode("utf-8"))
        dtype = np.dtype(footer["dtype"])
        if dtype not in [np.dtype(d) for _, d in DTYPES] or int(footer["tokens"]) * dtype.itemsize != size - 16 - length:
            raise ValueError("size")
        ids = np.memmap(path, dtype=dtype, mode="r", shape=(int(footer["tokens"]),)) if footer["tokens"] else np.zeros(0, dtype)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SeqtoolError(f"{name} is a damaged seqtool token store (its footer or size is wrong)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not writable": the map is read-only on purpose, nothing writes to it
        return footer, torch.from_numpy(ids)


def read_blocks(path: Path, dtype: np.dtype, start: int, stop: int, block: int = 1 << 24) -> Iterator[np.ndarray]:
    """Ids [start, stop) of a store file, block by block through read() into one buffer: a pass over
    a store never maps it, so it leaves nothing of the file in this process's resident memory
    (the buffer is reused: a block is valid until the next one is read)."""
    buffer = np.empty(min(block, max(stop - start, 0)), dtype=dtype)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start * dtype.itemsize)
        while start < stop:
            view = buffer[: min(block, stop - start)]
            if fh.readinto(memoryview(view).cast("B")) != view.nbytes:
                raise SeqtoolError(f"{path} is a damaged seqtool token store (shorter than its footer says)")
            yield view
            start += view.size


def max_id_in_file(path: Path, dtype: np.dtype, count: int) -> int:
    """The largest of the first `count` ids of a store file (read, not mapped)."""
    return max((int(view.max()) for view in read_blocks(path, dtype, 0, count)), default=-1)
