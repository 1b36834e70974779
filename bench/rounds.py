"""Fair comparisons for the benchmarks: contenders run in alternated rounds (A B A B ...) with the
same threads and budget, so a machine that gets busier or quieter affects each alike; results are
medians with their spread, and ratios are medians of per-round ratios. Never the best run."""

from __future__ import annotations

import statistics
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
