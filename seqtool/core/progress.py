"""One reporter for long work: a rich progress bar on a terminal, plain lines when piped, nothing
when quiet. Everything goes to stderr; stdout is for data."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._progress = None
        self._task = None

    def start(self, description: str, total: float = 1.0) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, status="")

    def update(self, fraction: float, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=min(fraction, 1.0), status=status)

    def log(self, message: str) -> None:
        """A line that stays (an epoch summary): above the bar when live, plain otherwise."""
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None



class Throttle:
    """Refreshes a live display at most every `every` seconds: each refresh reads the loss back from
    the device (a host sync), so it must not happen every step."""

    def __init__(self, reporter: Reporter, items: float, now: float, every: float = 0.25):
        self.reporter, self.every = reporter, every
        self.last, self.items, self.time = 0.0, items, now

    def tick(self, now: float, items: float, fraction, status) -> None:
        """`fraction()` and `status(rate)` give the bar's position and text (called only when the display refreshes)."""
        if not self.reporter.live or now - self.last <= self.every:
            return
        rate = (items - self.items) / max(now - self.time, 1e-9)
        self.items, self.time, self.last = items, now, now
        self.reporter.update(fraction(), status(rate))
