"""Language-model benchmark: the plain PyTorch loop against seqtool's classic spec (the same recipe),
and seqtool's default spec's held-out perplexity at its 2-minute budget.

`python bench/bench_lm.py word` is the word-level mode, on War and Peace in the benchmark layout
(DIR/{train,valid,test}.txt, copied from the mirror): the plain loop of the classic small recipe
(bench/plain_word_lm.py) against seqtool's specs/word-lstm.yaml at equal time (BENCH_SECONDS,
default 600) and threads (BENCH_THREADS, default 1), BENCH_ROUNDS alternated rounds: tokens/s,
validation and test perplexity (seqtool's from `seqtool eval RUN DIR/test.txt --json`), peak RSS,
minor page faults and system time. Then the same recipe on both sides (specs/word-lstm-classic.yaml
against the plain loop, BENCH_SPEED_SECONDS, default 120): the speed and memory comparison.

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


def measured(cmd: list[str]) -> tuple[dict, str]:
    """-> (the process's own peak RSS MiB, minor faults, system seconds; its stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} failed: {err.read().decode()[-2000:]}")
        return {"peak_rss_mb": usage.ru_maxrss / 1024, "minor_faults": usage.ru_minflt, "system_s": usage.ru_stime}, out.read().decode()


def word_layout(root: Path) -> Path:
    mirror = Path(os.environ.get("SEQTOOL_MIRROR", ROOT.parent / "shared" / "corpora"))
    root.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        (root / f"{part}.txt").write_bytes((mirror / f"warandpeace.{part}.txt").read_bytes())
    return root


def run_plain_word(layout: Path, budget: float, threads: int) -> dict:
    usage, out = measured([PY, str(ROOT / "bench" / "plain_word_lm.py"), str(layout), str(budget), str(threads)])
    return {**json.loads(out.strip().splitlines()[-1]), **usage}


def run_word_spec(spec: str, layout: Path, budget: float, threads: int, run_dir: Path) -> dict:
    usage, _ = measured([*SEQTOOL, "train", str(layout), "--spec", str(ROOT / "specs" / spec), "--max-seconds", str(budget),
                         "--threads", str(threads), "--out", str(run_dir), "--overwrite", "--quiet"])
    report = json.loads((run_dir / "report.json").read_text())
    scored = subprocess.run([*SEQTOOL, "eval", str(run_dir), str(layout / "test.txt"), "--json", "--device", "cpu"],
                            check=True, capture_output=True, text=True)
    return {"tokens_per_s": report["tokens_per_s"], "val_ppl": report["best"]["val_ppl"], "test_ppl": json.loads(scored.stdout)["perplexity"],
            "epochs": report["epochs"], **usage}


def word_table(title: str, results: dict) -> None:
    print(f"\n{title}")
    print(f"{'contender':<36}{'tokens/s':>22}{'val ppl':>26}{'test ppl':>26}{'peak RSS MiB':>22}{'minor faults':>36}{'system s':>22}")
    for name, rows in results.items():
        print(f"{name:<36}{spread(column(rows, 'tokens_per_s')):>22}{spread(column(rows, 'val_ppl'), '.1f'):>26}"
              f"{spread(column(rows, 'test_ppl'), '.1f'):>26}{spread(column(rows, 'peak_rss_mb')):>22}"
              f"{spread(column(rows, 'minor_faults')):>36}{spread(column(rows, 'system_s'), '.1f'):>22}")


def word_main() -> None:
    budget, threads = float(os.environ.get("BENCH_SECONDS", 600)), int(os.environ.get("BENCH_THREADS", 1))
    speed_budget, rounds = float(os.environ.get("BENCH_SPEED_SECONDS", 120)), int(os.environ.get("BENCH_ROUNDS", 3))
    parts = os.environ.get("BENCH_PARTS", "recipe,same").split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        layout = word_layout(work / "warandpeace")
        recipe = alternate({"plain loop (classic small recipe)": lambda: run_plain_word(layout, budget, threads),
                            "seqtool specs/word-lstm.yaml": lambda: run_word_spec("word-lstm.yaml", layout, budget, threads, work / "recipe")},
                           rounds) if "recipe" in parts else None
        same = alternate({"plain loop (classic small recipe)": lambda: run_plain_word(layout, speed_budget, threads),
                          "seqtool word-lstm-classic.yaml": lambda: run_word_spec("word-lstm-classic.yaml", layout, speed_budget, threads,
                                                                                  work / "classic")}, rounds) if "same" in parts else None
    if recipe is not None:
        word_table(f"Word-level LM on War and Peace (DIR/train,valid,test.txt): {rounds} alternated rounds of {budget:.0f} s, "
                   f"{threads} thread(s); median (min-max)", recipe)
        names = list(recipe)
        print(f"test perplexity, seqtool / plain loop, median of per-round ratios: "
              f"{spread(ratio(column(recipe[names[1]], 'test_ppl'), column(recipe[names[0]], 'test_ppl')), '.3f')}")
    if same is None:
        return
    word_table(f"The same recipe on both sides (2x200 LSTM, full softmax, SGD lr 1, clip 5, batch 20 x 35): {rounds} alternated "
               f"rounds of {speed_budget:.0f} s, {threads} thread(s); median (min-max)", same)
    names = list(same)
    print(f"seqtool / plain loop, medians of per-round ratios: tokens/s "
          f"{spread(ratio(column(same[names[1]], 'tokens_per_s'), column(same[names[0]], 'tokens_per_s')), '.2f')} (target >= 1.0), "
          f"peak RSS {spread(ratio(column(same[names[1]], 'peak_rss_mb'), column(same[names[0]], 'peak_rss_mb')), '.2f')} (target <= 1.2)")


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
    word_main() if sys.argv[1:] == ["word"] else main()
