"""Many series in one table, as forecasters keep them: the long layout (one row per series and time:
`unique_id, ds, y`, as in statsforecast and darts) or the wide one of the M4 files (one row per
series: an id, then its values; shorter series end in empty cells).

Time stamps are integer positions (1..n, as in M4) or ISO dates/datetimes ("2020-01-05",
"2020-01", "2020-01-05 13:00"). Rows may come in any order: each series is sorted by time. A
duplicate (id, time), a missing or non-numeric value, a gap in a series' time steps and a missing
column are refused, naming the line.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.forecast.timeaxis import TimeAxis, infer_axis, kind_words, parses, step_words

csv.field_size_limit(1 << 30)
DEFAULT_ID = "unique_id"


@dataclass
class Panel:
    """Series of possibly different lengths: values[i] (float64, oldest first) belongs to ids[i],
    and its last time stamp is last[i]."""

    ids: list[str]
    values: list[np.ndarray]
    last: list = field(default_factory=list)
    axis: TimeAxis = field(default_factory=TimeAxis)
    source: str = ""
    filled: int = 0  # values filled by --fill (missing cells and missing time steps)
    gaps_filled: int = 0  # of those, missing time steps

    def __len__(self) -> int:
        return len(self.ids)

    def future(self, i: int, steps: int) -> list[str]:
        """The time stamps of the `steps` values after series i."""
        return [self.axis.format(self.axis.advance(self.last[i], s)) for s in range(1, steps + 1)]

    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)


def _column(header: list[str], name: str, flag: str, source: str) -> int:
    """A column's index by name (or 1-based position)."""
    names = [h.strip() for h in header]
    if name in names:
        return names.index(name)
    if name.isdigit() and 1 <= int(name) <= len(names):
        return int(name) - 1
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise SeqtoolError(f"{source}: no column {name!r} for {flag} (the header has: {shown})")


def _number(text: str, source: str, line: int, series: str, fill: str = "none") -> float:
    """A value; with --fill a missing one (empty, NA, NaN) is nan, filled once the series is read."""
    from seqtool.forecast.series import MISSING

    if fill != "none" and text.strip().strip('"').lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        if not text.strip():
            raise SeqtoolError(f"{source}, line {line}: series {series} has a missing value; pass --fill ffill or --fill "
                               "interpolate to fill missing values") from None
        raise SeqtoolError(f"{source}, line {line}: {text.strip()[:40]!r} is not a number (series {series})") from None
    if not math.isfinite(value):
        raise SeqtoolError(f"{source}, line {line}: series {series} has a missing or infinite value ({text.strip()})")
    return value


def read_long(text: str, source: str, id_column: str, time_column: str, value_column: str, fill: str = "none") -> Panel:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise SeqtoolError(f"{source} is empty")
    cols = [_column(header, name, flag, source) for name, flag in
            ((id_column, "--id-column"), (time_column, "--time-column"), (value_column, "--column"))]
    rows: dict[str, list] = {}
    stamps: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(cols):
            raise SeqtoolError(f"{source}, line {line}: {len(row)} fields, the header has {len(header)}")
        key = row[cols[0]].strip()
        rows.setdefault(key, []).append((row[cols[1]].strip(), _number(row[cols[2]], source, line, key, fill), line))
        if len(stamps) < 2000:
            stamps.append(row[cols[1]].strip())
    if not rows:
        raise SeqtoolError(f"{source} has a header but no rows")
    axis = infer_axis(stamps, source)
    panel = Panel([], [], [], axis, source)
    for key, items in rows.items():
        try:
            parsed = sorted((axis.parse(t), v, line) for t, v, line in items)
        except ValueError:
            bad = next((t, line) for t, _, line in items if not parses(axis, t))
            raise SeqtoolError(f"{source}, line {bad[1]}: time {bad[0]!r} is not {kind_words(axis)} like the others") from None
        values = [parsed[0][1]]
        for (a, _, la), (b, v, lb) in zip(parsed, parsed[1:]):
            if a == b:
                raise SeqtoolError(f"{source}, lines {min(la, lb)} and {max(la, lb)}: series {key} has two rows for {axis.format(a)}")
            expected = axis.advance(a, 1)
            while fill != "none" and expected < b:  # a missing time step, filled below
                values.append(math.nan)
                panel.gaps_filled += 1
                expected = axis.advance(expected, 1)
            if expected != b:
                raise SeqtoolError(f"{source}, line {lb}: series {key} has a gap: {axis.format(b)} follows {axis.format(a)} "
                                   f"(the step is {step_words(axis)}); pass --fill ffill or --fill interpolate to fill missing steps"
                                   if b > expected and fill == "none" else
                                   f"{source}, line {lb}: series {key}: {axis.format(b)} is not a whole number of steps "
                                   f"({step_words(axis)}) after {axis.format(a)}")
            values.append(v)
        panel.ids.append(key)
        panel.values.append(_filled(np.array(values, dtype=np.float64), fill, panel, source, key))
        panel.last.append(parsed[-1][0])
    return panel


