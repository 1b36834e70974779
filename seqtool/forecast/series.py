"""Numeric series for forecasting: parsing CSV or one-number-per-line text, the synthetic sine,
gap filling, windows of tau values and a scaler fitted on the training part only.

Values are kept as a float64 tensor with one label per observation (the time column, or the
1-based position), so forecasts can be printed against a time axis that continues the input's.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

import torch

from seqtool.core.errors import SeqtoolError, UsageError

FILLS = ("none", "ffill", "interpolate")
SYNTHETIC = ("sine",)
#: cells read as a missing value (case-insensitive); anything else that is not a number is an error
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})


@dataclass
class Series:
    values: torch.Tensor  # (n,) float64, original units
    times: list[str]  # one label per value
    name: str  # column name (or 'value' / 'sine')
    time_name: str = "time"
    filled: int = 0  # how many missing values were filled
    gaps_filled: int = 0  # of those, how many were missing time steps (rows absent from the input)

    def __len__(self) -> int:
        return len(self.values)


def synthetic_sine(length: int = 1000, noise: float = 0.2, seed: int = 0) -> Series:
    """The classic experiment: x_t = sin(0.01 t) + N(0, noise^2) for t = 1..length (noise is the std)."""
    if length < 1:
        raise UsageError(f"--length must be > 0, got {length}")
    if noise < 0 or not math.isfinite(noise):
        raise UsageError(f"--noise must be a finite number >= 0, got {noise}")
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(1, length + 1, dtype=torch.float64)
    x = torch.sin(0.01 * t) + noise * torch.randn(length, generator=gen, dtype=torch.float64)
    return Series(x, [str(i) for i in range(1, length + 1)], "sine")


def _number(cell: str) -> float | None:
    """A float, None for a missing marker, or raise ValueError for anything else."""
    s = cell.strip().strip('"').strip()
    if s.lower() in MISSING:
        return None
    value = float(s)
    if not math.isfinite(value):
        raise ValueError(s)
    return value


def _is_number(cell: str) -> bool:
    try:
        return _number(cell) is not None
    except ValueError:
        return False


def _mostly_numbers(column: list[str]) -> bool:
    """Most of the non-missing cells are numbers (so one typo does not hide the column)."""
    present = [c for c in column if c.strip().strip('"').strip().lower() not in MISSING]
    return bool(present) and 2 * sum(map(_is_number, present)) > len(present)


def _pick_column(header: list[str] | None, rows: list[list[str]], column: str | None, what: str) -> int:
    """Resolve --column/--time-column: a header name, else a 1-based position."""
    width = max(len(r) for r in rows)
    if column is None:
        raise AssertionError("caller handles the default")
    if header is not None and column in header:
        return header.index(column)
    if column.isdigit() and 1 <= int(column) <= width:
        return int(column) - 1
    names = f"; columns: {', '.join(header)}" if header else f" (no header; use a position 1..{width})"
    raise UsageError(f"{what} {column!r} not found{names}")


def parse_series(
    text: str,
    column: str | None = None,
    time_column: str | None = None,
    fill: str = "none",
    source: str = "input",
) -> Series:
    """Read a series from CSV text or one number per line.

    A header is recognised when the first row has a non-number in a column that is otherwise
    numeric. Default value column: the last numeric one; default time column: the first column,
    when there is more than one and it is not the value column; else positions 1..n.
    Missing cells (empty, NA, NaN, null, ?) are an error unless `fill` is ffill or interpolate.
    """
    if fill not in FILLS:
        raise UsageError(f"--fill: {fill!r} is not one of {', '.join(FILLS)}")
    first_line = text.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = next((d for d in ",\t;" if d in first_line), ",")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]  # blank lines are skipped
    if not rows:
        raise SeqtoolError(f"{source}: no data (empty input)")
    first = rows[0][1]
    body = rows[1:]
    numeric_later = [any(_is_number(r[j]) for _, r in body if j < len(r)) for j in range(len(first))]
    has_header = any(not _is_number(c) and (numeric_later[j] or not body) and c.strip().strip('"').lower() not in MISSING
                     for j, c in enumerate(first))
    header = [c.strip() for c in first] if has_header else None
    data = body if has_header else rows
    if not data:
        raise SeqtoolError(f"{source}: no data rows after the header")
    cells = [r for _, r in data]
    width = max(len(r) for r in cells)

    if column is None:
        numeric = [j for j in range(width) if _mostly_numbers([r[j] for r in cells if j < len(r)])]
        if not numeric:
            raise SeqtoolError(f"{source}: no numeric column found; pick one with --column")
        col = numeric[-1]
    else:
        col = _pick_column(header, cells, column, "--column")
    if time_column is not None:
        tcol: int | None = _pick_column(header, cells, time_column, "--time-column")
        if tcol == col:
            raise UsageError("--time-column and --column name the same column")
    else:
        tcol = 0 if width > 1 and col != 0 else None

    values: list[float | None] = []
    for (line, r) in data:
        cell = r[col] if col < len(r) else ""
        try:
            values.append(_number(cell))
        except ValueError:
            name = header[col] if header else f"column {col + 1}"
            raise SeqtoolError(f"{source}: line {line}: {cell.strip()!r} in {name} is not a number") from None
    if tcol is not None:
        times = [(r[tcol] if tcol < len(r) else "").strip().strip('"') for _, r in data]
    else:
        times = [str(i) for i in range(1, len(data) + 1)]
    lines = [line for line, _ in data]
    inserted = 0
    if tcol is not None:
        values, times, lines, inserted = _missing_steps(values, times, lines, fill, source)
    missing = [lines[i] for i, v in enumerate(values) if v is None and lines[i] is not None]
    if missing and fill == "none":
        raise SeqtoolError(
            f"{source}: {len(missing)} missing value(s) (first on line {missing[0]}); "
            "pass --fill ffill or --fill interpolate to fill them"
        )
    if all(v is None for v in values):
        raise SeqtoolError(f"{source}: every value is missing")
    filled = fill_missing(values, fill) if missing or inserted else [float(v) for v in values]  # type: ignore[arg-type]
    name = header[col] if header else "value"
    time_name = header[tcol] if (header and tcol is not None) else "time"
    return Series(torch.tensor(filled, dtype=torch.float64), times, name, time_name, len(missing) + inserted, inserted)


def _missing_steps(values: list, times: list[str], lines: list, fill: str, source: str) -> tuple[list, list[str], list, int]:
    """Gaps in a time column of integers or ISO dates: refused, naming the line and the expected
    stamp, unless --fill is given, which inserts the missing steps as missing values. Day-spaced
    data are the exception: real daily files skip days (31 December in leap years), so without
    --fill their gaps are counted in the report and the rows taken as consecutive."""
    from seqtool.forecast.timeaxis import find_gaps, regular_axis, step_words

    axis = regular_axis(times)
    if axis is None:
        return values, times, lines, 0
    gaps, odd = find_gaps(times, axis)
    daily = axis.kind in ("date", "datetime") and axis.seconds == 86400
    if daily and fill == "none":
        return values, times, lines, 0
    if odd and not daily:
        i = odd[0]
        raise SeqtoolError(f"{source}: line {lines[i]}: time {times[i]} is not a whole number of steps ({step_words(axis)}) "
                           f"after {times[i - 1]}")
    if not gaps:
        return values, times, lines, 0
    if fill == "none":
        g = gaps[0]
        total = sum(g.missing for g in gaps)
        raise SeqtoolError(f"{source}: line {lines[g.index]}: {g.stamp} follows {g.previous}, {g.expected} expected (the step is "
                           f"{step_words(axis)}); {total} missing time step(s) in all; pass --fill ffill or --fill interpolate "
                           "to fill them")
    out_values, out_times, out_lines = [], [], []
    starts = {g.index: g for g in gaps}
    for i, (v, t, line) in enumerate(zip(values, times, lines)):
        if i in starts:
            stamp = axis.parse(times[i - 1])
            for _ in range(starts[i].missing):
                stamp = axis.advance(stamp, 1)
                out_values.append(None), out_times.append(_written_like(axis.format(stamp), times[i - 1])), out_lines.append(None)
        out_values.append(v), out_times.append(t), out_lines.append(line)
    return out_values, out_times, out_lines, sum(g.missing for g in gaps)


def _written_like(label: str, neighbour: str) -> str:
    """A generated stamp in the input's style ('2020-01-01T03:00' rather than '2020-01-01 03:00:00')."""
    if "T" in neighbour:
        label = label.replace(" ", "T")
    return label[: len(neighbour)] if len(neighbour) < len(label) else label


