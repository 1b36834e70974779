"""Using a trained forecasting run without training: `seqtool forecast --checkpoint RUN NEW.csv`
forecasts past the end of new data with the run's network, its fitted transform and the
combination and interval widths it chose (combination.json); `seqtool eval RUN [DATA]` reprints
its held-out evaluation, or scores another series the same way."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.restore import Restored, restore
from seqtool.forecast.combine import Combination
from seqtool.forecast.series import future_times
from seqtool.forecast.task import ForecastTask, horizon_rows, load_series


def combination_of(r: Restored) -> Combination:
    """The reported forecast's recipe, saved in the run beside its checkpoints."""
    return read_combination(r.path.parent.parent, Combination.from_state)


def read_combination(run_dir: Path, build):
    """build(state) of a run's combination.json (single series or panel)."""
    path = run_dir / "combination.json"
    try:
        return build(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SeqtoolError(f"{path} is missing: the run did not finish its report; resume it with seqtool train --resume") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SeqtoolError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None


def _series_task(r: Restored, data: str | None, horizon: int = 0):
    """The run's task on DATA (same columns), or on the run's own series, with the run's fitted transform."""
    spec = copy.deepcopy(r.spec)
    spec.forecast.horizon = horizon
    if data is not None:
        spec.data.corpus, spec.forecast.synthetic = data, None
    elif spec.data.corpus == "-":
        raise SeqtoolError("this run was trained from standard input; pass the series as DATA")
    return spec, load_series(spec)


def forecast_checkpoint(checkpoint: str | None, data: str | None, horizon: int, levels: list[int], device: str = "auto",
                        engine: str = "torch", onnx: str | None = None) -> list[dict]:
    """H values past the end of DATA (default: the run's series): time, forecast and lo-L/hi-L; the
    network runs in torch or, with engine onnxruntime, as the run's ONNX export."""
    from seqtool.core.export import restore_engine

    if horizon < 1:
        raise UsageError("--checkpoint forecasts past the end of the data: give --horizon H (H >= 1)")
    r = restore_engine(checkpoint, "forecast", device, engine, onnx)
    combination = combination_of(r)
    missing = [level for level in levels if level not in combination.widths]
    if missing:
        raise UsageError(f"--level {missing[0]}: the run calibrated intervals at {', '.join(map(str, sorted(combination.widths)))} only")
    spec, series = _series_task(r, data, horizon)
    task = r.task
    x = series.values.numpy()
    need = task.context if spec.model.cell == "mlp" else 1
    if len(x) < need + task.transform.lag:
        raise SeqtoolError(f"the series has {len(x)} values; this run's model needs at least {need + task.transform.lag} "
                           f"(it reads {need} values after {task.transform.lag} differences)")
    task.transform.box_cox(series.values)  # a Box-Cox or log run refuses non-positive data here, naming the value
    network = task.network_table(r.model, x, [len(x) - 1], horizon)
    forecast = combination.table(network, x, [len(x) - 1], horizon)[0]
    if not np.isfinite(forecast).all():
        raise SeqtoolError("the forecast is not finite on this series (values far outside what the run was trained on?)")
    return horizon_rows(future_times(series.times, horizon), forecast, combination, levels)


def evaluate_checkpoint(checkpoint: str | None, data: str | None = None, device: str = "auto") -> dict:
    """The k-step table (as the run's report has it) on the run's own series split as in training,
    or on DATA split by the run's --n-train (else its first 80%), with the run's transform and combination."""
    r = restore(checkpoint, task="forecast", device=device)
    spec = copy.deepcopy(r.spec)
    if data is not None:
        spec.data.corpus, spec.forecast.synthetic, spec.forecast.horizon = data, None, 0
    elif spec.data.corpus == "-":
        raise SeqtoolError("this run was trained from standard input; pass the series to score as DATA")
    fresh = ForecastTask.from_spec(spec)  # reads and splits the series as training did
    if data is None and fresh.task_state()["transform"] != r.task.task_state()["transform"]:
        raise SeqtoolError(f"the series {spec.data.corpus or spec.forecast.synthetic} changed since training (its fitted transform differs)")
    task = ForecastTask(spec, fresh.series, r.task.transform, fresh.n_train, r.task.season, r.task.context, r.task.n_val, r.task.chosen)
    task.skipped_k = fresh.skipped_k
    results, _ = task.forecast_results(r.model, r.device, combination_of(r))
    source = "standard input" if data == "-" else (data or spec.data.corpus or spec.forecast.synthetic)
    return {"checkpoint": str(r.path), "source": source, **results}



#: what `seqtool forecast --checkpoint` takes; every other option is the run's
CHECKPOINT_FLAGS = {"forecast.horizon", "forecast.intervals", "train.device", "output.out"}


def forecast_with_run(checkpoint: str, data: str | None, flags: dict, engine: str = "torch", onnx: str | None = None) -> str | None:
    """`seqtool forecast --checkpoint RUN [DATA] --horizon H [--level L] [--out FILE]`: the CSV text
    (None when it was written to --out); a panel run forecasts every series of DATA (default: its own)."""
    from pathlib import Path

    from seqtool.core.run import atomic_write_text
    from seqtool.core.spec import OPTIONS
    from seqtool.forecast.report import horizon_csv

    extra = sorted(d for d, v in flags.items() if v is not None and d not in CHECKPOINT_FLAGS)
    if extra:
        raise UsageError(f"{OPTIONS[extra[0]].flag} does not apply with --checkpoint (the run's own settings are used)")
    levels = flags["forecast.intervals"]
    levels = [int(v) for v in levels.split(",")] if isinstance(levels, str) else list(levels or [])
    from seqtool.core.restore import checkpoint_task

    horizon, device = flags["forecast.horizon"] or 0, flags["train.device"] or "auto"
    if checkpoint_task(checkpoint) == "panel":
        from seqtool.forecast import many

        text = many.forecast_checkpoint(checkpoint, data, horizon, levels, device, engine, onnx)
    else:
        text = horizon_csv(forecast_checkpoint(checkpoint, data, horizon, levels, device, engine, onnx))
    if flags["output.out"]:
        atomic_write_text(Path(flags["output.out"]), text)
        return None
    return text


def eval_command(checkpoint: str | None, data: str | None, *, device: str = "auto", as_json: bool = False) -> str:
    """What `seqtool eval` prints for a forecasting run: the k-step table, or JSON."""
    from seqtool.forecast.report import text_table

    result = evaluate_checkpoint(checkpoint, data, device)
    return (json.dumps(result) if as_json else text_table(result)) + "\n"
