"""Many-series benchmark: 100,000 synthetic series of length 200 in the M4 wide layout, one global
model trained and used by the real commands, on this machine's threads.

  python bench/bench_many.py [--series 100000] [--length 200] [--horizon 13] [--threads 2] [--rounds 3]

Only seqtool runs here (there is no second contender to alternate with); one-off wall times are
labelled as one run. Forecasting rates compare the global model with the M4 benchmarks Theta and
Naive2 on the same series and threads, in alternated rounds (A B C A B C ...): median (min-max).

Prints: the CSV's size; training (`seqtool forecast DATA --wide ...` in a child process) wall time,
windows/s and values/s, and the child's peak RSS; forecasting: series/s of the global model over
all series against Theta and Naive2 (in-process, alternated rounds), and the wall time and peak RSS of
`seqtool forecast --checkpoint RUN` writing every forecast (reading the CSV included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.rounds import spread  # noqa: E402


def synthetic_csv(path: Path, series: int, length: int, seed: int = 0) -> None:
    """Level x (1 + trend + season) + a random walk + noise, with levels from 10 to 10,000."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    with open(path, "w") as out:
        out.write("unique_id," + ",".join(f"V{i}" for i in range(1, length + 1)) + "\n")
        for start in range(0, series, 10_000):
            n = min(10_000, series - start)
            level = 10 ** rng.uniform(1, 4, (n, 1))
            trend = rng.normal(0, 0.002, (n, 1)) * t
            season = rng.uniform(0, 0.3, (n, 1)) * np.sin(2 * np.pi * (t + rng.integers(0, 12, (n, 1))) / 12)
            walk = np.cumsum(rng.normal(0, 0.01, (n, length)), axis=1)
            values = level * (1 + trend + season + walk) * (1 + rng.normal(0, 0.01, (n, length)))
            values = np.abs(values) + 1
            for i in range(n):
                out.write(f"S{start + i}," + ",".join(f"{v:.2f}" for v in values[i]) + "\n")


def child_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--horizon", type=int, default=13)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "seqtool"]
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "many.csv", Path(tmp) / "run"
        started = time.perf_counter()
        synthetic_csv(data, args.series, args.length)
        print(f"data: {args.series:,} series x {args.length} values, {data.stat().st_size / 2**20:,.0f} MiB CSV "
              f"(written in {time.perf_counter() - started:.0f} s)")

        started = time.perf_counter()
        subprocess.run(exe + ["forecast", str(data), "--wide", "--horizon", str(args.horizon), "--season", "12", "--epochs", str(args.epochs),
                              "--threads", str(args.threads), "--out", str(run), "--quiet"], check=True, stdout=subprocess.DEVNULL)
        train_wall = time.perf_counter() - started
        train_rss = child_rss_mib()
        report = json.loads((run / "report.json").read_text())
        windows_per_s = report["windows_per_s"]
        panel = report["panel"]
        values_per_s = windows_per_s * (panel["window"] + panel["horizon"])
        print(f"train (one run of seqtool forecast, {args.epochs} epochs, {args.threads} threads): {train_wall:.0f} s wall incl. reading, "
              f"validation and the report; {windows_per_s:,.0f} windows/s = {values_per_s:,.0f} values/s; peak RSS {train_rss:,.0f} MiB")
        print(f"  validation OWA (network / chosen {panel['combination']}): "
              + " / ".join(f"{r['owa']:.3f}" for r in panel["validation"] if r["method"] in ("network", panel["combination"])))

        import torch

        from seqtool.forecast import m4
        from seqtool.forecast.many import predict, restored, windows
        from bench.rounds import alternate

        torch.set_num_threads(args.threads)
        r, data_panel, _ = restored(str(run), None, "cpu")
        histories, h, m = data_panel.values, r.task.horizon, r.task.season

        def rate(forecast) -> float:
            started = time.perf_counter()
            forecast()
            return len(histories) / (time.perf_counter() - started)

        contenders = {"global model": lambda: rate(lambda: predict(r.model, windows(histories, r.task.window), r.device)),
                      "theta (M4 benchmark)": lambda: rate(lambda: m4.theta(histories, h, m)),
                      "naive2 (M4 benchmark)": lambda: rate(lambda: m4.naive2(histories, h, m))}
        rates = alternate(contenders, args.rounds)
        print(f"forecast all {len(histories):,} series ({args.threads} threads, {args.rounds} alternated rounds, "
              f"median (min-max) series/s):")
        for name, values in rates.items():
            print(f"  {name:<24}{spread(values)}")

        started = time.perf_counter()
        subprocess.run(exe + ["forecast", "--checkpoint", str(run), "--out", str(Path(tmp) / "f.csv")], check=True)
        wall = time.perf_counter() - started
        print(f"seqtool forecast --checkpoint (one run: reading the CSV, the forecast as chosen, writing {args.series * args.horizon:,} rows): "
              f"{wall:.1f} s = {args.series / wall:,.0f} series/s; peak RSS of any child so far {child_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