def fill_missing(values: list[float | None], fill: str) -> list[float]:
    """ffill: the previous observed value; interpolate: linear between the observed neighbours.
    Either way a leading gap takes the first observed value and a trailing gap the last."""
    known = [i for i, v in enumerate(values) if v is not None]
    if not known:
        raise SeqtoolError("every value is missing")
    out: list[float] = []
    for i, v in enumerate(values):
        if v is not None:
            out.append(v)
            continue
        prev = max((k for k in known if k < i), default=None)
        nxt = min((k for k in known if k > i), default=None)
        if prev is None:
            out.append(values[nxt])  # type: ignore[arg-type,index]
        elif nxt is None or fill == "ffill":
            out.append(values[prev])  # type: ignore[arg-type]
        else:
            a, b = values[prev], values[nxt]
            out.append(a + (b - a) * (i - prev) / (nxt - prev))  # type: ignore[operator]
    return out


def check_series(series: Series, need: int, what: str = "") -> None:
    """Refuse series that cannot be forecast: too short for the window + horizon, or constant."""
    n = len(series)
    if n < need:
        raise SeqtoolError(f"series too short: {n} value(s), need at least {need}{what}")
    if n and bool((series.values == series.values[0]).all()):
        raise SeqtoolError(f"series is constant (every value is {series.values[0].item():g}); nothing to forecast")


