"""Throughput of the scratch stack against torch's fused layers, forward + backward.

Prints tokens/s (batch * steps per second) for RNN, GRU and LSTM and the fused/scratch ratio. The
target is a ratio below 5: scratch pays Python overhead per step, nothing more. The two
implementations are timed in alternated rounds (fused, scratch, fused, scratch, ...); the table
gives the median tokens/s with min-max over the rounds, and the median of the per-round ratios.

    python bench/bench_stack.py [--hidden 256 --batch 32 --steps 35 --layers 1 --device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # noqa: E402  # runnable from a checkout, installed or not
from bench.rounds import alternate, ratio, spread  # noqa: E402
from seqtool.nn.stack import RecurrentStack  # noqa: E402


def tokens_per_second(stack: RecurrentStack, x: torch.Tensor, warmup: int, min_seconds: float) -> float:
    """Forward + backward (parameter gradients included) on x, timed after warm-up iterations."""

    def step() -> None:
        out, _ = stack(x)
        out.sum().backward()
        stack.zero_grad(set_to_none=True)

    def sync() -> None:
        if x.is_cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    iters, start = 0, time.perf_counter()
    while True:
        step()
        iters += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and iters >= 3:
            break
    return iters * x.shape[0] * x.shape[1] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds of each (at least 3)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    x = torch.randn(args.steps, args.batch, args.hidden, device=device)
    print(
        f"hidden {args.hidden}, batch {args.batch}, steps {args.steps}, layers {args.layers}, "
        f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(f"{args.rounds} alternated rounds of >= {args.seconds:g} s each; median (min-max)")
    print(f"{'cell':<6}{'fused tok/s':>26}{'scratch tok/s':>26}{'fused/scratch':>22}")
    for cell in ("rnn", "gru", "lstm"):
        stacks = {
            impl: RecurrentStack(args.hidden, args.hidden, cell, num_layers=args.layers, impl=impl).to(device)
            for impl in ("fused", "scratch")
        }
        for stack in stacks.values():
            tokens_per_second(stack, x, args.warmup, 0.0)  # warm-up outside the timed rounds
        rates = alternate({impl: (lambda s=stack: tokens_per_second(s, x, 1, args.seconds)) for impl, stack in stacks.items()}, args.rounds)
        ratios = ratio(rates["fused"], rates["scratch"])
        print(f"{cell:<6}{spread(rates['fused']):>26}{spread(rates['scratch']):>26}{spread(ratios, '.2f'):>22}")

if __name__ == "__main__":
    main()
