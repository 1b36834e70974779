"""Speed against the physical limit: training throughput of the language-model default spec, the
achieved GFLOP/s of its matmuls next to the machine's measured matmul peak, DDP scaling, and
sampling speed.

    python bench/bench_speed.py            # BENCH_SECONDS (default 30) of training per row

- peak: the median of several large torch.mm (2048 x 2048) of the row's dtype at its thread count
  (bf16 autocast runs the matmuls in bf16, so its row is set against the bf16 peak).
- FLOPs per token are counted, not measured: a recurrent layer with g gates (rnn 1, gru 3, lstm 4),
  input width I and hidden H does 2*g*H*(I + H) per token, the output layer 2*H*V, the embedding
  lookup none; training is ~3x the forward pass (the backward computes two products per forward
  one). Elementwise gate arithmetic is not counted, so the ratio is a lower bound of the work done.
- tokens/s is the steady state: tokens over time inside training steps, after a few warm-up steps
  (held-out evaluation, start-up and, with --compile, compilation excluded).
- every row runs once per round and the rounds alternate (BENCH_ROUNDS, default 3): the table gives
  medians with min-max, and each ratio (DDP, bf16, compile against the 1-process fp32 row) is the
  median of its per-round ratios. Never the best run.
- DDP: `torchrun` with 2 processes x 1 thread against 1 process x 1 thread, each process with the
  same rows per step (global batch 2B against B). Target >= 1.7x on a 2-core machine; it needs
  both cores free.
- the fused GRU at hidden 512: target >= 50% of the measured peak in training.
- sampling: tokens/s generating 10,000 characters from the default-spec run (one sequence, so the
  recurrent step is latency-bound: a matrix-vector product per layer per token).

Each row trains in its own process (this script re-run with --worker, under torchrun for DDP).
On a shared machine numbers move with the load; the peak is measured in the same run so the ratio
is less sensitive than the raw numbers.
"""

from __future__ import annotations

import argparse
import statistics
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout, installed or not
SPEC = ROOT / "specs" / "timemachine-gru.yaml"
WARMUP_STEPS = 3
WARMUP_ALLOWANCE = 600  # the most seconds the warm-up steps may take (--compile compiles in them)
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def train_flops_per_token(cell: str, embed: int, hidden: int, layers: int, vocab: int, bidirectional: bool = False) -> float:
    """Matmul FLOPs per token of one training step (forward + backward ~ 3 x forward)."""
    dirs = 2 if bidirectional else 1
    g = GATES[cell]
    forward = 0
    for layer in range(layers):
        width = (embed or vocab) if layer == 0 else hidden * dirs  # one-hot inputs are a dense matmul
        forward += dirs * 2 * g * hidden * (width + hidden)
    forward += 2 * hidden * dirs * vocab
    return 3.0 * forward


