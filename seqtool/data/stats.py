"""Corpus statistics for `seqtool preprocess`: token and type counts, top n-grams, a Zipf plot,
and optionally the prepared dataset written for training."""

from __future__ import annotations

from pathlib import Path

from seqtool.core.errors import UsageError
from seqtool.data.corpora import read_text
from seqtool.data.dataset import ngram_table, prepare_text
from seqtool.data.text import BOS, EOS, PAD, ngram_counts

NGRAMS = (("unigrams", 1), ("bigrams", 2), ("trigrams", 3))


def parse_reserved(text: str) -> tuple[str, ...]:
    """'<pad>,<bos>' -> ('<pad>', '<bos>'): the reserved tokens a dataset may add."""
    extra = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in extra if t not in (PAD, BOS, EOS)]
    if unknown:
        raise UsageError(f"--reserved: unknown token {unknown[0]!r}; allowed: {PAD}, {BOS}, {EOS}")
    return extra


def corpus_stats(corpus: str, level: str, clean: str, min_freq: int = 0, reserved: str = "", top: int = 10,
                 encoding: str = "utf-8", encoding_errors: str = "strict", out: str | None = None, plot: str | None = None) -> dict:
    """Read and tokenise a corpus; returns its statistics (and writes the dataset / plot when asked)."""
    from seqtool.core.spec import OPTIONS, check_encoding

    for dotted, value in (("data.level", level), ("data.clean", clean), ("data.encoding_errors", encoding_errors)):
        if value not in OPTIONS[dotted].opt.choices:
            raise UsageError(f"{OPTIONS[dotted].flag}: {value!r} is not one of {', '.join(OPTIONS[dotted].opt.choices)}")
    check_encoding("--encoding", encoding)
    if min_freq < 0 or top < 1:
        raise UsageError("--min-freq must be >= 0 and --top >= 1")
    extra = parse_reserved(reserved)
    data = prepare_text(read_text(corpus, encoding, encoding_errors), level, clean, min_freq, reserved=extra)
    tokens = data.tokens()
    stats = {"corpus": corpus, "level": level, "clean": clean, "tokens": len(tokens), "types": len(data.vocab),
             "unk_tokens": int((data.ids == 0).sum())}
    stats.update({key: ngram_table(tokens, n, top, level) for key, n in NGRAMS})
    if out:
        data.save(out)
        stats["out"] = out
    if plot:
        zipf_plot(tokens, Path(plot), level)
        stats["plot"] = plot
    return stats


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


def zipf_plot(tokens: list[str], path: Path, level: str) -> None:
    """log rank vs log frequency for unigrams, bigrams and trigrams (Zipf's law)."""
    from seqtool.core.report import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in (1, 2, 3):
        freqs = sorted(ngram_counts(tokens, n).values(), reverse=True)
        ax.plot(range(1, len(freqs) + 1), freqs, label=f"{n}-grams")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("frequency")
    ax.set_title(f"Zipf plot ({level}-level)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)
