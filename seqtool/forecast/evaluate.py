"""`seqtool eval` on a forecasting run: its held-out forecast metrics again, or those on another
series with the same columns, forecast with the run's model and its fitted transform."""

from __future__ import annotations

import copy

from seqtool.core.errors import SeqtoolError
from seqtool.core.restore import restore
from seqtool.forecast.task import ForecastTask


def evaluate_checkpoint(checkpoint: str | None, data: str | None = None, device: str = "auto") -> dict:
    """The k-step and recursive metrics table (as the run's report has it) on the run's own series
    split as in training, or on DATA split by the run's --n-train (else its first 80%)."""
    r = restore(checkpoint, task="forecast", device=device)
    spec = copy.deepcopy(r.spec)
    if data is not None:
        spec.data.corpus, spec.forecast.synthetic, spec.forecast.horizon = data, None, 0
    elif spec.data.corpus == "-":
        raise SeqtoolError("this run was trained from standard input; pass the series to score as DATA")
    fresh = ForecastTask.from_spec(spec)  # reads and splits the series as training did
    if data is None and fresh.task_state() != r.task.task_state():
        raise SeqtoolError(f"the series {spec.data.corpus or spec.forecast.synthetic} changed since training (its fitted transform differs)")
    task = ForecastTask(spec, fresh.series, r.task.transform, fresh.n_train, r.task.season, r.task.context)
    task.skipped_k = fresh.skipped_k
    results, _ = task.forecast_results(r.model, r.device)
    return {"checkpoint": str(r.path), "source": "standard input" if data == "-" else (data or spec.data.corpus or spec.forecast.synthetic),
            **results}
