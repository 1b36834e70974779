"""Forecasting: predict the next values of a numeric series, then judge k-step-ahead and recursive
multi-step forecasts on the held-out tail against naive, seasonal naive, drift, AutoETS, AutoARIMA,
AutoTheta and the mean of those three.

The series is split once. The first n_train values are the training part: the seasonal period,
the transform (Box-Cox or log, differencing, scaling) and the network's training all come from it.
Its last `n_val` values are the validation part: the network trains on what comes before them,
and they choose the checkpoint and weigh the network against the statistical members in the
reported forecast; the interval widths come from rolling origins over the whole training part
(seqtool/forecast/combine.py). Everything after n_train is the test part, used once, to report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.task import Task
from seqtool.forecast import auto
from seqtool.forecast import combine
from seqtool.forecast.baselines import drift_table, naive_table, seasonal_naive_table
from seqtool.forecast.combine import Combination
from seqtool.forecast.metrics import interval_scores, point_metrics, seasonal_naive_scale
from seqtool.forecast.predict import eval_targets, forecast_table, min_history, one_step
from seqtool.forecast.series import Series, Transform, check_series, future_times, parse_series, synthetic_sine
from seqtool.forecast.statistical import STAT_MEAN, Statistical, fit_all
from seqtool.nn.forecaster import Forecaster, build_forecaster

CLASSIC_N_TRAIN = 600  # the classic sine experiment trains on its first 600 values
REPORT_LEVELS = (80, 95)  # interval levels the report always scores (--level adds columns to the CSV)


def load_series(spec) -> Series:
    """The spec's series: --synthetic sine, or a CSV / one-number-per-line file, stdin or catalog name."""
    f, d = spec.forecast, spec.data
    if f.synthetic and d.corpus:
        raise UsageError("give either a data file or --synthetic, not both")
    if f.synthetic:
        return synthetic_sine(f.length, f.noise, spec.train.seed)
    if not d.corpus:
        raise UsageError("no data: pass a CSV or text file, '-' for stdin, a catalog name, or --synthetic sine")
    from seqtool.data.corpora import read_text

    text = read_text(d.corpus, d.encoding, d.encoding_errors)
    name = "standard input" if d.corpus == "-" else d.corpus
    return parse_series(text, f.column, f.time_column, f.fill, source=name)


