"""Fair comparisons for the benchmarks: contenders run in alternated rounds (A B A B ...) with the
same threads and budget, so a machine that gets busier or quieter affects each alike; results are
medians with their spread, and ratios are medians of per-round ratios. Never the best run."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any, Callable


def alternate(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Each contender's result per round, run as A B A B ... (`rounds` of each, at least 3)."""
    if rounds < 3:
        raise SystemExit("benchmarks run at least 3 alternated rounds of each contender")
    results: dict[str, list[Any]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            results[name].append(run())
    return results


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """'median (min-max)' of a contender's per-round values."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def ratio(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-round ratios (round i of one contender over round i of the other)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def baseline_env() -> dict | None:
    """BENCH_BASELINE=DIR (a checkout of an earlier commit): the 'before' contenders run its seqtool.
    `python -m` puts the working directory ahead of PYTHONPATH, so they run from the checkout (its
    PYTHONPATH as cwd), where catalog names need the mirror as an absolute path."""
    where = os.environ.get("BENCH_BASELINE")
    if not where:
        return None
    from seqtool.data.corpora import mirror_dirs

    mirror = next((d for d in mirror_dirs() if d.is_dir()), None)
    return {**os.environ, "PYTHONPATH": str(Path(where).resolve()), **({"SEQTOOL_MIRROR": str(mirror.resolve())} if mirror else {})}
