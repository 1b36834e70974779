"""Classification and tagging against the classic baselines, on the shared data.

SST-2: `seqtool train --task classify DIR` with defaults (DIR: train = sst2-train, valid = test =
sst2-dev) against TF-IDF (word 1-2-grams) + logistic regression whose C is chosen on sst2-dev.
UD English: `seqtool train DIR` with defaults (train = ud-english-train, valid = test =
ud-english-valid) against the most frequent tag of each word (unseen words: the most frequent tag).
SST-2 also with `--members 2 --max-seconds 240`: an ensemble of two networks in one run (BENCH_MEMBERS);
UD also with `--members 1`: one network in the same 240 s as the default's two.
Round r trains with `--seed r` (r = 0, 1, 2, ...): one network's accuracy on a few thousand
sentences moves with its seed by a point or more, so the rounds sample that too, not only timing.
Both sides choose on the same data they are scored on (the issue's measure: accuracy on sst2-dev
and ud-english-valid); the shared files hold no other labelled part.

Then prediction speed on 1 thread: `seqtool predict` on BENCH_PREDICT_LINES lines of SST-2 (the
whole command, start-up included, and the library call alone) against the TF-IDF model's predict.

Contenders run in alternated rounds (BENCH_ROUNDS, at least 3); medians (min-max).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.rounds import alternate, spread  # noqa: E402

SEQTOOL = [sys.executable, "-m", "seqtool"]
MIRROR = Path(os.environ.get("SEQTOOL_MIRROR", ROOT.parent / "shared" / "corpora"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
MEMBERS = os.environ.get("BENCH_MEMBERS", "2")
PREDICT_LINES = int(os.environ.get("BENCH_PREDICT_LINES", 50_000))


def layout(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, name in files.items():
        (folder / part).unlink(missing_ok=True)
        (folder / part).symlink_to(MIRROR / name)
    return folder


TRAINED: Counter = Counter()  # rounds trained so far per run directory: the next round's seed


def seqtool_train(args: list[str], run: Path) -> dict:
    seed, TRAINED[run] = TRAINED[run], TRAINED[run] + 1
    start = time.perf_counter()
    done = subprocess.run([*SEQTOOL, "train", *args, "--seed", str(seed), "--out", str(run), "--overwrite", "--quiet"],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"seqtool train failed: {done.stderr}")
    report = json.loads((run / "report.json").read_text())
    return {"seconds": time.perf_counter() - start, "accuracy": report["test"]["test_accuracy"], "epochs": report["epochs"]}


def tfidf_logreg(train: list, dev: list) -> dict:
    """TF-IDF of word unigrams and bigrams, logistic regression; C chosen on dev."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    x_train = vectorizer.fit_transform([" ".join(s.tokens) for s in train])
    x_dev = vectorizer.transform([" ".join(s.tokens) for s in dev])
    y_train, y_dev = [s.labels[0] for s in train], [s.labels[0] for s in dev]
    best = (0.0, None)
    for c in (0.25, 0.5, 1, 2, 4, 8, 16):
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        accuracy = float((model.predict(x_dev) == y_dev).mean())
        best = max(best, (accuracy, c), key=lambda t: t[0])
    return {"seconds": time.perf_counter() - start, "accuracy": best[0], "C": best[1]}


def most_frequent_tag(train: list, valid: list) -> dict:
    start = time.perf_counter()
    counts, overall = defaultdict(Counter), Counter()
    for s in train:
        for w, t in zip(s.tokens, s.labels):
            counts[w][t] += 1
            overall[t] += 1
    fallback = overall.most_common(1)[0][0]
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    pairs = [(w, t) for s in valid for w, t in zip(s.tokens, s.labels)]
    accuracy = sum(best.get(w, fallback) == t for w, t in pairs) / len(pairs)
    return {"seconds": time.perf_counter() - start, "accuracy": accuracy}


def predict_command(run: Path, lines: Path) -> dict:
    start = time.perf_counter()
    with open(lines, "rb") as stdin:
        done = subprocess.run([*SEQTOOL, "predict", "--checkpoint", str(run), "--threads", "1"], stdin=stdin, capture_output=True)
    if done.returncode:
        sys.exit(f"seqtool predict failed: {done.stderr.decode()}")
    seconds = time.perf_counter() - start
    return {"per_s": len(done.stdout.splitlines()) / seconds}