def parse_difference(value) -> list[int] | None:
    """--difference: 'auto' (None), '0'/'none' ([]), or lags '12' / '12,1'."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text in ("0", "none", ""):
        return []
    try:
        lags = [int(part) for part in text.split(",")]
    except ValueError:
        lags = [0]
    if any(lag < 1 for lag in lags):
        raise UsageError(f"--difference: expected auto, 0, or lags such as 12 or 12,1; got {value!r}")
    return lags


class ForecastTask(Task):
    name = "forecast"
    monitor = "val_mse"  # one-step error on the validation part: the test part never chooses
    unit = "windows"

    def __init__(self, spec, series: Series | None, transform: Transform, n_train: int, season: int, context: int,
                 n_val: int, chosen: dict | None = None):
        super().__init__(spec)
        self.series, self.transform = series, transform
        self.n_train, self.season, self.context, self.n_val = n_train, season, context, n_val
        self.chosen = chosen or {}  # how season and transform were chosen, for the report
        self.recurrent = spec.model.cell != "mlp"
        self.skipped_k: list[int] = []
        if series is not None:
            self.z = transform.forward(series.values)  # float64, model units; z[i] belongs to x[i + lag]
            length = context + spec.forecast.train_horizon
            self.segments = self.z[: n_train - n_val - transform.lag].float().unfold(0, length, 1).contiguous()

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def check_spec(spec) -> None:
        if spec.model.cell == "auto":
            raise UsageError("model.cell auto is chosen from the data when a spec is resolved (seqtool.core.spec.resolve_spec, "
                             "as the CLI does); name the cell to build the task directly")
        if spec.model.bidirectional:
            raise UsageError(
                "--bidirectional cannot be used for forecasting: the backward direction would read "
                "the future values the model has to predict"
            )
        parse_difference(spec.forecast.difference)
        if spec.model.cell != "mlp" and spec.forecast.ensemble > 1:
            raise UsageError(f"--ensemble {spec.forecast.ensemble}: a single-series {spec.model.cell} forecaster is one network; "
                             "side-by-side members are for --model mlp (or --ensemble 1)")

    @classmethod
    def from_spec(cls, spec) -> "ForecastTask":
        cls.check_spec(spec)
        f = spec.forecast
        series = load_series(spec)
        n = len(series)
        check_series(series, 8, " to split into training, validation and test parts")
        if f.n_train is not None:
            n_train = f.n_train
            if n_train >= n:
                raise UsageError(f"--n-train {n_train} leaves nothing to test: the series has {n} values")
        else:
            n_train = CLASSIC_N_TRAIN if f.synthetic and n > CLASSIC_N_TRAIN else int(n * 0.8)
        train = series.values[:n_train].numpy()
        irregular, first = auto.irregular_steps(series.times)
        chosen = {"irregular_steps": irregular, "first_irregular_step": first} if irregular else {}
        season = f.season or (1 if f.synthetic else auto.detect_season(series.times, train))
        chosen["season"] = "--season" if f.season else "the time column's frequency and the autocorrelation"
        if season >= n_train:
            raise SeqtoolError(f"--season {season} needs a training part longer than {season} values (it has {n_train})")
        lam = cls._choose_lambda(f.transform, train, season, chosen)
        lags = parse_difference(f.difference)
        if lags is None:
            boxed = Transform(None, lam).box_cox(torch.as_tensor(train)).numpy() if lam is not None else train
            lags = auto.choose_differences(boxed, season)
            chosen["difference"] = "seasonal strength (STL) and KPSS"
        else:
            chosen["difference"] = "--difference"
        ks = sorted(set(f.k))
        n_val = min(max(8, 2 * season if season > 1 else 0, max(ks), n_train // 10), n_train // 4)
        context = f.tau or (max(4, season + 1) if not cls._is_recurrent(spec) else 64)
        need = (1 if cls._is_recurrent(spec) else context) + f.train_horizon + sum(lags)
        if n_train - n_val < need + 1:
            raise SeqtoolError(
                f"the series is too short: the training part before validation has {n_train - n_val} values and needs at "
                f"least {need + 1} ({'the model reads ' + str(context) + ' values, ' if not cls._is_recurrent(spec) else ''}"
                f"--train-horizon {f.train_horizon}, differences {sum(lags)}); the whole series needs about "
                f"{math.ceil((need + 1) / 0.6)} values, or pass a smaller --tau / --difference 0")
        if cls._is_recurrent(spec):
            context = min(context, n_train - n_val - sum(lags) - f.train_horizon)
        evaluated = [k for k in ks if eval_targets(n_train, n, k, (1 if cls._is_recurrent(spec) else context) + sum(lags), season)]
        if not evaluated:
            raise UsageError(f"--k {','.join(map(str, f.k))}: no test value has that much history before it; use a smaller k")
        transform = Transform.fit(series.values[:n_train], lam, lags)
        task = cls(spec, series, transform, n_train, season, context, n_val, chosen)
        task.skipped_k = sorted(set(ks) - set(evaluated))  # too far ahead for this series: left out of the report
        return task

    @staticmethod
    def _is_recurrent(spec) -> bool:
        return spec.model.cell != "mlp"

    @staticmethod
    def _choose_lambda(kind: str, train: np.ndarray, season: int, chosen: dict) -> float | None:
        if kind == "auto":
            name, lam = auto.choose_transform(train, season)
            chosen["transform"] = "how the spread of each season grows with its level (Guerrero)"
            return lam
        chosen["transform"] = "--transform"
        if kind == "none":
            return None
        if (train <= 0).any():
            raise SeqtoolError(f"--transform {kind} needs positive values in the training part")
        return 0.0 if kind == "log" else auto.box_cox_lambda(train, season)

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "ForecastTask":
        spec.forecast.ensemble = int(task_state.get("members", 1))  # runs saved before single-series ensembles had one network
        return cls(spec, None, Transform.from_state(task_state["transform"]), task_state["n_train"], task_state["season"],
                   task_state["context"], task_state.get("n_val", 0), task_state.get("chosen"))

    def task_state(self) -> dict:
        return {"transform": self.transform.state(), "n_train": self.n_train, "season": self.season, "context": self.context,
                "n_val": self.n_val, "chosen": self.chosen, "members": self.spec.forecast.ensemble}

    def build_model(self) -> nn.Module:
        m = self.spec.model
        try:
            model = build_forecaster(m.cell, self.context, m.hidden, m.layers, m.dropout, m.impl, self.spec.forecast.ensemble)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.recurrent:
            model.stack.reset_parameters(orthogonal=m.init == "orthogonal", forget_bias=m.forget_bias if m.cell == "lstm" else None)
        return model

    # ---- training ----------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.segments) / self.spec.train.batch)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.segments), generator=generator)
        batch = self.spec.train.batch
        for i in range(0, len(order), batch):
            yield self.segments[order[i : i + batch]]

    def train_loss(self, model: Forecaster, batch, state, device):
        seg = batch.to(device, non_blocking=True)
        if getattr(model, "members", 1) > 1 and self.spec.forecast.train_horizon == 1:  # each member fits its own errors
            pred = model.member_predictions(seg[:, :-1].unfold(1, model.tau, 1))  # (batch, L - tau, members)
            target = seg[:, model.min_context :, None]
            return ((pred - target) ** 2).mean(), target.numel(), None
        pred = model.segment_predictions(seg, self.spec.forecast.train_horizon)
        target = seg[:, model.min_context :]
        return ((pred - target) ** 2).mean(), target.numel(), None

    @torch.no_grad()
    def evaluate(self, model: Forecaster, device) -> dict[str, float]:
        """One-step squared error on the validation part, in the series' units (the checkpoint choice)."""
        was_training = model.training
        model.eval()
        x = self.series.values
        targets = list(range(self.n_train - self.n_val, self.n_train))
        pred = one_step(model, x, targets, self.transform)
        model.train(was_training)
        return {"val_mse": float(((pred - x[targets]) ** 2).mean())}

    # ---- forecasting and evaluation ----------------------------------------------------------
    def network_table(self, model: Forecaster, x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
        return forecast_table(model, torch.as_tensor(x), origins, steps, self.transform).numpy()

    @torch.no_grad()
    def fit_combination(self, model: Forecaster) -> Combination:
        """Weigh the members on the validation part, calibrate the intervals on rolling origins
        over the training part (seqtool/forecast/combine.py), then refit the statistical members
        on the whole training part (the same fits as their rows in the report)."""
        model.eval()
        n0, season = self.n_train, self.season
        x = self.series.values.numpy()[:n0]
        steps = max(max(self.spec.forecast.k), 1)
        fit_end = n0 - self.n_val
        first = max(min_history(model, self.transform) - 1, min(2 * season, fit_end - 1), n0 - 1 - combine.CALIBRATION_ORIGINS)
        origins = list(range(first, n0 - 1))
        tables = {"network": self.network_table(model, x, origins, steps)}
        if self.spec.forecast.combine == "auto":
            tables.update({kind: member.table(x, origins, steps) for kind, member in fit_all(x[:fit_end], season).items()})
        target = np.asarray(origins)[:, None] + np.arange(1, steps + 1)[None, :]
        valid = target < n0
        actual = x[np.minimum(target, n0 - 1)]
        in_validation = np.asarray(origins) >= fit_end - 1
        held = valid & in_validation[:, None]
        weights = combine.estimate_weights({m: t[in_validation] for m, t in tables.items()}, actual[in_validation], held[in_validation])
        combined = combine.weighted_mean(tables, weights)
        scale = seasonal_naive_scale(x[:fit_end], season)
        scores = combine.validation_mase({m: t[in_validation] for m, t in {**tables, "model": combined}.items()},
                                         actual[in_validation], held[in_validation], scale)
        residuals = actual - combined
        valid &= np.isfinite(residuals)
        inflation = combine.in_sample_inflation(residuals, valid, in_validation)
        residuals = np.where(in_validation[:, None], residuals, residuals * inflation)
        levels = sorted(set(self.spec.forecast.intervals) | set(REPORT_LEVELS))
        members = fit_all(x, season)
        return Combination(weights, members, {level: combine.conformal_widths(residuals, valid, level / 100) for level in levels},
                           combine.residual_counts(valid), scores, inflation)

    @torch.no_grad()
    def forecast_results(self, model: Forecaster, device, combination: Combination | None = None) -> tuple[dict, dict]:
        """Everything the report shows -> (results, curves to plot): per k, seqtool's forecast
        ('model'), the network alone and every baseline on the same test points, with interval
        coverage and MSIS for 'model'; the recursive forecast over the test part; the forecast past the end."""
        model.eval()
        f = self.spec.forecast
        combination = combination or self.fit_combination(model)
        x = self.series.values.numpy()
        n, n0, m = len(x), self.n_train, self.season
        scale = seasonal_naive_scale(x[:n0], m)
        members = {kind: member if np.array_equal(member.fitted_on, x[:n0]) else Statistical.fit(kind, x[:n0], m)
                   for kind, member in combination.members.items()}  # the run's fits, unless this is other data
        members = members or fit_all(x[:n0], m)
        need = min_history(model, self.transform)
        ks = sorted(set(f.k) - set(self.skipped_k))
        kmax = max(ks)
        lo = max(n0 - kmax, need - 1)
        origins = list(range(lo, n - 1))
        tables = self._tables(model, combination, members, x, origins, kmax)
        rows, curves = [], {"k": {}}
        for k in ks:
            targets = eval_targets(n0, n, k, need, m)
            at = np.asarray(targets) - k - lo
            actual = x[targets]
            for method, table in tables.items():
                row = {"k": k, "method": method, "n": len(targets), **point_metrics(table[at, k - 1], actual, scale)}
                if method == "model":
                    for level in sorted(set(f.intervals) | set(REPORT_LEVELS)):
                        low, high = combination.bounds(table[at, :], level)
                        row.update(interval_scores(low[:, k - 1], high[:, k - 1], actual, level, scale))
                rows.append(row)
            curves["k"][k] = (targets, tables["model"][at, k - 1])
        multi = self._tables(model, combination, members, x, [n0 - 1], n - n0)
        multi_rows = [{"method": method, "n": n - n0, **point_metrics(table[0], x[n0:], scale)} for method, table in multi.items()]
        curves["multi"] = multi["model"][0]
        result = {
            "series": self.series.name, "values": n, "n_train": n0, "n_val": self.n_val, "n_test": n - n0, "season": m,
            "mase_scale": scale, "model": self.spec.model.cell, "members": self.spec.forecast.ensemble, "tau": self.context,
            "transform": self.transform.name, "difference": list(self.transform.lags), "chosen_by": self.chosen, "combination": combination.name,
            "weights": combination.weights, "validation_mase": combination.validation,
            "statistical": {kind: member.name for kind, member in members.items()},
            "filled": self.series.filled, "gaps_filled": self.series.gaps_filled,
            "calibration": {"residuals": combination.residuals, "few_residuals": combination.few_residuals(),
                            "inflation": combination.inflation},
            "k_step": rows, "multi_step": multi_rows, "skipped_k": self.skipped_k, "winners": winners(rows),
        }
        if f.horizon:
            ahead = self._tables(model, combination, members, x, [n - 1], f.horizon)["model"][0]
            result["horizon"] = horizon_rows(future_times(self.series.times, f.horizon), ahead, combination, f.intervals)
            curves["bands"] = {level: combination.bounds(ahead[None, :], level) for level in (f.intervals or REPORT_LEVELS)}
        return result, curves

    def _tables(self, model, combination: Combination, members: dict[str, Statistical], x: np.ndarray, origins: list[int],
                steps: int) -> dict:
        """Every method's forecast table from the same origins: the combination ('model'), its
        members, their plain mean (the statistician's ensemble) and the simple baselines."""
        network = self.network_table(model, x, origins, steps)
        statistical = {kind: member.table(x, origins, steps) for kind, member in members.items()}
        combined = combine.weighted_mean({"network": network, **statistical}, combination.weights)
        return {"model": combined, "network": network,
                "naive": naive_table(x, origins, steps), "seasonal naive": seasonal_naive_table(x, origins, steps, self.season),
                "drift": drift_table(x, origins, steps), **statistical,
                STAT_MEAN: combine.weighted_mean(statistical, dict.fromkeys(statistical, 1.0))}

    def report(self, model, device, run_dir) -> tuple[dict, list[str]]:
        import json

        from seqtool.core.run import atomic_write_text
        from seqtool.forecast.report import forecast_markdown, forecast_plot

        combination = self.fit_combination(model)
        atomic_write_text(Path(run_dir) / "combination.json", json.dumps(combination.state(), indent=2) + "\n")
        results, curves = self.forecast_results(model, device, combination)
        forecast_plot(Path(run_dir) / "forecast.png", self.series, self.n_train, curves, results.get("horizon"))
        return {"forecast": results}, [forecast_markdown(results), "![series and forecasts](forecast.png)"]


def winners(rows: list[dict]) -> dict[int, str]:
    """The method with the lowest MASE at each k."""
    best: dict[int, tuple[float, str]] = {}
    for row in rows:
        if row["mase"] == row["mase"] and (row["k"] not in best or row["mase"] < best[row["k"]][0]):
            best[row["k"]] = (row["mase"], row["method"])
    return {k: method for k, (_, method) in best.items()}


def horizon_rows(times: list[str], forecast: np.ndarray, combination: Combination, levels: list[int]) -> list[dict]:
    rows = [{"time": t, "forecast": float(v)} for t, v in zip(times, forecast)]
    for level in levels:
        low, high = combination.bounds(forecast[None, :], level)
        for row, a, b in zip(rows, low[0], high[0]):
            row[f"lo-{level}"], row[f"hi-{level}"] = float(a), float(b)
    return rows
