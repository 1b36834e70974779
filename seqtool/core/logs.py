"""Where a run's per-epoch metrics go besides metrics.jsonl (`--log tensorboard,csv`): TensorBoard
event files in RUN/tensorboard/ (written with torch's SummaryWriter, so TensorBoard itself stays
an optional extra) and a flat RUN/metrics.csv, remade from metrics.jsonl after every epoch so a
resumed run's CSV never holds the epochs its resume dropped."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from seqtool.core.errors import UsageError

SINKS = ("tensorboard", "csv")


def check_sinks(where: str, value: list) -> None:
    unknown = [v for v in value if v not in SINKS]
    if unknown:
        raise UsageError(f"{where}: {unknown[0]!r} is not one of {', '.join(SINKS)}")


class MetricSinks:
    def __init__(self, run, kinds: list[str], first_step: int = 0):
        self.run, self.kinds, self.writer = run, list(kinds), None
        if "tensorboard" in self.kinds:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--log tensorboard needs the tensorboard package: pip install 'seqtool[tensorboard]'") from None
            # purge_step: a resumed run replaces what the dropped epochs had logged after its checkpoint
            self.writer = SummaryWriter(log_dir=str(Path(run.path) / "tensorboard"), purge_step=first_step or None)

    def write(self, row: dict) -> None:
        if self.writer is not None:
            step = int(row.get("step", row.get("epoch", 0)))
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if "csv" in self.kinds:
            from seqtool.core.run import atomic_write_text

            atomic_write_text(Path(self.run.path) / "metrics.csv", metrics_csv(self.run.read_metrics()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def metrics_csv(rows: list[dict]) -> str:
    """One row per epoch; the columns are every key any row has, in first-seen order (empty where absent)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: v for k, v in row.items() if not isinstance(v, (list, dict))})
    return out.getvalue()
