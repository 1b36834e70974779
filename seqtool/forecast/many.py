"""Many series, one global model (task "panel"): the M4 way of forecasting a table of series.

Every series keeps its last `horizon` values for validation. The network (seqtool/nn/
global_forecaster.py) trains on windows sampled across all series whose targets end before them,
each window normalised on its own; validation picks the checkpoint (OWA against Naive2), then
chooses the reported forecast (the network, or its mean with Theta) and calibrates the prediction
intervals: per step ahead, a quantile of the validation errors in units of each series' MASE scale.
The forecast reads each series' last window, validation included. Scoring on a test file is
`seqtool eval RUN --test TEST.csv` (evaluate_checkpoint below), with the M4 competition's metrics.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.task import Task
from seqtool.forecast import m4
from seqtool.forecast.combine import conformal_widths
from seqtool.forecast.panel import Panel, long_csv, read_panel
from seqtool.forecast.statistical import PANEL_HISTORY, STAT_MEAN, panel_forecasts
from seqtool.nn.global_forecaster import GlobalForecaster

EPOCH_BATCHES = 100  # an epoch is this many sampled batches (series are sampled, not swept)
REPORT_LEVELS = (80, 95)  # interval levels always calibrated (and scored in the report)
PREDICT_BATCH = 8192


def load_panel(spec, data: str | None = None) -> Panel:
    f, d = spec.forecast, spec.data
    corpus = data or d.corpus
    if not corpus:
        raise UsageError("no data: pass a CSV of many series (long: unique_id, ds, y; or --wide), '-' for stdin, or a catalog name")
    return read_panel(corpus, f.wide, f.id_column, f.time_column, f.column, d.encoding, d.encoding_errors, f.fill)


def windows(histories: list[np.ndarray], window: int) -> torch.Tensor:
    """The last `window` values of each history as a (n, window) float32 tensor; a shorter history
    is padded in front with its first value."""
    out = np.empty((len(histories), window), dtype=np.float32)
    for i, x in enumerate(histories):
        tail = x[-window:]
        out[i, : window - len(tail)] = tail[0]
        out[i, window - len(tail) :] = tail
    return torch.from_numpy(out)


class Combination:
    """The reported forecast: 'network' or 'network+theta' (their mean), with interval half-widths
    per level and step ahead in MASE-scale units."""

    def __init__(self, name: str, widths: dict[int, list[float]], validation: dict[str, float] | None = None):
        self.name, self.widths, self.validation = name, widths, validation or {}

    def forecast(self, network: np.ndarray, theta: np.ndarray | None) -> np.ndarray:
        return network if self.name == "network" else 0.5 * (network + theta)

    def bounds(self, forecast: np.ndarray, scales: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        half = scales[:, None] * np.asarray(self.widths[level])[None, :]
        return forecast - half, forecast + half

    def state(self) -> dict:
        return {"name": self.name, "widths": {str(k): v for k, v in self.widths.items()}, "validation": self.validation}

    @classmethod
    def from_state(cls, state: dict) -> "Combination":
        return cls(state["name"], {int(k): list(v) for k, v in state["widths"].items()}, state.get("validation"))


class PanelTask(Task):
    name = "panel"
    monitor = "val_owa"
    unit = "windows"

    def __init__(self, spec, panel: Panel | None, window: int, horizon: int, season: int):
        super().__init__(spec)
        self.panel, self.window, self.horizon, self.season = panel, window, horizon, season
        if panel is not None:
            self._prepare(panel)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec) -> "PanelTask":
        f = spec.forecast
        if spec.model.bidirectional:
            raise UsageError("--bidirectional cannot be used for forecasting: the backward direction would read the future")
        if f.horizon < 1:
            raise UsageError("panel forecasting needs --horizon H: the model forecasts H values of every series at once")
        panel = load_panel(spec)
        season = f.season or panel.axis.season()
        window = f.tau or max(4 * f.horizon, 2 * season)
        return cls(spec, panel, window, f.horizon, season)

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "PanelTask":
        return cls(spec, None, int(task_state["window"]), int(task_state["horizon"]), int(task_state["season"]))

    def task_state(self) -> dict:
        return {"window": self.window, "horizon": self.horizon, "season": self.season}

    def build_model(self) -> nn.Module:
        m, f = self.spec.model, self.spec.forecast
        model = GlobalForecaster(self.window, self.horizon, m.cell, m.hidden, m.layers, m.dropout, f.ensemble, m.impl)
        if m.cell != "mlp":
            for stack in model.stacks:
                stack.reset_parameters(orthogonal=m.init == "orthogonal", forget_bias=m.forget_bias if m.cell == "lstm" else None)
        return model

    def _prepare(self, panel: Panel) -> None:
        """Check the lengths; lay the series out right-aligned in one matrix, with the training windows' range."""
        h, lengths = self.horizon, panel.lengths()
        short = [panel.ids[i] for i in np.flatnonzero(lengths <= h)]
        if short:
            raise SeqtoolError(f"{len(short)} series have no more values than the horizon ({h}), so none can be held out to "
                               f"validate: {', '.join(short[:5])}{', ...' if len(short) > 5 else ''} (each needs at least {h + 1})")
        longest = int(lengths.max())
        self.width = self.window + longest  # column T = self.width is one past every series' last value
        self.values = windows(panel.values, self.width)
        self.starts = torch.as_tensor(self.width - lengths)
        history = self.spec.forecast.history
        low = self.starts + 1
        if history:
            low = torch.clamp(low, min=self.width - h - history * h)
        high = torch.full_like(low, self.width - 2 * h)  # the targets end before the validation part
        self.trainable = torch.nonzero(low <= high).squeeze(1)
        if len(self.trainable) == 0:
            raise SeqtoolError(f"no series is long enough to train on: a training window needs {2 * h + 1} values "
                               f"(the validation part of {h} and a window's {h} targets after at least one value)")
        self.low, self.span = low[self.trainable], (high - low + 1)[self.trainable]
        validation = [x[:-h] for x in panel.values]
        self.val_inputs = windows(validation, self.window)
        self.val_targets = np.stack([x[-h:] for x in panel.values])
        self.val_scales = m4.mase_scales(validation, self.season)
        self.val_naive2 = m4.naive2(validation, h, self.season)
        self.ref = (float(m4.smape(self.val_targets, self.val_naive2).mean()),
                    float(m4.mase(self.val_targets, self.val_naive2, self.val_scales).mean()))
        self._validation_histories = validation

    # ---- training ------------------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return EPOCH_BATCHES

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        batch = self.spec.train.batch
        offsets = torch.arange(-self.window, self.horizon)
        for _ in range(EPOCH_BATCHES):
            pick = torch.randint(len(self.trainable), (batch,), generator=generator)
            origin = self.low[pick] + (torch.rand(batch, generator=generator) * self.span[pick]).long()
            yield self.values[self.trainable[pick][:, None], origin[:, None] + offsets]

    def train_loss(self, model, batch, state, device):
        seg = batch.to(device, non_blocking=True)
        past, future = seg[:, : self.window], seg[:, self.window :]
        level, scale = GlobalForecaster.normaliser(past)
        predicted = model((past - level) / scale, members=True)  # (members, batch, horizon)
        return (predicted - (future - level) / scale).abs().mean(), seg.shape[0], None

    # ---- validation ---------------------------------------------------------------------------------
    def val_scores(self, forecast: np.ndarray) -> dict[str, float]:
        s = float(m4.smape(self.val_targets, forecast).mean())
        m = float(m4.mase(self.val_targets, forecast, self.val_scales).mean())
        return {"smape": s, "mase": m, "owa": m4.owa(s, m, *self.ref)}

    @torch.no_grad()
    def evaluate(self, model, device) -> dict[str, float]:
        scores = self.val_scores(predict(model, self.val_inputs, device))
        return {f"val_{k}": v for k, v in scores.items()}

    # ---- the report ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def choose(self, model, device) -> tuple[Combination, list[dict]]:
        """The reported forecast and its interval widths, chosen on validation; the validation table."""
        h, m = self.horizon, self.season
        network = predict(model, self.val_inputs, device)
        theta = m4.theta(self._validation_histories, h, m)
        candidates = {"network": network, "network+theta": 0.5 * (network + theta)}
        scores = {name: self.val_scores(f) for name, f in candidates.items()}
        name = min(scores, key=lambda k: scores[k]["owa"]) if self.spec.forecast.combine == "auto" else "network"
        errors = np.abs(self.val_targets - candidates[name]) / self.val_scales[:, None]
        levels = sorted(set(self.spec.forecast.intervals) | set(REPORT_LEVELS))
        rows = [{"method": k, **v} for k, v in scores.items()]
        for other, f in (("theta", theta), ("naive2", self.val_naive2), ("seasonal naive", m4.seasonal_naive(self._validation_histories, h, m))):
            rows.append({"method": other, **self.val_scores(f)})
        valid = np.ones_like(errors, dtype=bool)
        widths = {level: conformal_widths(errors, valid, level / 100) for level in levels}
        return Combination(name, widths, scores[name]), rows

    def report(self, model, device, run_dir) -> tuple[dict, list[str]]:
        from seqtool.core.run import atomic_write_text

        combination, rows = self.choose(model, device)
        run_dir = Path(run_dir)
        atomic_write_text(run_dir / "combination.json", json.dumps(combination.state(), indent=2) + "\n")
        levels = list(self.spec.forecast.intervals)
        atomic_write_text(run_dir / "forecast.csv", forecast_csv(self.panel, model, self, combination, levels, device))
        result = {"series": len(self.panel), "horizon": self.horizon, "season": self.season, "window": self.window,
                  "trainable_series": int(len(self.trainable)), "combination": combination.name, "validation": rows,
                  "forecast_csv": "forecast.csv", "levels": levels,
                  "filled": self.panel.filled, "gaps_filled": self.panel.gaps_filled}
        return {"panel": result}, [panel_markdown(result)]


