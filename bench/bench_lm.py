"""Language-model benchmark: the plain PyTorch loop vs seqtool's classic and default specs.

Each contender runs in its own process with the same time budget (BENCH_SECONDS, default 120),
so peak memory is per contender. Prints tokens/s, best held-out perplexity, peak memory, and the
sampling speed of `seqtool sample --length 10000`.
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
PY = sys.executable
SEQTOOL = [PY, "-m", "seqtool"]


def run_plain(budget: float) -> dict:
    out = subprocess.run([PY, str(ROOT / "bench" / "plain_classic_lm.py"), str(budget)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_spec(name: str, spec: str, budget: float, workdir: Path) -> dict:
    run_dir = workdir / name
    cmd = [*SEQTOOL, "train", "--spec", str(ROOT / "specs" / spec), "--max-seconds", str(budget), "--out", str(run_dir), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    report = json.loads((run_dir / "report.json").read_text())
    return {
        "name": name, "tokens_per_s": report["tokens_per_s"], "val_ppl": report["best"]["val_ppl"],
        "epochs": report["epochs"], "seconds": report["wall_seconds"], "peak_rss_mb": report["peak_memory_mb"],
        "run_dir": run_dir,
    }


def sample_speed(run_dir: Path, length: int = 10000) -> float:
    t0 = time.perf_counter()
    subprocess.run([*SEQTOOL, "sample", "--checkpoint", str(run_dir), "--length", str(length), "--seed", "0"],
                   check=True, capture_output=True, text=True)
    return length / (time.perf_counter() - t0)


def main() -> None:
    budget = float(os.environ.get("BENCH_SECONDS", 120))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_plain(budget)]
        rows.append(run_spec("seqtool classic spec", "timemachine-classic.yaml", budget, Path(tmp)))
        rows.append(run_spec("seqtool default spec", "timemachine-gru.yaml", budget, Path(tmp)))
        speed = sample_speed(rows[-1]["run_dir"])
    print(f"\nLanguage model on The Time Machine, {budget:.0f} s budget each (peak RSS: resident memory of the process)")
    print(f"{'contender':<24}{'tokens/s':>12}{'held-out ppl':>15}{'epochs':>8}{'peak MB':>9}")
    for r in rows:
        print(f"{r['name']:<24}{r['tokens_per_s']:>12,.0f}{r['val_ppl']:>15.3f}{r['epochs']:>8}{r['peak_rss_mb']:>9.0f}")
    ratio = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    print(f"\nclassic spec / plain loop throughput: {ratio:.2f}x (target >= 1.0)")
    print(f"default spec held-out perplexity: {rows[2]['val_ppl']:.3f} (target <= 4.0)")
    print(f"sampling (seqtool sample --length 10000, incl. start-up): {speed:,.0f} tokens/s")


if __name__ == "__main__":
    main()
