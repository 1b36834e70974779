"""`seqtool preprocess`: corpus statistics, a Zipf plot, and a prepared dataset for training."""

import json
from typing import Optional

import typer

from seqtool.cli.app import app


@app.command()
def preprocess(
    corpus: str = typer.Argument(..., help="Text file, a directory with train.txt/valid.txt/test.txt, '-' for stdin, "
                                 "or a catalog name (e.g. timemachine)."),
    level: str = typer.Option("char", help="char | word | bpe | unigram (subwords learnt with sentencepiece on the training "
                              "text: train.txt of a layout, else the first 90%, what train's default --val-fraction leaves)"),
    vocab_size: int = typer.Option(4000, help="Subword pieces (specials included) for --level bpe | unigram."),
    clean: str = typer.Option("letters", help="letters | lower | none"),
    min_freq: int = typer.Option(0, help="Tokens rarer than this become <unk>."),
    reserved: str = typer.Option("", help="Extra reserved tokens, comma-separated: <pad>,<bos>,<eos>."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write the prepared dataset here: a token store (ids in the "
                                      "smallest integer type, memory-mapped by train), built in bounded chunks."),
    plot: Optional[str] = typer.Option(None, help="Write a Zipf plot (PNG) of 1/2/3-gram frequencies."),
    top: int = typer.Option(10, help="How many top n-grams to list (0: none, and no n-gram counting)."),
    as_json: bool = typer.Option(False, "--json", help="Statistics as JSON."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the corpus."),
    encoding_errors: str = typer.Option("strict", help="strict | replace | ignore"),
):
    """Tokenise a corpus, build its vocabulary, print statistics (tokens, types, top n-grams)."""
    from seqtool.data.stats import corpus_stats, stats_text

    stats = corpus_stats(corpus, level, clean, min_freq, reserved, top, encoding, encoding_errors, out, plot, vocab_size)
    print(json.dumps(stats) if as_json else stats_text(stats, min_freq), end="\n" if as_json else "")
