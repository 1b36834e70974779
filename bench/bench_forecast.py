"""Forecasting benchmark through the real CLI (each run its own process, one CPU thread).

1. The classic sine (x_t = sin(0.01 t) + N(0, 0.2^2), t = 1..1000, train on the first 600): MSE of
   k-step-ahead predictions for k = 1, 4, 16, 64, for the classic MLP and the default GRU, averaged
   over seeds (each seed draws new noise and a new initialisation). Bars: one-step MSE <= 0.06 (the
   noise variance is 0.04); the GRU beats the MLP at k = 16 and 64.
2. airline-passengers with the last 24 months held out: MASE (scaled by the in-sample seasonal-naive
   error, period 12) of one-step and of the 24-month recursive forecast, against seasonal naive.
   Aim: MASE < 1.

BENCH_SEEDS (default 3) sets how many seeds the sine runs use. About two minutes on 2 CPU cores.
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
SEQTOOL = [sys.executable, "-m", "seqtool", "forecast"]
KS = (1, 4, 16, 64)
AIRLINE = {
    "mlp (log, diff 12, tau 12)": ["--model", "mlp", "--log", "--difference", "12", "--tau", "12"],
    "mlp (log, diff 1, tau 13)": ["--model", "mlp", "--log", "--difference", "1", "--tau", "13"],
    "gru (log, diff 12)": ["--model", "gru", "--log", "--difference", "12"],
}


def forecast(args: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([*SEQTOOL, *args, "--threads", "1", "--quiet", "--out", str(out), "--overwrite"],
                   check=True, capture_output=True, text=True, env=env)
    result = json.loads((out / "report.json").read_text())["forecast"]
    result["seconds"] = time.perf_counter() - t0
    return result


def pick(rows: list[dict], k, method: str = "model") -> dict:
    return next(r for r in rows if r.get("k", "multi") == k and r["method"] == method)


def main() -> None:
    seeds = range(int(os.environ.get("BENCH_SEEDS", 3)))
    with tempfile.TemporaryDirectory() as tmp:
        sine: dict[str, list[dict]] = {"mlp": [], "gru": []}
        for model in sine:
            for seed in seeds:
                sine[model].append(forecast(["--synthetic", "sine", "--model", model, "--seed", str(seed)], Path(tmp) / f"{model}{seed}"))
        airline = {name: forecast(["airline-passengers", "--n-train", "120", "--k", "1,12", *args], Path(tmp) / f"air{i}")
                   for i, (name, args) in enumerate(AIRLINE.items())}

    n = len(sine["mlp"])
    print(f"\nSynthetic sine (classic setting), test MSE of k-step-ahead predictions, mean over {n} seed(s)")
    print(f"{'model':<10}" + "".join(f"{'k=' + str(k):>10}" for k in KS) + f"{'multi':>10}{'train s':>10}")
    mean = {}
    for model, runs in sine.items():
        mean[model] = {k: sum(pick(r["k_step"], k)["mse"] for r in runs) / n for k in KS}
        multi = sum(pick(r["multi_step"], "multi")["mse"] for r in runs) / n
        secs = sum(r["seconds"] for r in runs) / n
        print(f"{model:<10}" + "".join(f"{mean[model][k]:>10.4f}" for k in KS) + f"{multi:>10.4f}{secs:>10.1f}")
    naive = {k: sum(pick(r["k_step"], k, "naive")["mse"] for r in sine["mlp"]) / n for k in KS}
    print(f"{'naive':<10}" + "".join(f"{naive[k]:>10.4f}" for k in KS))
    for model, runs in sine.items():
        print(f"  {model} per seed: " + "; ".join(" ".join(f"{pick(r['k_step'], k)['mse']:.3f}" for k in KS) for r in runs))
    worst_one_step = max(pick(r["k_step"], 1)["mse"] for runs in sine.values() for r in runs)
    print(f"one-step MSE, worst run: {worst_one_step:.4f} (bar <= 0.06)")
    for k in (16, 64):
        wins = sum(pick(g["k_step"], k)["mse"] < pick(m["k_step"], k)["mse"] for g, m in zip(sine["gru"], sine["mlp"]))
        print(f"k={k}: GRU {mean['gru'][k]:.4f} vs MLP {mean['mlp'][k]:.4f} (GRU better in {wins}/{n} seeds)")

    first = next(iter(airline.values()))
    print("\nairline-passengers, last 24 months held out: MASE (in-sample seasonal-naive MAE, period 12 "
          f"= {first['mase_scale']:.2f})")
    print(f"{'model':<28}{'one-step':>10}{'12-step':>10}{'24-month':>10}{'train s':>10}")
    for name, r in airline.items():
        print(f"{name:<28}{pick(r['k_step'], 1)['mase']:>10.3f}{pick(r['k_step'], 12)['mase']:>10.3f}"
              f"{pick(r['multi_step'], 'multi')['mase']:>10.3f}{r['seconds']:>10.1f}")
    print(f"{'seasonal naive':<28}{pick(first['k_step'], 1, 'seasonal naive')['mase']:>10.3f}"
          f"{pick(first['k_step'], 12, 'seasonal naive')['mase']:>10.3f}{pick(first['multi_step'], 'multi', 'seasonal naive')['mase']:>10.3f}")
    best = min(airline, key=lambda name: pick(airline[name]["k_step"], 1)["mase"])
    print(f"best one-step: {best}, MASE {pick(airline[best]['k_step'], 1)['mase']:.3f} (aim < 1)")


if __name__ == "__main__":
    main()
