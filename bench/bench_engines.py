"""torch vs onnxruntime on the same trained runs, 1 thread each, alternated rounds (A B A B ...).

  python bench/bench_engines.py [--rounds 5] [--train-seconds 30]

Trains three small runs with the real commands (a char-level GRU language model on The Time
Machine, a panel forecaster on M4 weekly, an English->French translator on fra-eng), exports each
with `seqtool export` (parity checked there), then times, per engine: greedy sampling tokens/s
(one 2,000-token sample), forecast series/s (all 359 weekly series' windows, tiled to 10,000), and
greedy translation sentences/s (the last 200 English sentences of fra-eng). Medians (min-max) and the median of
per-round ratios; export wall times are one run each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.rounds import alternate, ratio, spread  # noqa: E402


def seqtool(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed(work, units: int) -> float:
    started = time.perf_counter()
    work()
    return units / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train-seconds", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from seqtool.core.export import restore_engine
    from seqtool.forecast.many import predict, restored, windows

    with tempfile.TemporaryDirectory() as tmp:
        lm, panel, tr = (str(Path(tmp) / name) for name in ("lm", "panel", "tr"))
        budget = ["--max-seconds", str(args.train_seconds), "--threads", "1", "--quiet"]
        seqtool("train", "timemachine", "--spec", "specs/timemachine-gru.yaml", *budget, "--out", lm)
        seqtool("forecast", "m4-weekly-train", "--wide", "--horizon", "13", "--epochs", "2", "--threads", "1", "--quiet", "--out", panel)
        seqtool("train", "--spec", "specs/fra-eng.yaml", *budget, "--out", tr)
        exports = {name: seqtool("export", run) for name, run in (("language model", lm), ("panel forecaster", panel), ("translator", tr))}
        print("export (one run each, incl. the parity check): " + ", ".join(f"{k} {v:.0f} s" for k, v in exports.items()))

        runs = {engine: restore_engine(lm, "lm", "cpu", engine) for engine in ("torch", "onnxruntime")}
        length = 2000
        sampling = alternate({engine: (lambda r=r: timed(lambda: r.task.generate(r.model, "the time traveller", length, greedy=True), length))
                              for engine, r in runs.items()}, args.rounds)
        texts = {engine: r.task.generate(r.model, "the time traveller", length, greedy=True)[0] for engine, r in runs.items()}

        panel_runs = {engine: restored(panel, None, "cpu", engine)[:2] for engine in ("torch", "onnxruntime")}
        r0, data = panel_runs["torch"]
        inputs = windows(data.values, r0.task.window).repeat(28, 1)[:10_000]
        forecasting = alternate({engine: (lambda r=r: timed(lambda: predict(r.model, inputs, r.device), len(inputs)))
                                 for engine, (r, _) in panel_runs.items()}, args.rounds)

        tr_runs = {engine: restore_engine(tr, "translate", "cpu", engine) for engine in ("torch", "onnxruntime")}
        sources = [line.split("\t")[0] for line in Path("../shared/corpora/fra-eng.txt").read_text(encoding="utf-8").splitlines()[-200:]]
        translating = alternate({engine: (lambda r=r: timed(lambda: r.task.translate(r.model, sources, r.device, beam=1), len(sources)))
                                 for engine, r in tr_runs.items()}, args.rounds)
        same = [[h[0].tokens for h in r.task.translate(r.model, sources, r.device, beam=1)] for r in tr_runs.values()]

    print(f"1 thread each, {args.rounds} alternated rounds, median (min-max); ratio = onnxruntime / torch, median of per-round ratios")
    for what, results, unit in (("greedy sampling", sampling, "tokens/s"), ("panel forecast", forecasting, "series/s"),
                                ("greedy translation", translating, "sentences/s")):
        print(f"{what:<20} torch {spread(results['torch'])} {unit}   onnxruntime {spread(results['onnxruntime'])} {unit}   "
              f"ratio {spread(ratio(results['onnxruntime'], results['torch']), '.2f')}")
    print(f"greedy text identical: {texts['torch'] == texts['onnxruntime']}; greedy translations identical: {same[0] == same[1]} "
          f"({len(sources)} sentences)")


if __name__ == "__main__":
    main()
