"""Forecasting benchmark through the real CLI, with the shipped defaults (no model or transform flags).

For every shared series, `seqtool forecast SERIES --k 1,H` (its own process, BENCH_THREADS threads,
default 1) and the MASE (seasonal scaling) on the held-out test part of seqtool's forecast
("model"), of the network alone, and of naive, seasonal naive, ETS and Theta on the same points,
at k = 1 and k = H, with the wall time of the whole command. Then the geometric mean over the series
of MASE(seqtool) / MASE(ETS), and the empirical coverage of the 80% and 95% intervals (pooled over
the series' k = 1..H points of both ks).

Deterministic (seeded); each series runs once. The second part, the classic sine, prints the
k-step MSE of the classic MLP and of a GRU (BENCH_SEEDS seeds, default 3, mean).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQTOOL = [sys.executable, "-m", "seqtool", "forecast"]
#: series, its flags (the split and the horizon H only), H
SERIES = [
    ("airline-passengers", ["--season", "12", "--n-train", "120"], 12),
    ("monthly-shampoo-sales", ["--n-train", "24"], 12),
    ("yearly-water-usage", ["--n-train", "63"], 6),
    ("daily-min-temperatures", [], 14),
    ("daily-max-temperatures", [], 14),
]
METHODS = ("model", "network", "naive", "seasonal naive", "ets", "theta")


def run(series: str, flags: list[str], horizon: int, workdir: Path, threads: int) -> dict:
    out = workdir / series
    t0 = time.perf_counter()
    done = subprocess.run([*SEQTOOL, series, *flags, "--k", f"1,{horizon}", "--threads", str(threads), "--out", str(out),
                           "--overwrite", "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{series}: {done.stderr.strip()}")
    report = json.loads((out / "report.json").read_text())["forecast"]
    return {"seconds": seconds, "report": report}


def mase(report: dict, k: int, method: str) -> float:
    return next(r["mase"] for r in report["k_step"] if r["k"] == k and r["method"] == method)


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


SINE_KS = (1, 4, 16, 64)
#: the classic experiment as the course notes run it: no transform, no combination, the test MSE of the network
SINE = {"MLP (classic: tau 4 -> 10 -> 1)": ["--model", "mlp", "--tau", "4"], "GRU (latent, context 64)": ["--model", "gru", "--tau", "64"]}


def sine(seeds: int, workdir: Path, threads: int) -> None:
    print(f"\nsynthetic sine (train on the first 600 of 1000), test MSE of the network, mean over {seeds} seeds")
    print(f"{'model':<34}" + "".join(f"{'k=' + str(k):>10}" for k in SINE_KS))
    for name, flags in SINE.items():
        mse = {k: 0.0 for k in SINE_KS}
        for seed in range(seeds):
            out = workdir / f"sine-{seed}"
            subprocess.run([*SEQTOOL, "--synthetic", "sine", *flags, "--transform", "none", "--difference", "0", "--combine", "none",
                            "--seed", str(seed), "--threads", str(threads), "--out", str(out), "--overwrite", "--quiet"],
                           check=True, capture_output=True)
            rows = json.loads((out / "report.json").read_text())["forecast"]["k_step"]
            for k in SINE_KS:
                mse[k] += next(r["mse"] for r in rows if r["k"] == k and r["method"] == "network") / seeds
        print(f"{name:<34}" + "".join(f"{mse[k]:>10.3f}" for k in SINE_KS))


def main() -> None:
    threads = int(os.environ.get("BENCH_THREADS", 1))
    ratios: dict[int, list[float]] = {1: [], 0: []}
    coverage: dict[int, list[float]] = {80: [], 95: []}
    print(f"MASE on the held-out test part, shipped defaults, {threads} thread(s); one run per series (deterministic)")
    print(f"{'series':<24}{'k':>4}" + "".join(f"{m:>16}" for m in METHODS) + f"{'winner':>16}{'seconds':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for series, flags, horizon in SERIES:
            result = run(series, flags, horizon, Path(tmp), threads)
            report = result["report"]
            for k in (1, horizon):
                scores = {m: mase(report, k, m) for m in METHODS}
                winner = min(scores, key=lambda m: scores[m])
                print(f"{series:<24}{k:>4}" + "".join(f"{scores[m]:>16.3f}" for m in METHODS) + f"{winner:>16}"
                      + (f"{result['seconds']:>9.1f}" if k == 1 else ""))
                ratios[1 if k == 1 else 0].append(scores["model"] / scores["ets"])
                for level in coverage:
                    row = next(r for r in report["k_step"] if r["k"] == k and r["method"] == "model")
                    coverage[level].append(row[f"coverage-{level}"])
            print(f"{'':<24}     transform {report['transform']}, differences {report['difference'] or 'none'}, season "
                  f"{report['season']}, model = {report['combination']}")
    print(f"\ngeometric mean of MASE(seqtool) / MASE(ETS): k=1 {geometric_mean(ratios[1]):.3f}, k=H {geometric_mean(ratios[0]):.3f} "
          "(target <= 0.95)")
    for level, values in coverage.items():
        print(f"{level}% intervals: coverage per (series, k) from {min(values):.2f} to {max(values):.2f}, mean {sum(values) / len(values):.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        sine(int(os.environ.get("BENCH_SEEDS", 3)), Path(tmp), threads)


if __name__ == "__main__":
    main()
