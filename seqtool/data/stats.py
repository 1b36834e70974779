"""Corpus statistics for `seqtool preprocess`: token and type counts, top n-grams, a Zipf plot,
and optionally the prepared dataset (a token store) written for training. The corpus streams
through in chunks and the n-grams are counted on the ids, so a corpus larger than memory works."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from seqtool.core.errors import UsageError
from seqtool.data.dataset import DEFAULT_VOCAB_SIZE, SUBWORD_LEVELS, SubwordRequest, load_corpus
from seqtool.data.text import BOS, EOS, PAD, detokenize

NGRAMS = (("unigrams", 1), ("bigrams", 2), ("trigrams", 3))
NGRAM_BLOCK = 1 << 22  # ids counted at once: a few int64 arrays of this size bound the memory


def parse_reserved(text: str) -> tuple[str, ...]:
    """'<pad>,<bos>' -> ('<pad>', '<bos>'): the reserved tokens a dataset may add."""
    extra = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in extra if t not in (PAD, BOS, EOS)]
    if unknown:
        raise UsageError(f"--reserved: unknown token {unknown[0]!r}; allowed: {PAD}, {BOS}, {EOS}")
    return extra


def corpus_stats(corpus: str, level: str, clean: str, min_freq: int = 0, reserved: str = "", top: int = 10,
                 encoding: str = "utf-8", encoding_errors: str = "strict", out: str | None = None, plot: str | None = None,
                 vocab_size: int = DEFAULT_VOCAB_SIZE) -> dict:
    """Read and tokenise a corpus; returns its statistics (and writes the dataset / plot when asked)."""
    from seqtool.core.spec import OPTIONS, check_encoding

    for dotted, value in (("data.level", level), ("data.clean", clean), ("data.encoding_errors", encoding_errors)):
        if value not in OPTIONS[dotted].opt.choices:
            raise UsageError(f"{OPTIONS[dotted].flag}: {value!r} is not one of {', '.join(OPTIONS[dotted].opt.choices)}")
    check_encoding("--encoding", encoding)
    if min_freq < 0 or top < 0:
        raise UsageError("--min-freq and --top must be >= 0")
    extra = parse_reserved(reserved)
    if vocab_size < 1:
        raise UsageError("--vocab-size must be >= 1")
    subword = SubwordRequest(vocab_size, 0.9) if level in SUBWORD_LEVELS else None
    data = load_corpus(corpus, level, clean, min_freq, encoding, encoding_errors, reserved=extra, out=Path(out) if out else None,
                       subword=subword)
    ids, level = data.ids, data.level
    tables = ngram_frequencies(data.blocks(), tuple(n for _, n in NGRAMS), len(data.vocab)) if top or plot else {}
    stats = {"corpus": corpus, "level": level, "clean": data.clean, "tokens": int(ids.numel()), "types": len(data.vocab),
             "unk_tokens": data.counts[0]}
    if data.splits:
        stats["splits"] = {name: {"tokens": stop - start, "unk_tokens": sum(int((b == 0).sum()) for b in data.blocks(start, stop))}
                           for name, (start, stop) in data.splits.items()}
    for key, n in NGRAMS:
        codes, counts = tables[n] if tables else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        stats[key] = [(detokenize(data.vocab.decode(ngram_of(int(c), n, len(data.vocab))), level), int(k))
                      for c, k in zip(codes[:top].tolist(), counts[:top].tolist())]
    if out:
        stats["out"] = out
    if plot:
        zipf_plot({n: counts for n, (_, counts) in tables.items()}, Path(plot), level)
        stats["plot"] = plot
    return stats


def ngram_frequencies(blocks: Iterable[np.ndarray], orders: tuple[int, ...], vocab_size: int) -> dict:
    """n -> (codes, counts) for every n-gram of the ids that occurs, the code of (t_1..t_n) being
    sum t_k V^(n-k), most frequent first (ties: the smaller code). Counted over consecutive blocks
    of the ids (the last n-1 ids of one carried into the next): a corpus is never held whole; a
    table is dense (a count per possible code) when that is small."""
    top = max(orders)
    dense = {n: vocab_size ** n <= 1 << 24 for n in orders}
    # with a dense table for the longest n-grams, only those are counted: an (n-1)-gram's count is the
    # sum of the n-grams it starts, plus one for the corpus's last n-1 tokens (the carry at the end)
    counted = (top,) if dense[top] and set(orders) <= set(range(1, top + 1)) else orders
    totals = {n: np.zeros(vocab_size ** n, dtype=np.int64) if dense[n] else Counter() for n in counted}
    carry, seen = np.zeros(0, dtype=np.int64), 0
    for block in (b[i : i + NGRAM_BLOCK] for b in blocks for i in range(0, b.size, NGRAM_BLOCK)):
        window = np.concatenate([carry, block.astype(np.int64)])
        seen += block.size
        codes = window
        for n in range(1, top + 1):
            if n > 1:
                codes = codes[:-1] * vocab_size + window[n - 1 :]
            if n not in counted:
                continue
            mine = codes[max(0, carry.size - n + 1) :]  # n-grams not counted with the previous block
            if dense[n]:
                totals[n] += np.bincount(mine, minlength=totals[n].size)
            else:
                values, counts = np.unique(mine, return_counts=True)
                totals[n].update(dict(zip(values.tolist(), counts.tolist())))
        carry = window[-(top - 1) :] if top > 1 else carry
    if counted != orders:
        tail = carry[-min(seen, top - 1) :] if top > 1 and seen else np.zeros(0, dtype=np.int64)
        for n in range(top - 1, 0, -1):
            totals[n] = totals[n + 1].reshape(-1, vocab_size).sum(axis=1)
            if tail.size >= n:  # the n-gram that ends the corpus starts no longer one
                totals[n][_code(tail[-n:].tolist(), vocab_size)] += 1
        totals = {n: totals[n] for n in orders}
    out = {}
    for n, total in totals.items():
        if dense[n]:
            codes = np.flatnonzero(total)
            counts = total[codes]
        else:
            codes = np.fromiter(total.keys(), dtype=np.int64, count=len(total))
            counts = np.fromiter(total.values(), dtype=np.int64, count=len(total))
        order = np.lexsort((codes, -counts))
        out[n] = codes[order], counts[order]
    return out


def _code(ids: list[int], vocab_size: int) -> int:
    """The code of an n-gram (the inverse of ngram_of)."""
    code = 0
    for i in ids:
        code = code * vocab_size + i
    return code


def ngram_of(code: int, n: int, vocab_size: int) -> list[int]:
    """The ids of an n-gram code (ngram_frequencies' encoding)."""
    ids = []
    for _ in range(n):
        code, last = divmod(code, vocab_size)
        ids.append(last)
    return ids[::-1]


def stats_text(stats: dict, min_freq: int) -> str:
    """corpus_stats() for a terminal: a summary line, the top n-grams side by side, where the dataset went."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, highlight=False, width=120)
    console.print(f"{stats['corpus']}: {stats['tokens']:,} tokens, {stats['types']:,} types ({stats['level']}-level, clean={stats['clean']}, "
                  f"min_freq={min_freq})")
    console.print(ngram_table_view(stats))
    if stats.get("out"):
        console.print(f"wrote {stats['out']}")
    return buffer.getvalue()


def ngram_table_view(stats: dict):
    """The top n-grams of corpus_stats() side by side, as a rich Table (for the terminal)."""
    from rich.table import Table

    table = Table(show_header=True)
    for key, _ in NGRAMS:
        table.add_column(f"top {key}")
        table.add_column("count", justify="right")
    for i in range(max(len(stats[key]) for key, _ in NGRAMS)):  # not range(top): --top 10**9
        table.add_row(*[cell for key, _ in NGRAMS for cell in ([repr(stats[key][i][0]), str(stats[key][i][1])] if i < len(stats[key]) else ["", ""])])
    return table


def zipf_plot(frequencies: dict[int, np.ndarray], path: Path, level: str) -> None:
    """log rank vs log frequency for unigrams, bigrams and trigrams (Zipf's law)."""
    from seqtool.core.report import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, freqs in frequencies.items():
        ax.plot(np.arange(1, len(freqs) + 1), freqs, label=f"{n}-grams")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("frequency")
    ax.set_title(f"Zipf plot ({level}-level)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)
