"""Language-model benchmark: the plain PyTorch loop against seqtool's classic spec (the same recipe),
and seqtool's default spec's held-out perplexity at its 2-minute budget.

Contenders run in alternated rounds (plain, classic, plain, classic, ...: BENCH_ROUNDS each, at
least 3), each in its own process with the same thread count (BENCH_THREADS, default 1) and time
budget (BENCH_SECONDS, default 30). The table gives medians with min-max; the speed ratio is the
median of the per-round ratios. The default spec then runs BENCH_ROUNDS times at 120 s (its budget,
the one its perplexity target is stated for). Sampling speed: `seqtool sample --length 10000`.
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
from bench.rounds import alternate, ratio, spread  # noqa: E402

PY = sys.executable
SEQTOOL = [PY, "-m", "seqtool"]


def run_plain(budget: float, threads: int) -> dict:
    out = subprocess.run([PY, str(ROOT / "bench" / "plain_classic_lm.py"), str(budget), str(threads)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_spec(spec: str, budget: float, threads: int, run_dir: Path) -> dict:
    cmd = [*SEQTOOL, "train", "--spec", str(ROOT / "specs" / spec), "--max-seconds", str(budget), "--threads", str(threads),
           "--out", str(run_dir), "--overwrite", "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    report = json.loads((run_dir / "report.json").read_text())
    return {"tokens_per_s": report["tokens_per_s"], "val_ppl": report["best"]["val_ppl"], "test_ppl": report["test"]["test_ppl"],
            "epochs": report["epochs"],
            "peak_rss_mb": report["peak_memory_mb"], "run_dir": run_dir}


def sample_speed(run_dir: Path, length: int = 10000) -> float:
    t0 = time.perf_counter()
    subprocess.run([*SEQTOOL, "sample", "--checkpoint", str(run_dir), "--length", str(length), "--seed", "0"],
                   check=True, capture_output=True, text=True)
    return length / (time.perf_counter() - t0)


def column(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows]


def main() -> None:
    budget, threads = float(os.environ.get("BENCH_SECONDS", 30)), int(os.environ.get("BENCH_THREADS", 1))
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        speed = alternate({"plain loop (classic recipe)": lambda: run_plain(budget, threads),
                           "seqtool classic spec": lambda: run_spec("timemachine-classic.yaml", budget, threads, work / "classic")}, rounds)
        default = [run_spec("timemachine-gru.yaml", 120, threads, work / f"default{i}") for i in range(rounds)]
        sampling = [sample_speed(default[0]["run_dir"]) for _ in range(rounds)]
    print(f"\nLanguage model on The Time Machine: {rounds} alternated rounds of {budget:.0f} s, {threads} thread(s); median (min-max)")
    print("(held-out ppl: the plain loop's best on the whole held-out 10%; seqtool's validation half chose its checkpoint, "
          "whose test-half ppl is the last column)")
    print(f"{'contender':<30}{'tokens/s':>26}{'held-out ppl':>24}{'peak RSS MB':>20}{'test ppl':>24}")
    for name, rows in speed.items():
        test = spread(column(rows, 'test_ppl'), '.3f') if "test_ppl" in rows[0] else "-"
        print(f"{name:<30}{spread(column(rows, 'tokens_per_s')):>26}{spread(column(rows, 'val_ppl'), '.3f'):>24}"
              f"{spread(column(rows, 'peak_rss_mb')):>20}{test:>24}")
    names = list(speed)
    ratios = ratio(column(speed[names[1]], "tokens_per_s"), column(speed[names[0]], "tokens_per_s"))
    print(f"\nclassic spec / plain loop tokens/s, median of per-round ratios: {spread(ratios, '.2f')} (target >= 1.0, goal 1.1)")
    print(f"default spec at 120 s, {threads} thread(s), {rounds} runs: validation ppl {spread(column(default, 'val_ppl'), '.3f')} "
          f"(target <= 4.0), test ppl {spread(column(default, 'test_ppl'), '.3f')}, {spread(column(default, 'tokens_per_s'))} tokens/s")
    print(f"sampling (seqtool sample --length 10000, incl. start-up), {rounds} runs: {spread(sampling)} tokens/s")


if __name__ == "__main__":
    main()
