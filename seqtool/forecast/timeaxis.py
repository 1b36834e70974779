"""Time stamps and their spacing: integer positions, or ISO dates / months / datetimes stepped by
months or seconds. Panels and single series share it to find gaps (a missing month, week, hour...)
and to continue the axis past the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from seqtool.core.errors import SeqtoolError


@dataclass
class TimeAxis:
    """How time stamps are written and stepped: integer positions (spaced by `step`), or dates
    spaced by a number of months or of seconds."""

    kind: str = "position"  # position | month | date | datetime
    months: int = 0  # step in months (month-spaced dates)
    seconds: int = 0  # step in seconds (other dates)
    step: int = 1  # step between integer positions

    def parse(self, text: str):
        return int(text) if self.kind == "position" else parse_date(text)

    def format(self, stamp) -> str:
        if self.kind == "position":
            return str(stamp)
        if self.kind == "month":
            return stamp.strftime("%Y-%m")
        return stamp.date().isoformat() if self.kind == "date" else stamp.isoformat(sep=" ")

    def advance(self, stamp, steps: int):
        if self.kind == "position":
            return stamp + steps * self.step
        if self.months:
            months = stamp.year * 12 + stamp.month - 1 + steps * self.months
            return stamp.replace(year=months // 12, month=months % 12 + 1)
        return stamp + timedelta(seconds=self.seconds * steps)

    def season(self) -> int:
        """The M4 competition's seasonal period for this spacing: 12 monthly, 4 quarterly, 24 hourly,
        1 otherwise (yearly, weekly, daily, positions)."""
        if self.months:
            return {1: 12, 3: 4}.get(self.months, 1)
        return 24 if self.seconds == 3600 else 1


def parse_date(text: str) -> datetime:
    text = text.strip()
    if len(text) == 7 and text[4] == "-":  # 2020-01
        text += "-01"
    return datetime.fromisoformat(text)


def parses(axis: TimeAxis, text: str) -> bool:
    try:
        axis.parse(text)
        return True
    except ValueError:
        return False


def kind_words(axis: TimeAxis) -> str:
    return "an integer position" if axis.kind == "position" else "a date"


def step_words(axis: TimeAxis) -> str:
    if axis.kind == "position":
        return str(axis.step)
    if axis.months:
        return f"{axis.months} month{'s' * (axis.months > 1)}"
    if axis.seconds % 86400 == 0:
        days = axis.seconds // 86400
        return f"{days} day{'s' * (days > 1)}"
    if axis.seconds % 3600 == 0:
        hours = axis.seconds // 3600
        return f"{hours} hour{'s' * (hours > 1)}"
    return f"{axis.seconds} seconds"


def infer_axis(stamps: list[str], source: str) -> TimeAxis:
    """Positions when the stamps are integers; else dates, stepped by the commonest spacing of
    consecutive distinct stamps (months when they fall on the same day of the month)."""
    if all(s.lstrip("-").isdigit() for s in stamps):
        return TimeAxis("position")
    try:
        dates = sorted(set(parse_date(s) for s in stamps))
    except ValueError:
        bad = next(s for s in stamps if not parses(TimeAxis("date"), s))
        raise SeqtoolError(f"{source}: time {bad!r} is neither an integer position nor an ISO date") from None
    kind = "month" if all(len(s) == 7 for s in stamps) else ("date" if all(d.hour == d.minute == d.second == 0 for d in dates) else "datetime")
    if len(dates) < 2:
        return TimeAxis(kind, months=1 if kind == "month" else 0, seconds=86400)
    if all(d.day == dates[0].day for d in dates) and all(d.time() == dates[0].time() for d in dates):
        months = Counter((b.year * 12 + b.month) - (a.year * 12 + a.month) for a, b in zip(dates, dates[1:])).most_common(1)[0][0]
        if months >= 1:
            return TimeAxis("month" if kind == "month" else kind, months=months)
    seconds = Counter(int((b - a).total_seconds()) for a, b in zip(dates, dates[1:])).most_common(1)[0][0]
    return TimeAxis(kind, seconds=seconds)


@dataclass
class Gap:
    """`missing` steps are missing before row `index` (0-based), whose stamp is `stamp`; the row
    before it is `previous`; the first missing stamp is `expected`."""

    index: int
    missing: int
    stamp: str
    previous: str
    expected: str


def regular_axis(stamps: list[str]) -> TimeAxis | None:
    """The axis of a single series' time labels when they are all integers or all ISO dates (then
    gaps can be found); None for anything else (labels such as '1-01' are taken as they come)."""
    cleaned = [s.strip() for s in stamps]
    if len(cleaned) < 2:
        return None
    if all(s.lstrip("+-").isdigit() for s in cleaned):
        ints = [int(s) for s in cleaned]
        step = Counter(b - a for a, b in zip(ints, ints[1:])).most_common(1)[0][0]
        return TimeAxis("position", step=step) if step >= 1 else None
    if not all(len(s) >= 7 and s[:4].isdigit() and s[4] == "-" for s in cleaned):
        return None
    try:
        axis = infer_axis(cleaned, "")
    except SeqtoolError:
        return None
    return axis if axis.months or axis.seconds > 0 else None


def find_gaps(stamps: list[str], axis: TimeAxis) -> tuple[list[Gap], list[int]]:
    """Where whole steps are missing, and the rows whose stamp is not a whole number of steps
    after the previous one (a repeat, a step back, an odd spacing)."""
    parsed = [axis.parse(s) for s in stamps]
    gaps, odd = [], []
    for i in range(1, len(parsed)):
        a, b = parsed[i - 1], parsed[i]
        expected, missing = axis.advance(a, 1), 0
        while expected < b and missing < 100_000:
            expected, missing = axis.advance(expected, 1), missing + 1
        if expected != b:
            odd.append(i)
        elif missing:
            gaps.append(Gap(i, missing, stamps[i].strip(), stamps[i - 1].strip(), axis.format(axis.advance(a, 1))))
    return gaps, odd