@torch.no_grad()
def predict(model: GlobalForecaster, inputs: torch.Tensor, device) -> np.ndarray:
    """The network's median forecast for each window, in float64."""
    model.eval()
    out = [model(inputs[i : i + PREDICT_BATCH].to(device)).double().cpu() for i in range(0, len(inputs), PREDICT_BATCH)]
    return torch.cat(out).numpy()


def forecast_panel(panel: Panel, model: GlobalForecaster, task: PanelTask, combination: Combination, device) -> tuple[np.ndarray, np.ndarray]:
    """(the reported forecast past each series' end (n, horizon), each series' MASE scale)."""
    network = predict(model, windows(panel.values, task.window), device)
    theta = m4.theta(panel.values, task.horizon, task.season) if combination.name != "network" else None
    return combination.forecast(network, theta), m4.mase_scales(panel.values, task.season)


def forecast_csv(panel: Panel, model, task: PanelTask, combination: Combination, levels: list[int], device) -> str:
    forecast, scales = forecast_panel(panel, model, task, combination, device)
    bounds = {level: combination.bounds(forecast, scales, level) for level in levels}
    rows = ((key, panel.future(i, task.horizon), forecast[i], {lv: (b[0][i], b[1][i]) for lv, b in bounds.items()})
            for i, key in enumerate(panel.ids))
    return long_csv(rows, levels)


