"""Corpora beyond memory: `seqtool preprocess` into a token store, and training on the store.

Builds a 200 MB and a 1 GB character corpus (BENCH_SIZES_MB, default "100,200,1000") by repeating the
shared Time Machine and War and Peace texts (what is measured is throughput and memory, which the
repetition does not flatter: every byte is still decoded, counted and encoded), then runs the real
commands in their own processes, sizes alternated (200 MB, 1 GB, 200 MB, 1 GB, ...: BENCH_ROUNDS,
at least 3):

- `seqtool preprocess CORPUS --out STORE --json` as a user types it (characters, the letters recipe,
  the n-gram tables), the same with `--clean none`, and with `--clean none --top 0` (no n-gram
  tables): MB/s of corpus, peak RSS, store bytes per character;
- `seqtool train STORE` (a GRU, BENCH_TRAIN_SECONDS, default 60 s, 2 threads, 0.1% held out): peak RSS;
- large vocabularies: `seqtool train` on word corpora of 10k and 50k types (Zipf-distributed, every
  type present), the word recipe's model with the adaptive and the full softmax, 30 s, 1 thread: peak
  RSS (the adaptive softmax's target: 50k at most 2x the memory of 10k).

- the time budget: `seqtool train STORE --cell gru --max-seconds 20` on a 100 MB store, as typed and
  with `--val-tokens 0`: the whole command's wall time.

- subwords: encoding a 100 MB corpus with a BPE and a unigram model of 8,000 pieces against the word
  level, and the whole `seqtool preprocess --level bpe|unigram` command.

BENCH_PARTS (default "preprocess,train,budget,vocab,subword"; train: training on the preprocessed stores) chooses the parts; BENCH_BASELINE=DIR (a checkout of
an earlier commit) adds that seqtool's default preprocess (and, in the subword part, its preprocess
--level bpe|unigram) as 'before' contenders, alternated with today's.

Peak RSS is the process's own (wait4's ru_maxrss). Medians (min-max) over the rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.rounds import alternate, baseline_env, spread  # noqa: E402

PY = sys.executable
SEQTOOL = [PY, "-m", "seqtool"]
MIRROR = Path(os.environ.get("SEQTOOL_MIRROR", ROOT.parent / "shared" / "corpora"))


def build_corpus(path: Path, size: int) -> None:
    text = ((MIRROR / "timemachine.txt").read_text(encoding="utf-8") + (MIRROR / "warandpeace.train.txt").read_text(encoding="utf-8")).encode()
    with open(path, "wb") as fh:
        written = 0
        while written < size:
            piece = text[: size - written]
            fh.write(piece)
            written += len(piece)


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """-> (wall seconds, peak RSS MiB, stdout) of a command in its own process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=(env or {}).get("PYTHONPATH"))  # -m puts the cwd first
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} failed: {err.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def preprocess(corpus: Path, store: Path, extra: list[str], env: dict | None = None) -> dict:
    """`seqtool preprocess CORPUS --out STORE --json` as a user types it (defaults: characters, the
    letters recipe, the n-gram tables), plus `extra` flags."""
    seconds, rss, out = measured([*SEQTOOL, "preprocess", str(corpus), "--out", str(store), "--json", *extra], env)
    stats = json.loads(out)
    size = corpus.stat().st_size
    return {"mb_per_s": size / 1e6 / seconds, "rss_mb": rss, "bytes_per_char": store.stat().st_size / stats["tokens"],
            "store_mb": store.stat().st_size / 1e6, "seconds": seconds}


def train(store: Path, run: Path, seconds: float) -> dict:
    wall, rss, _ = measured([*SEQTOOL, "train", str(store), "--cell", "gru", "--hidden", "256", "--embed", "32", "--batch", "64",
                             "--steps", "64", "--val-fraction", "0.001", "--max-seconds", str(seconds), "--threads", "2",
                             "--out", str(run), "--overwrite", "--quiet"])
    report = json.loads((run / "report.json").read_text())
    return {"rss_mb": rss, "tokens_per_s": report["tokens_per_s"], "wall_s": wall}


def budget_run(store: Path, run: Path, extra: list[str], env: dict | None = None) -> dict:
    """`seqtool train STORE --cell gru --max-seconds 20` as a user types it: the whole command's wall
    time (start-up and the final test scoring included) and what validation and test scored."""
    wall, rss, _ = measured([*SEQTOOL, "train", str(store), "--cell", "gru", "--max-seconds", "20", "--out", str(run), "--overwrite",
                             "--quiet", *extra], env)
    report = json.loads((run / "report.json").read_text())
    return {"wall_s": wall, "rss_mb": rss, "val_tokens": report["final"].get("val_tokens", float("nan")),
            "test_tokens": report.get("test", {}).get("test_tokens", float("nan"))}


def budgets(work: Path, rounds: int) -> None:
    """The --max-seconds 20 run on a 100 MB store, with the default validation sample and with --val-tokens 0."""
    corpus, store = work / "c100.txt", work / "c100.tokens"
    build_corpus(corpus, 100_000_000)
    preprocess(corpus, store, [])
    contenders = {"train --max-seconds 20": lambda: budget_run(store, work / "b1", []),
                  "  ... --val-tokens 0": lambda: budget_run(store, work / "b2", ["--val-tokens", "0"])}
    results = alternate(contenders, rounds)
    print(f"\nTime budget on a 100 MB character store (GRU 2 x 256, default threads): {rounds} alternated rounds; median (min-max)")
    print(f"{'command':<28}{'wall s':>24}{'validation tokens':>36}{'test tokens':>36}{'peak RSS MiB':>20}")
    for name, rows in results.items():
        print(f"{name:<28}{spread([r['wall_s'] for r in rows], ',.1f'):>24}{spread([r['val_tokens'] for r in rows]):>36}"
              f"{spread([r['test_tokens'] for r in rows]):>36}{spread([r['rss_mb'] for r in rows]):>20}")
    print("target: --max-seconds 20 ends within 50 s of wall time, start-up and test scoring included")


def word_corpus(path: Path, types: int, tokens: int = 1_000_000, seed: int = 0) -> None:
    """Lines of 20 words: every one of `types` words once, the rest drawn from a Zipf law."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, types + 1)
    ids = np.concatenate([np.arange(types), rng.choice(types, size=tokens - types, p=p / p.sum())])
    rng.shuffle(ids)
    words = [f"w{i}" for i in range(types)]
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, ids.size, 20):
            fh.write(" ".join(words[i] for i in ids[start : start + 20]) + "\n")


def train_vocab(corpus: Path, softmax: str, run: Path) -> dict:
    _, rss, _ = measured([*SEQTOOL, "train", str(corpus), "--level", "word", "--clean", "none", "--cell", "lstm", "--embed", "200",
                          "--hidden", "200", "--tie-weights", "--softmax", softmax, "--batch", "20", "--steps", "35", "--val-fraction",
                          "0.02", "--max-seconds", "30", "--threads", "1", "--out", str(run), "--overwrite", "--quiet"])
    return {"rss_mb": rss, "tokens_per_s": json.loads((run / "report.json").read_text())["tokens_per_s"]}


def vocab_memory(work: Path, rounds: int) -> None:
    for types in (10_000, 50_000):
        word_corpus(work / f"w{types}.txt", types)
    contenders = {f"{softmax} softmax, {types // 1000}k types": (lambda t=types, s=softmax: train_vocab(work / f"w{t}.txt", s, work / "vrun"))
                  for softmax in ("adaptive", "full") for types in (10_000, 50_000)}
    results = alternate(contenders, rounds)
    print(f"\nLarge vocabularies: 2 x 200 LSTM, tied, batch 20 x 35, 30 s, 1 thread; {rounds} alternated rounds, median (min-max)")
    print(f"{'contender':<34}{'tokens/s':>22}{'peak RSS MiB':>24}")
    for name, rows in results.items():
        print(f"{name:<34}{spread([r['tokens_per_s'] for r in rows]):>22}{spread([r['rss_mb'] for r in rows]):>24}")
    for softmax in ("adaptive", "full"):
        share = [b["rss_mb"] / a["rss_mb"] for a, b in zip(results[f"{softmax} softmax, 10k types"], results[f"{softmax} softmax, 50k types"])]
        print(f"{softmax}: peak RSS 50k / 10k, median of per-round ratios: {spread(share, '.2f')}" + (" (target <= 2)" if softmax == "adaptive" else ""))


def subword_encoding(work: Path, rounds: int, mb: int = 100) -> None:
    """Tokenisation speed of the subword levels: a BPE and a unigram model (8,000 pieces each, learnt
    once on a 10 MB sample) encoding a `mb` MB corpus through encode_chunks, the path preprocess and
    train take, alternated with the word level's encoding of the same text; both also line by line
    (MAX_DISTINCT_WORDS = 0, what they always did before), and BPE on a 30 MB text whose every word is new
    (a number appended to each: the case where encoding a word at a time cannot help); and the whole
    `seqtool preprocess --level bpe|unigram` command (learning included) in its own process."""
    from seqtool.data.dataset import prepare_subwords, SubwordRequest
    from seqtool.data.store import TextSource, encode_chunks

    corpus, sample = work / "sub.txt", work / "sample.txt"
    build_corpus(corpus, mb * 1_000_000)
    build_corpus(sample, 10_000_000)
    models = {kind: prepare_subwords([TextSource("sample", path=sample)], kind, "none", SubwordRequest(8000)) for kind in ("bpe", "unigram")}
    from seqtool.data.store import build_vocab, count_tokens

    words = build_vocab(count_tokens(TextSource("c", path=corpus), "word", "none"), 0, ("<eos>",))

    new_words = work / "new.txt"
    with open(corpus, encoding="utf-8") as fh, open(new_words, "w", encoding="utf-8") as out:
        for n, line in enumerate(fh):
            out.write(" ".join(f"{word}{n}" for word in line.split()) + "\n")
            if out.tell() > 30_000_000:
                break

    def encode(level: str, path: Path = corpus, distinct: float | None = None) -> dict:
        from seqtool.data import subword

        default, subword.MAX_DISTINCT_WORDS = subword.MAX_DISTINCT_WORDS, (subword.MAX_DISTINCT_WORDS if distinct is None else distinct)
        try:
            start = time.perf_counter()
            vocab, subwords = (models[level].vocab, models[level].subwords) if level in models else (words, None)
            tokens = sum(ids.size for ids in encode_chunks(TextSource("c", path=path), vocab, level, "none", subwords))
            return {"mb_per_s": path.stat().st_size / 1e6 / (time.perf_counter() - start), "tokens": tokens}
        finally:
            subword.MAX_DISTINCT_WORDS = default

    results = alternate({"encode, bpe 8,000 pieces": lambda: encode("bpe"),
                         "encode, bpe 8,000 pieces, line by line": lambda: encode("bpe", distinct=0.0),
                         "encode, bpe, 30 MB of new words": lambda: encode("bpe", new_words),
                         "encode, bpe, 30 MB of new words, line by line": lambda: encode("bpe", new_words, 0.0),
                         "encode, unigram 8,000 pieces": lambda: encode("unigram"),
                         "encode, unigram 8,000 pieces, line by line": lambda: encode("unigram", distinct=0.0),
                         "encode, words": lambda: encode("word")}, rounds)
    flags = ["--vocab-size", "8000", "--clean", "none", "--top", "0"]
    commands = {f"seqtool preprocess {mb} MB --level {kind} --vocab-size 8000 --clean none --top 0":
                (lambda kind=kind: preprocess(corpus, work / "sub.tokens", ["--level", kind, *flags])) for kind in ("bpe", "unigram")}
    if baseline_env():  # the same commands from the BENCH_BASELINE checkout, alternated with today's
        commands.update({f"before: preprocess {mb} MB --level {kind}":
                         (lambda kind=kind: preprocess(corpus, work / "sub.tokens", ["--level", kind, *flags], baseline_env()))
                         for kind in ("bpe", "unigram")})
    command = alternate(commands, rounds)
    print(f"\nSubword tokenisation of a {mb} MB corpus (--clean none): {rounds} alternated rounds, median (min-max)")
    for name, rows in results.items():
        print(f"{name:<72}{spread([r['mb_per_s'] for r in rows], ',.1f'):>16} MB/s   {rows[0]['tokens']:,} tokens")
    for name, rows in command.items():
        print(f"{name:<72}{spread([r['mb_per_s'] for r in rows], ',.1f'):>16} MB/s   peak RSS {spread([r['rss_mb'] for r in rows])} MiB")
    print("target: subword tokenisation >= 20 MB/s on 2 cores")


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES_MB", "100,200,1000").split(",")]
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    train_seconds = float(os.environ.get("BENCH_TRAIN_SECONDS", 60))
    parts = os.environ.get("BENCH_PARTS", "preprocess,train,budget,vocab,subword").split(",")
    if "vocab" in parts:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            vocab_memory(Path(tmp), rounds)
    if "budget" in parts:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            budgets(Path(tmp), rounds)
    if "subword" in parts:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            subword_encoding(Path(tmp), rounds)
    if "preprocess" not in parts:
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        for mb in sizes:
            build_corpus(work / f"c{mb}.txt", mb * 1_000_000)
        contenders = {}
        for mb in sizes:
            corpus, store = work / f"c{mb}.txt", work / f"c{mb}.tokens"
            contenders[f"preprocess {mb} MB"] = lambda c=corpus, s=store: preprocess(c, s, [])
            if baseline_env():
                contenders[f"before: preprocess {mb} MB"] = lambda c=corpus, s=store: preprocess(c, s, [], baseline_env())
            contenders[f"preprocess {mb} MB --clean none"] = lambda c=corpus, s=store: preprocess(c, s, ["--clean", "none"])
            contenders[f"preprocess {mb} MB --clean none --top 0"] = lambda c=corpus, s=store: preprocess(c, s, ["--clean", "none", "--top", "0"])
        results = alternate(contenders, rounds)
        training = alternate({f"train on the {mb} MB store": (lambda s=work / f"c{mb}.tokens", mb=mb: train(s, work / f"run{mb}", train_seconds))
                              for mb in sizes}, rounds) if "train" in parts else {}
    print(f"\nToken stores: {rounds} alternated rounds; median (min-max); peak RSS of the command's process")
    print(f"{'command':<42}{'MB/s':>14}{'peak RSS MiB':>24}{'store bytes/char':>22}")
    for name, rows in results.items():
        print(f"{name:<42}{spread([r['mb_per_s'] for r in rows], ',.1f'):>14}{spread([r['rss_mb'] for r in rows]):>24}"
              f"{spread([r['bytes_per_char'] for r in rows], '.3f'):>22}")
    if training:
        print(f"\n{'training (GRU 256, 2 threads, ' + str(int(train_seconds)) + ' s)':<34}{'tokens/s':>22}{'peak RSS MiB':>24}")
    for name, rows in training.items():
        print(f"{name:<34}{spread([r['tokens_per_s'] for r in rows]):>22}{spread([r['rss_mb'] for r in rows]):>24}")
    print("targets: default preprocess >= 20 MB/s on 100 MB, >= 30 MB/s on 200 MB (goal 50); peak RSS < 1 GB; "
          "store <= 1.1 bytes/char; training < 1.5 GB")


if __name__ == "__main__":
    main()