def _filled(values: np.ndarray, fill: str, panel: Panel, source: str, key: str) -> np.ndarray:
    """The series with its missing values (nan) filled as --fill says, counted in panel.filled."""
    gaps = np.isnan(values)
    if not gaps.any():
        return values
    if gaps.all():
        raise SeqtoolError(f"{source}: series {key}: every value is missing")
    from seqtool.forecast.series import fill_missing

    panel.filled += int(gaps.sum())
    return np.array(fill_missing([None if g else float(v) for v, g in zip(values, gaps)], fill), dtype=np.float64)


def read_wide(text: str, source: str, id_column: str | None, fill: str = "none") -> Panel:
    """One row per series: the id column (the first unless the header names --id-column), then the
    values in time order."""
    reader = csv.reader(io.StringIO(text))
    first = next(reader, None)
    if not first:
        raise SeqtoolError(f"{source} is empty")
    explicit = id_column and (id_column != DEFAULT_ID or DEFAULT_ID in [h.strip() for h in first])
    at = _column(first, id_column, "--id-column", source) if explicit else 0
    has_header = not _is_number(first[at + 1] if len(first) > at + 1 else "")
    rows = reader if has_header else [first, *reader]
    panel = Panel([], [], [], TimeAxis("position"), source)
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2 if has_header else 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        key = row[at].strip()
        cells = [c for i, c in enumerate(row) if i != at]
        while cells and not cells[-1].strip():
            cells.pop()
        if key in seen:
            raise SeqtoolError(f"{source}, lines {seen[key]} and {line}: series {key} appears twice")
        seen[key] = line
        if not cells:
            raise SeqtoolError(f"{source}, line {line}: series {key} has no values")
        panel.ids.append(key)
        panel.values.append(_filled(_numbers(cells, source, line, key, fill), fill, panel, source, key))
        panel.last.append(len(cells))
    if not panel.ids:
        raise SeqtoolError(f"{source} has no series")
    return panel


def _numbers(cells: list[str], source: str, line: int, series: str, fill: str = "none") -> np.ndarray:
    """A row of values; numpy parses a clean row at once, a bad one is named cell by cell."""
    try:
        values = np.array(cells, dtype=np.float64)
        if np.isfinite(values).all():
            return values
    except ValueError:
        pass
    return np.array([_number(c, source, line, series, fill) for c in cells], dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_panel(path: str, wide: bool, id_column: str | None, time_column: str | None, value_column: str | None,
               encoding: str = "utf-8", errors: str = "strict", fill: str = "none") -> Panel:
    """The panel in a file (or '-' for stdin, or a catalog name), long unless `wide`."""
    from seqtool.data.corpora import read_text

    text = read_text(path, encoding, errors)
    source = "standard input" if path == "-" else path
    if wide:
        if time_column or value_column:
            raise UsageError("--wide reads one row per series (an id, then the values): --time-column and --column do not apply")
        return read_wide(text, source, id_column, fill)
    return read_long(text, source, id_column or DEFAULT_ID, time_column or "ds", value_column or "y", fill)


def claims(corpus: str | None, target: str | None) -> bool:
    """Data given with no --task is a panel when its header names an id column (and no target side is given)."""
    return target is None and looks_like_panel(corpus)


def looks_like_panel(path: str | None, id_column: str = "unique_id") -> bool:
    """Whether a file's header names an id column (the long layout of many series)."""
    from seqtool.data.corpora import peek_header

    header = peek_header(path) if path and path != "-" else None
    return bool(header) and id_column in [h.strip().strip('"') for h in header.split(",")]


def long_csv(rows: list[tuple[str, list[str], np.ndarray, dict]], levels: list[int]) -> str:
    """Forecasts in the long layout: unique_id, ds, forecast (and lo-L, hi-L), one series' rows in horizon order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["unique_id", "ds", "forecast", *(f"{side}-{level}" for level in levels for side in ("lo", "hi"))])
    for key, times, forecast, bounds in rows:
        for j, (t, v) in enumerate(zip(times, forecast)):
            extra = [f"{bounds[level][side][j]:.6g}" for level in levels for side in (0, 1)]
            writer.writerow([key, t, f"{v:.6g}", *extra])
    return out.getvalue()