def panel_markdown(result: dict) -> str:
    lines = [f"## Many series: {result['series']} series, horizon {result['horizon']}, season {result['season']}, "
             f"window {result['window']}", "",
             f"Validation (each series' last {result['horizon']} values); the reported forecast is **{result['combination']}**.", "",
             *([f"--fill filled {result['filled']} value(s), {result['gaps_filled']} of them missing time steps.", ""]
               if result.get("filled") else []),
             "| method | sMAPE | MASE | OWA |", "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['smape']:.3f} | {r['mase']:.3f} | {r['owa']:.3f} |" for r in result["validation"]]
    return "\n".join(lines) + f"\n\nForecasts: [{result['forecast_csv']}]({result['forecast_csv']})\n"


# ---- a trained run: forecast and score ------------------------------------------------------------------------
def restored(checkpoint: str | None, data: str | None, device: str, engine: str = "torch", onnx: str | None = None):
    """(the run, its panel: DATA or the run's own data, the combination). With engine onnxruntime the
    run's model is its ONNX export (seqtool export), and no torch weights are read."""
    from seqtool.core.export import restore_engine
    from seqtool.forecast.saved import read_combination

    r = restore_engine(checkpoint, "panel", device, engine, onnx)
    combination = read_combination(r.path.parent.parent, Combination.from_state)
    if data is None and r.spec.data.corpus == "-":
        raise SeqtoolError("this run was trained from standard input; pass the series as DATA")
    return r, load_panel(r.spec, data), combination


def forecast_checkpoint(checkpoint: str | None, data: str | None, horizon: int, levels: list[int], device: str = "auto",
                        engine: str = "torch", onnx: str | None = None) -> str:
    r, panel, combination = restored(checkpoint, data, device, engine, onnx)
    if horizon and horizon != r.task.horizon:
        raise UsageError(f"--horizon {horizon}: this run's model forecasts {r.task.horizon} values at once")
    missing = [level for level in levels if level not in combination.widths]
    if missing:
        raise UsageError(f"--level {missing[0]}: the run calibrated intervals at {', '.join(map(str, sorted(combination.widths)))} only")
    return forecast_csv(panel, r.model, r.task, combination, levels, r.device)