def windows(x: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive pairs: features[i] = x[i : i+tau], labels[i] = x[i+tau], for i = 0..n-tau-1."""
    if tau < 1:
        raise ValueError("tau must be >= 1")
    if len(x) <= tau:
        return x.new_zeros((0, tau)), x.new_zeros((0,))
    return x[:-1].unfold(0, tau, 1), x[tau:]


@dataclass
class Scaler:
    """Standardisation (x - mean) / std with statistics from the training part only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, train: torch.Tensor) -> "Scaler":
        if len(train) < 2:
            raise SeqtoolError("the training part needs at least 2 values")
        std = train.std(correction=0).item()
        if std == 0.0:
            raise SeqtoolError(f"the training part is constant ({train[0].item():g}); nothing to learn from")
        return cls(train.mean().item(), std)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std}


@dataclass
class Transform:
    """What the model sees: a Box-Cox transform (lambda 0 is the log; None: none), then differences
    at the given lags (seasonal and/or first), then standardisation, all fitted on the training part.
    z[i] belongs to x[i + lag], lag = sum(lags). Box-Cox turns swings that grow with the level into
    constant ones; differencing lets a model that only knows the training range follow a trend past it."""

    scaler: Scaler
    lam: float | None = None
    lags: tuple[int, ...] = ()

    @property
    def lag(self) -> int:
        return sum(self.lags)

    @property
    def name(self) -> str:
        return "none" if self.lam is None else "log" if self.lam == 0 else f"box-cox {self.lam:g}"

    @classmethod
    def fit(cls, train: torch.Tensor, lam: float | None = None, lags: tuple[int, ...] | list[int] = ()) -> "Transform":
        lags = tuple(int(l) for l in lags)
        if sum(lags) >= len(train) - 1:
            raise SeqtoolError(f"--difference {','.join(map(str, lags))} needs a training part longer than {sum(lags) + 1} values (it has {len(train)})")
        return cls(Scaler.fit(cls(Scaler(0.0, 1.0), lam, lags)._unscaled(train)), lam, lags)

    def coefficients(self) -> list[float]:
        """c of the differencing polynomial prod(1 - B^lag) = sum_i c_i B^i (c_0 = 1)."""
        poly = [1.0]
        for lag in self.lags:
            grown = poly + [0.0] * lag
            for i, c in enumerate(poly):
                grown[i + lag] -= c
            poly = grown
        return poly

    def box_cox(self, x: torch.Tensor) -> torch.Tensor:
        if self.lam is None:
            return x
        bad = (x <= 0).nonzero()
        if len(bad):
            i = int(bad[0])
            raise SeqtoolError(f"--transform {'log' if self.lam == 0 else 'box-cox'} needs positive values; value {i + 1} is {x[i].item():g}")
        return torch.log(x) if self.lam == 0 else (x ** self.lam - 1) / self.lam

    def inverse_box_cox(self, y: torch.Tensor) -> torch.Tensor:
        if self.lam is None:
            return y
        if self.lam == 0:
            return torch.exp(y)
        return (self.lam * y + 1).clamp_min(1e-12) ** (1 / self.lam)

    def _unscaled(self, x: torch.Tensor) -> torch.Tensor:
        b = self.box_cox(x)
        c, lag = self.coefficients(), self.lag
        return sum(ci * b[lag - i: len(b) - i] for i, ci in enumerate(c)) if lag else b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaler.transform(self._unscaled(x))

    def to_original(self, table: torch.Tensor, x: torch.Tensor, origins: list[int]) -> torch.Tensor:
        """Model-unit forecasts table[i, j] for x[origins[i] + j + 1] -> original units: undo the
        scaling, undo the differences (with values known at the origin, or forecast from it), undo
        the Box-Cox transform."""
        y = self.scaler.inverse(table.to(x.dtype))
        if self.lag:
            levels, c, o = self.box_cox(x), self.coefficients(), torch.tensor(origins)
            for j in range(y.shape[1]):
                for i in range(1, len(c)):
                    if c[i]:
                        earlier = levels[o + j + 1 - i] if i >= j + 1 else y[:, j - i]
                        y[:, j] = y[:, j] - c[i] * earlier
        return self.inverse_box_cox(y)

    def state(self) -> dict:
        return {"scaler": self.scaler.state(), "lambda": self.lam, "lags": list(self.lags)}

    @classmethod
    def from_state(cls, state: dict) -> "Transform":
        if "lags" not in state:  # written before Box-Cox and several differences: log and one lag
            return cls(Scaler(**state["scaler"]), 0.0 if state["log"] else None, (state["lag"],) if state["lag"] else ())
        return cls(Scaler(**state["scaler"]), state["lambda"], tuple(state["lags"]))


