"""Forecasting benchmark through the real CLI, with the shipped defaults (no model or transform flags).

For every shared series, `seqtool forecast SERIES --k 1,H --seed r` (its own process, BENCH_THREADS
threads, default 1) for rounds r = 0..BENCH_ROUNDS-1 (default 3): the network's initialisation is
the only thing a seed changes, and one seed's score can flatter or wrong it, so every figure is the
median over the rounds (the statistical members are deterministic: the same in every round). Per
(series, k): the MASE (seasonal scaling) on the held-out test part of seqtool's forecast ("model"),
of the network alone, and of naive, seasonal naive, statsforecast's AutoETS, AutoARIMA, AutoTheta
and their plain mean (the statistician's ensemble) on the same points, at k = 1 and k = H, with the
wall time of the whole command. Then, per round, the geometric mean over the series of
MASE(seqtool) / MASE(mean of the three), printed as median (min-max) over the rounds, the worst
(series, k) of the medians, and the empirical coverage of the 80% and 95% intervals per series (its
test points at both ks pooled; median over the rounds).

BENCH_PART=validation runs the same on each series' training part alone (cut to the first n_train
values, then split 80/20 by default), so that design choices can be judged without the test parts.
BENCH_FLAGS adds flags to every run (a variant to compare). BENCH_BASELINE=DIR (a checkout of an
earlier commit) runs its seqtool too, alternated with today's (today, before, today, before ... per
series, the same seed and threads), and prints each contender's summary. The second part, the classic sine,
prints the k-step MSE of the classic MLP and of a GRU (BENCH_SEEDS seeds, default 3, mean).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.rounds import alternate, baseline_env, spread  # noqa: E402

SEQTOOL = [sys.executable, "-m", "seqtool", "forecast"]
#: series, its training-part size (None: the default 80%), H
SERIES = [
    ("airline-passengers", 120, 12),
    ("monthly-shampoo-sales", 24, 12),
    ("yearly-water-usage", 63, 6),
    ("daily-min-temperatures", None, 14),
    ("daily-max-temperatures", None, 14),
]
STAT_MEAN = "ets+arima+theta"
METHODS = ("model", "network", "naive", "seasonal naive", "ets", "arima", "theta", STAT_MEAN)
LEVELS = (80, 95)


def training_part(series: str, n_train: int | None, workdir: Path) -> tuple[str, int]:
    """A CSV of the series' training part alone, and its length."""
    from seqtool.data.corpora import locate

    lines = locate(series).read_text(encoding="utf-8").splitlines()
    n = n_train or int((len(lines) - 1) * 0.8)
    path = workdir / f"{series}-train.csv"
    path.write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return str(path), n


def run(series: str, flags: list[str], ks: list[int], workdir: Path, threads: int, env: dict | None = None) -> dict:
    out = workdir / Path(series).stem
    t0 = time.perf_counter()
    done = subprocess.run([*SEQTOOL, series, *flags, "--k", ",".join(map(str, ks)), "--threads", str(threads), "--out", str(out),
                           "--overwrite", "--quiet"], capture_output=True, text=True, env=env,
                          cwd=(env or {}).get("PYTHONPATH"))  # -m puts the cwd first
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{series}: {done.stderr.strip()}")
    report = json.loads((out / "report.json").read_text())["forecast"]
    return {"seconds": seconds, "report": report}