def evaluate_checkpoint(checkpoint: str | None, data: str | None, test: str, wide: bool, out: str | None, device: str = "auto") -> dict:
    """Forecast every series of the run's data (or DATA) and score them on TEST as the M4 competition
    does, with seasonal naive, Naive2 and Theta (M4's benchmarks) from the same histories, and
    statsforecast's AutoETS, AutoARIMA, AutoTheta (on each series' latest PANEL_HISTORY values) and
    their mean; writes test-scores.csv
    (per series) and test.json into `out` (default: the run directory)."""
    from seqtool.core.run import atomic_write_text

    r, panel, combination = restored(checkpoint, data, device)
    f, h, m = r.spec.forecast, r.task.horizon, r.task.season
    actual_panel = read_panel(test, wide or f.wide, f.id_column, None if (wide or f.wide) else f.time_column,
                              None if (wide or f.wide) else f.column, r.spec.data.encoding, r.spec.data.encoding_errors)
    where = {key: i for i, key in enumerate(actual_panel.ids)}
    missing = [key for key in panel.ids if key not in where]
    if missing:
        raise SeqtoolError(f"{test} has no values for {len(missing)} series: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
    short = [key for key in panel.ids if len(actual_panel.values[where[key]]) < h]
    if short:
        raise SeqtoolError(f"{test}: series {short[0]} has {len(actual_panel.values[where[short[0]]])} values; the forecasts have {h}")
    actual = np.stack([actual_panel.values[where[key]][:h] for key in panel.ids])
    network = predict(r.model, windows(panel.values, r.task.window), r.device)
    theta = m4.theta(panel.values, h, m)
    statistical = statistical_forecasts(panel.values, h, m)
    forecasts = {"model": combination.forecast(network, theta), "network": network, "theta": theta,
                 "naive2": m4.naive2(panel.values, h, m), "seasonal naive": m4.seasonal_naive(panel.values, h, m),
                 **{f"auto{kind}": f for kind, f in statistical.items()}, STAT_MEAN: np.mean(list(statistical.values()), axis=0)}
    scales = m4.mase_scales(panel.values, m)
    rows, per = m4.score_table(actual, forecasts, scales)
    target = Path(out) if out else r.path.parent.parent
    target.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["unique_id", *(f"{name}-{metric}" for name in forecasts for metric in ("smape", "mase"))])
    for i, key in enumerate(panel.ids):
        writer.writerow([key, *(f"{per[name][metric][i]:.6g}" for name in forecasts for metric in ("smape", "mase"))])
    atomic_write_text(target / "test-scores.csv", text.getvalue())
    result = {"checkpoint": str(r.path), "test": test, "series": len(panel), "horizon": h, "season": m,
              "combination": combination.name, "scores": rows, "per_series": str(target / "test-scores.csv"),
              "statistical_history": PANEL_HISTORY}
    atomic_write_text(target / "test.json", json.dumps(result, indent=2) + "\n")
    return result


def statistical_forecasts(values: list[np.ndarray], h: int, season: int) -> dict[str, np.ndarray]:
    """panel_forecasts behind a progress bar (on a terminal: fitting three models per series of a
    large panel takes a while, and nothing else would show that it is working)."""
    from seqtool.core.progress import Reporter

    reporter = Reporter()
    reporter.start("AutoETS, AutoARIMA, AutoTheta", total=1.0)
    try:
        return panel_forecasts(values, h, season, jobs=torch.get_num_threads(),
                               progress=(lambda done, total: reporter.update(done / total, f"{done:,} of {total:,} series"))
                               if reporter.live else None)
    finally:
        reporter.stop()


def scores_table(result: dict) -> str:
    lines = [f"{result['series']} series, horizon {result['horizon']}, season {result['season']}: "
             f"M4 scores on {result['test']} (model = {result['combination']})",
             f"{'method':<16}{'sMAPE':>9}{'MASE':>9}{'OWA':>9}"]
    lines += [f"{r['method']:<16}{r['smape']:>9.3f}{r['mase']:>9.3f}{r['owa']:>9.3f}" for r in result["scores"]]
    return "\n".join(lines + [f"per series: {result['per_series']}"])


def eval_command(checkpoint: str | None, data: str | None, *, device: str = "auto", as_json: bool = False, test: str | None = None,
                 wide: bool | None = None, out: str | None = None) -> str:
    """What `seqtool eval` prints for a panel run: the M4 scores on --test, or JSON."""
    if test is None:
        raise UsageError("a panel run is scored on a test file: seqtool eval RUN [DATA] --test TEST.csv")
    result = evaluate_checkpoint(checkpoint, data, test, bool(wide), out, device)
    return (json.dumps(result) if as_json else scores_table(result)) + "\n"
