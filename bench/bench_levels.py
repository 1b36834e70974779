"""Char, word and subword language models on one scale: War and Peace (the shared benchmark layout),
each level trained with specs/word-lstm.yaml for the same BENCH_SECONDS (default 60) on BENCH_THREADS
(default 1) threads, then `seqtool eval RUN DIR/test.txt --json` on the whole test part. The three run
in alternated rounds (char, word, bpe, char, ...; BENCH_ROUNDS, at least 3); the table gives medians
(min-max) of perplexity per token, bits per character and per byte, and the characters counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.rounds import alternate, spread  # noqa: E402

MIRROR = Path(os.environ.get("SEQTOOL_MIRROR", ROOT.parent / "shared" / "corpora"))
#: per level, what the word recipe needs changed (a 90-symbol vocabulary has no adaptive softmax to split)
LEVELS = {"char": ["--level", "char", "--softmax", "full", "--unk-rate", "0", "--steps", "100"],
          "word": [],
          "bpe 8,000": ["--level", "bpe", "--vocab-size", "8000", "--unk-rate", "0"]}


def level_run(corpus: Path, flags: list[str], run: Path, seconds: float, threads: int) -> dict:
    seqtool = [sys.executable, "-m", "seqtool"]
    subprocess.run([*seqtool, "train", str(corpus), "--spec", str(ROOT / "specs" / "word-lstm.yaml"), *flags,
                    "--max-seconds", str(seconds), "--threads", str(threads), "--out", str(run), "--overwrite", "--quiet"],
                   check=True, capture_output=True, cwd=ROOT)
    scored = subprocess.run([*seqtool, "eval", str(run), str(corpus / "test.txt"), "--json"],
                            check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(scored.stdout)


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS", 60))
    threads = int(os.environ.get("BENCH_THREADS", 1))
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "wp"
        corpus.mkdir()
        for part in ("train", "valid", "test"):
            (corpus / f"{part}.txt").write_bytes((MIRROR / f"warandpeace.{part}.txt").read_bytes())
        results = alternate({name: (lambda f=flags, n=i: level_run(corpus, f, Path(tmp) / f"run{n}", seconds, threads))
                             for i, (name, flags) in enumerate(LEVELS.items())}, rounds)
    print(f"War and Peace, specs/word-lstm.yaml per level, {seconds:.0f} s of training each, {threads} thread(s), "
          f"{rounds} alternated rounds; whole test part; median (min-max)")
    print(f"{'level':<12}{'tokens':>10}{'perplexity/token':>26}{'bits/char':>24}{'bits/byte':>24}{'characters':>12}")
    for name, rows in results.items():
        print(f"{name:<12}{rows[0]['tokens']:>10,}{spread([r['perplexity'] for r in rows], ',.1f'):>26}"
              f"{spread([r['bits_per_char'] for r in rows], '.3f'):>24}{spread([r['bits_per_byte'] for r in rows], '.3f'):>24}"
              f"{rows[0]['characters']:>12,}")


if __name__ == "__main__":
    main()