def predict_library(run: Path, texts: list[str]) -> dict:
    import torch

    from seqtool.core.restore import restore
    from seqtool.label.predict import predict_lines

    torch.set_num_threads(1)
    r = restore(str(run), device="cpu")
    start = time.perf_counter()
    n = sum(len(chunk) for chunk in predict_lines(r, texts))
    return {"per_s": n / (time.perf_counter() - start)}


def tfidf_predict(train: list, texts: list[str]) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from seqtool.label.data import words

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    model = LogisticRegression(C=2, max_iter=2000).fit(vectorizer.fit_transform([" ".join(s.tokens) for s in train]),
                                                        [s.labels[0] for s in train])
    start = time.perf_counter()
    model.predict(vectorizer.transform([" ".join(words(t)) for t in texts]))
    return {"per_s": len(texts) / (time.perf_counter() - start)}


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the sklearn side: one thread, as seqtool predict's
    from seqtool.label.data import read_labelled, read_tagged

    sst_train, sst_dev = read_labelled(str(MIRROR / "sst2-train.tsv")), read_labelled(str(MIRROR / "sst2-dev.tsv"))
    ud_train, ud_valid = read_tagged(str(MIRROR / "ud-english-train.conllu")), read_tagged(str(MIRROR / "ud-english-valid.conllu"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sst = layout(work / "sst", {"train.tsv": "sst2-train.tsv", "valid.tsv": "sst2-dev.tsv", "test.tsv": "sst2-dev.tsv"})
        ud = layout(work / "ud", {"train.conllu": "ud-english-train.conllu", "valid.conllu": "ud-english-valid.conllu",
                                  "test.conllu": "ud-english-valid.conllu"})
        results = alternate({
            "SST-2  seqtool classify (defaults)": lambda: seqtool_train(["--task", "classify", str(sst)], work / "sst-run"),
            f"SST-2  seqtool classify --members {MEMBERS}": lambda: seqtool_train(
                ["--task", "classify", str(sst), "--members", MEMBERS, "--max-seconds", "240"], work / "sst-members"),
            "SST-2  TF-IDF + logistic regression": lambda: tfidf_logreg(sst_train, sst_dev),
            "UD     seqtool tag (defaults)": lambda: seqtool_train([str(ud)], work / "ud-run"),
            "UD     seqtool tag --members 1": lambda: seqtool_train([str(ud), "--members", "1"], work / "ud-single"),
            "UD     most frequent tag per word": lambda: most_frequent_tag(ud_train, ud_valid),
        }, ROUNDS)
        texts = [line.rsplit("\t", 1)[0] for line in (MIRROR / "sst2-dev.tsv").read_text(encoding="utf-8").splitlines() if line.strip()]
        texts = (texts * (PREDICT_LINES // len(texts) + 1))[:PREDICT_LINES]
        (work / "lines.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        speed = alternate({
            "seqtool predict (the command, start-up included)": lambda: predict_command(work / "sst-run", work / "lines.txt"),
            f"  ... of the --members {MEMBERS} run": lambda: predict_command(work / "sst-members", work / "lines.txt"),
            "seqtool predict_lines (the library call)": lambda: predict_library(work / "sst-run", texts),
            "TF-IDF + logistic regression predict": lambda: tfidf_predict(sst_train, texts),
        }, ROUNDS)
    print(f"\nClassification and tagging on the shared data: {ROUNDS} alternated rounds; median (min-max)")
    print("(each side chooses on the part it is scored on: sst2-dev, ud-english-valid)")
    print(f"{'contender':<40}{'accuracy':>26}{'wall s':>22}")
    for name, rows in results.items():
        print(f"{name:<40}{spread([r['accuracy'] for r in rows], '.4f'):>26}{spread([r['seconds'] for r in rows], ',.1f'):>22}")
    print(f"\nPrediction speed, 1 thread, {PREDICT_LINES:,} SST-2 sentences: sentences/s")
    for name, rows in speed.items():
        print(f"{name:<52}{spread([r['per_s'] for r in rows]):>24}")
    print("targets: SST-2 accuracy >= 0.82 (goal 0.85) and UD UPOS >= 0.92 (goal 0.94), each in <= 300 s of training; "
          "predict >= 5,000 sentences/s on 1 thread")


if __name__ == "__main__":
    main()