def matmul_peak(threads: int, dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 6) -> float:
    """GFLOP/s of the median of `reps` n x n torch.mm at `threads` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(before)
    return 2 * n**3 / statistics.median(times) / 1e9


# ---- one row: train for a while, report steady-state tokens/s ------------------------------------
def worker(args: argparse.Namespace) -> None:
    from seqtool.core.spec import apply_overrides, load_spec
    from seqtool.core.session import start_run

    spec = load_spec(args.spec)
    overrides = {"train.max_seconds": args.seconds + WARMUP_ALLOWANCE, "train.threads": args.threads, "output.out": args.out,
                 "output.overwrite": True, "train.precision": args.precision, "train.compile": args.compile}
    for key in ("hidden", "batch"):
        if getattr(args, key):
            overrides[("model." if key == "hidden" else "train.") + key] = getattr(args, key)
    apply_overrides(spec, overrides)
    trainer = start_run(spec)
    marks = []

    def mark(tr) -> None:
        marks.append((tr.state.global_step, tr.state.items, tr.state.train_seconds, time.process_time(), time.perf_counter()))
        if len(marks) == WARMUP_STEPS + 1:  # warmed up (compiled): `seconds` more from here
            tr.spec.train.max_seconds = tr.state.elapsed + args.seconds

    trainer.callbacks.append(mark)
    trainer.fit()
    if not trainer.dist.is_main:
        return
    _, items0, t0, cpu0, wall0 = marks[min(WARMUP_STEPS, len(marks) - 2)]
    steps, items1, t1, cpu1, wall1 = marks[-1]
    m = spec.model
    print(json.dumps({
        "tokens_per_s": (items1 - items0) / (t1 - t0), "steps": steps,
        "processes": trainer.dist.world,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0) / torch.get_num_threads(),  # of its threads' cores, rank 0
        "threads": torch.get_num_threads(), "vocab": len(trainer.task.vocab), "cell": m.cell, "embed": m.embed,
        "hidden": m.hidden, "layers": m.layers, "batch": spec.train.batch, "precision": spec.train.precision,
        "run": str(trainer.run.path),
    }))


def run_row(name: str, seconds: float, out: Path, nproc: int = 1, **flags) -> dict:
    cmd = [str(Path(__file__).resolve()), "--worker", "--seconds", str(seconds), "--out", str(out)]
    for key, value in flags.items():
        if value is True:
            cmd.append(f"--{key}")
        elif value not in (None, False):
            cmd += [f"--{key}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(flags.get("threads") or os.cpu_count() or 1)}
    if nproc > 1:
        launcher = [sys.executable, "-m", "seqtool.core.launch", "--standalone", f"--nproc-per-node={nproc}", "--no-python"]
        cmd = [*launcher, sys.executable, *cmd]
    else:
        cmd = [sys.executable, *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}, cwd=out.parent)
    if done.returncode != 0:
        raise SystemExit(f"{name}: failed ({done.returncode})\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["name"] = name
    row["train_flops_per_token"] = train_flops_per_token(row["cell"], row["embed"], row["hidden"], row["layers"], row["vocab"])
    row["gflops"] = row["tokens_per_s"] * row["train_flops_per_token"] / 1e9
    return row


def sampling_speed(run_dir: str, length: int = 10_000) -> float:
    from seqtool.core.restore import restore

    torch.set_num_threads(1)  # one sequence: matrix-vector products, too small to share out
    r = restore(run_dir, task="lm", device="cpu")
    r.task.generate(r.model, "the ", 50, seed=0, device=r.device)  # warm-up
    t0 = time.perf_counter()
    r.task.generate(r.model, "", length, seed=0, device=r.device)
    return length / (time.perf_counter() - t0)


def print_report(rows: dict[str, list[dict]], peaks: dict, sample: list[float], cores: int) -> None:
    """rows: every round's measurement of each row (alternated rounds)."""
    from bench.rounds import ratio, spread

    rounds = len(rows["one"])
    med = lambda key, field: statistics.median(r[field] for r in rows[key])  # noqa: E731
    print(f"\nSpeed on this machine ({cores} cores), {rounds} alternated rounds, medians (min-max); matmul peak (2048 x 2048 torch.mm, "
          "median): " + ", ".join(f"{p:,.0f} GFLOP/s {d} at {t} thread{'s' * (t > 1)}" for (t, d), p in peaks.items()))
    print("FLOPs per token are counted analytically (recurrent + output matmuls, training = 3 x forward)")
    print(f"{'row':<44}{'tokens/s':>28}{'MFLOP/token':>13}{'GFLOP/s':>9}{'of peak':>9}")
    for key, measured in rows.items():
        r = measured[0]
        peak = peaks[(r["threads"], r["precision"])] * r["processes"]
        print(f"{r['name']:<44}{spread([m['tokens_per_s'] for m in measured]):>28}{r['train_flops_per_token'] / 1e6:>13.2f}"
              f"{med(key, 'gflops'):>9.1f}{med(key, 'gflops') / peak:>9.0%}")
    print()
    for key in ("h512_one", "h512"):
        if key in rows:
            r = rows[key][0]
            print(f"fused GRU, hidden 512, training, {r['threads']} thread{'s' * (r['threads'] > 1)}: "
                  f"{med(key, 'gflops') / peaks[(r['threads'], 'fp32')]:.0%} of the measured fp32 matmul peak (target >= 50%)")
    tokens = {key: [m["tokens_per_s"] for m in measured] for key, measured in rows.items()}
    scaling = ratio(tokens["ddp"], tokens["one"])
    print(f"DDP scaling, 2 processes x 1 thread vs 1 x 1, same rows per process, median of per-round ratios: "
          f"{spread(scaling, '.2f')} (target >= 1.7x)")
    share_one, share_ddp = med("one", "cpu_share"), med("ddp", "cpu_share")
    print(f"  CPU time each process got (rank 0, median): {share_one:.0%} of a core alone, {share_ddp:.0%} in DDP")
    if "compile" in rows:
        print(f"--compile / eager, default spec, 1 thread: {spread(ratio(tokens['compile'], tokens['one']), '.2f')}")
    print(f"bf16 autocast / fp32, default spec, 1 thread: {spread(ratio(tokens['bf16'], tokens['one']), '.2f')}")
    print(f"sampling 10,000 characters (one sequence, in-process, 1 thread), {len(sample)} runs: {spread(sample)} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 30)))
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)),
                        help="alternated rounds: every row runs once per round (at least 3)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the --compile row (its compilation takes minutes on CPU)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    cores = os.cpu_count() or 1
    budget = args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        contenders = [("one", "default spec, 1 thread", dict(threads=1)),
                      ("ddp", "default spec, DDP 2 processes x 1 thread", dict(threads=1, nproc=2, batch=128)),
                      ("bf16", "default spec, bf16 autocast, 1 thread", dict(threads=1, precision="bf16")),
                      ("h512_one", "hidden 512, 1 thread", dict(threads=1, hidden=512))]
        if cores > 1:
            contenders += [("default", f"default spec, {cores} threads", dict(threads=cores)),
                           ("h512", f"hidden 512, {cores} threads", dict(threads=cores, hidden=512))]
        if not args.skip_compile:
            contenders.append(("compile", "default spec, --compile, 1 thread", dict(threads=1, compile=True)))
        kinds = [(t, "fp32") for t in sorted({1, cores})] + [(1, "bf16")]
        peak_runs = {k: [matmul_peak(k[0], DTYPES[k[1]])] for k in kinds}
        print(f"training each row for {budget:.0f} s, {args.rounds} alternated rounds ...", file=sys.stderr, flush=True)
        rows: dict[str, list[dict]] = {key: [] for key, _, _ in contenders}
        for _ in range(max(args.rounds, 3)):  # a busy spell slows one round of every row, not one row
            for key, title, kw in contenders:
                rows[key].append(run_row(title, budget, tmp / key, **kw))
                print(f"  {title}: {rows[key][-1]['tokens_per_s']:,.0f} tokens/s", file=sys.stderr, flush=True)
            for k in kinds:
                peak_runs[k].append(matmul_peak(k[0], DTYPES[k[1]]))
        sample = [sampling_speed(rows["one"][-1]["run"]) for _ in range(3)]
        peaks = {k: statistics.median(v) for k, v in peak_runs.items()}

    print_report(rows, peaks, sample, cores)


if __name__ == "__main__":
    main()