_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")


def _mode_step(steps: list) -> object:
    return Counter(steps).most_common(1)[0][0]


def future_times(times: list[str], count: int) -> list[str]:
    """Labels for `count` steps past the end, continuing the most common step of the time column:
    integers, numbers, YYYY-MM (months) and YYYY-MM-DD (days); otherwise positions n+1, n+2, ..."""
    n = len(times)
    tail = times[-min(n, 50):]
    if len(tail) >= 2:
        if all(_MONTH.match(t) for t in tail):
            months = [int(t[:4]) * 12 + int(t.split("-")[1]) - 1 for t in tail]
            step = _mode_step([b - a for a, b in zip(months, months[1:])])
            return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in (months[-1] + step * (i + 1) for i in range(count))]
        if all(_DAY.match(t) for t in tail):
            try:
                days = [date(*map(int, t.split("-"))) for t in tail]
            except ValueError:
                days = []
            if days:
                step = _mode_step([(b - a).days for a, b in zip(days, days[1:])])
                return [(days[-1] + timedelta(days=step * (i + 1))).isoformat() for i in range(count)]
        if all(re.fullmatch(r"[+-]?\d+", t) for t in tail):
            ints = [int(t) for t in tail]
            step = _mode_step([b - a for a, b in zip(ints, ints[1:])])
            return [str(ints[-1] + step * (i + 1)) for i in range(count)]
        if all(_is_number(t) for t in tail):
            nums = [float(t) for t in tail]
            step = _mode_step([round(b - a, 9) for a, b in zip(nums, nums[1:])])
            return [f"{nums[-1] + step * (i + 1):g}" for i in range(count)]
    return [str(n + i + 1) for i in range(count)]