def row(report: dict, k: int, method: str) -> dict:
    return next(r for r in report["k_step"] if r["k"] == k and r["method"] == method)


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def forecasts(threads: int, part: str, rounds: int) -> None:
    extra = os.environ.get("BENCH_FLAGS", "").split()
    contenders = {"today": None, **({"before": baseline_env()} if baseline_env() else {})}
    print(f"MASE on the held-out {'tail of the training part' if part == 'validation' else 'test part'}, shipped defaults"
          f"{' + ' + ' '.join(extra) if extra else ''}, {threads} thread(s); median over {rounds} rounds (--seed 0..{rounds - 1})"
          + (f"; each round runs today's code, then BENCH_BASELINE's ({os.environ['BENCH_BASELINE']}), alternated" if len(contenders) > 1 else ""))
    print(f"{'series':<24}{'k':>4}" + "".join(f"{m:>16}" for m in METHODS) + f"{'model/mean':>11}{'seconds':>9}")
    summaries = {name: Summary(rounds) for name in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        for series, n_train, horizon in SERIES:
            if part == "validation":
                source, n = training_part(series, n_train, Path(tmp))
                flags, horizon = [], min(horizon, n - int(n * 0.8) - 1)
            else:
                source, flags = series, (["--n-train", str(n_train)] if n_train else [])
            ks = sorted({1, horizon})
            results = alternate({name: (lambda env=env, r=iter(range(rounds)): run(source, [*flags, *extra, "--seed", str(next(r))], ks,
                                                                                     Path(tmp), threads, env))
                                 for name, env in contenders.items()}, rounds)
            for name, summary in summaries.items():
                summary.add(series, ks, horizon, results[name], show=name == "today")
    for name, summary in summaries.items():
        summary.print(name if len(summaries) > 1 else "")


class Summary:
    """One contender's per-round ratios, worst (series, k) and coverage over the series."""

    def __init__(self, rounds: int):
        self.ratios: dict[str, list[list[float]]] = {"1": [[] for _ in range(rounds)], "H": [[] for _ in range(rounds)]}
        self.medians: list[tuple[float, str]] = []  # (median ratio over the rounds, 'series k=K')
        self.coverage: dict[int, list[tuple[float, str]]] = {level: [] for level in LEVELS}
        self.seconds: list[tuple[float, str]] = []

    def add(self, series: str, ks: list[int], horizon: int, results: list[dict], show: bool) -> None:
        reports = [result["report"] for result in results]
        seconds = statistics.median(result["seconds"] for result in results)
        self.seconds.append((seconds, series))
        for k in ks:
            scores = {m: statistics.median(row(report, k, m)["mase"] for report in reports) for m in METHODS}
            per_round = [row(report, k, "model")["mase"] / row(report, k, STAT_MEAN)["mase"] for report in reports]
            ratio = statistics.median(per_round)
            if show:
                print(f"{series:<24}{k:>4}" + "".join(f"{scores[m]:>16.3f}" for m in METHODS) + f"{ratio:>11.3f}"
                      + (f"{seconds:>9.1f}" if k == 1 else ""))
            for key in (["1"] if k == 1 else []) + (["H"] if k == horizon else []):
                for r, value in enumerate(per_round):
                    self.ratios[key][r].append(value)
            self.medians.append((ratio, f"{series} k={k}"))
        covers = {level: [] for level in LEVELS}
        for report in reports:
            model_rows = [row(report, k, "model") for k in ks]
            points = sum(r["n"] for r in model_rows)
            for level in LEVELS:
                covers[level].append(sum(r[f"coverage-{level}"] * r["n"] for r in model_rows) / points)
        cover = {level: statistics.median(values) for level, values in covers.items()}
        for level in LEVELS:
            self.coverage[level].append((cover[level], series))
        if show:
            print(f"{'':<24}     transform {reports[0]['transform']}, differences {reports[0]['difference'] or 'none'}, season "
                  f"{reports[0]['season']}; network {reports[0]['model']}; model (round 0) = {reports[0]['combination']}; coverage "
                  + ", ".join(f"{level}%: {cover[level]:.2f}" for level in LEVELS))

    def print(self, name: str) -> None:
        worst = max(self.medians)
        gm = {key: [geometric_mean(values) for values in per_round] for key, per_round in self.ratios.items()}
        print(f"\n{name + ': ' if name else ''}geometric mean of MASE(seqtool) / MASE(mean of AutoETS, AutoARIMA, AutoTheta), "
              f"median (min-max) over the rounds: k=1 {spread(gm['1'], '.3f')}, k=H {spread(gm['H'], '.3f')} (target <= 0.95); "
              f"worst {worst[0]:.3f} ({worst[1]}; target <= 1.25)")
        for level, values in self.coverage.items():
            low, high = min(values), max(values)
            print(f"{level}% intervals: coverage per series from {low[0]:.2f} ({low[1]}) to {high[0]:.2f} ({high[1]}), "
                  f"mean {sum(v for v, _ in values) / len(values):.2f}")
        if name:
            print("seconds per run (median): " + ", ".join(f"{series} {seconds:.1f}" for seconds, series in self.seconds))


SINE_KS = (1, 4, 16, 64)
#: the classic experiment as the course notes run it: no transform, no combination, the test MSE of the network
SINE = {"MLP (classic: tau 4 -> 10 -> 1)": ["--model", "mlp", "--tau", "4", "--ensemble", "1"], "GRU (latent, context 64)": ["--model", "gru", "--tau", "64"]}


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
    forecasts(threads, os.environ.get("BENCH_PART", "test"), int(os.environ.get("BENCH_ROUNDS", 3)))
    seeds = int(os.environ.get("BENCH_SEEDS", 3))
    if seeds:
        with tempfile.TemporaryDirectory() as tmp:
            sine(seeds, Path(tmp), threads)


if __name__ == "__main__":
    main()
