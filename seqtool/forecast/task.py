"""Forecasting: predict the next value of a numeric series, then judge one-step, recursive
multi-step and k-step-ahead forecasts on the held-out tail against naive baselines.

The series is split once: the first n_train values train the model and fit the transform (log,
differencing, scaling), so nothing about the test part leaks into training; everything after is
the test part.
"""

from __future__ import annotations

from pathlib import Path

import math
from typing import Iterator

import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.forecast.metrics import all_metrics, seasonal_naive_scale
from seqtool.forecast.predict import eval_targets, k_step, min_history, naive, one_step, recursive, seasonal_naive
from seqtool.nn.forecaster import Forecaster, build_forecaster
from seqtool.forecast.series import Series, Transform, check_series, future_times, monthly, parse_series, synthetic_sine
from seqtool.core.task import Task

CLASSIC_N_TRAIN = 600  # the classic sine experiment trains on its first 600 values


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


class ForecastTask(Task):
    name = "forecast"
    monitor = "fit_mse"  # the training objective over all training segments: no test data in model selection
    unit = "windows"

    def __init__(self, spec, series: Series | None, transform: Transform, n_train: int, season: int, context: int):
        super().__init__(spec)
        self.series, self.transform = series, transform
        self.n_train, self.season, self.context = n_train, season, context
        self.recurrent = spec.model.cell != "mlp"
        self.skipped_k: list[int] = []
        if series is not None:
            self.z = transform.forward(series.values)  # float64, model units; z[i] belongs to x[i + lag]
            length = context + spec.forecast.train_horizon
            self.segments = self.z[: n_train - transform.lag].float().unfold(0, length, 1).contiguous()

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def check_spec(spec) -> None:
        if spec.model.bidirectional:
            raise UsageError(
                "--bidirectional cannot be used for forecasting: the backward direction would read "
                "the future values the model has to predict"
            )

    @classmethod
    def from_spec(cls, spec) -> "ForecastTask":
        cls.check_spec(spec)
        f = spec.forecast
        series = load_series(spec)
        n = len(series)
        recurrent = spec.model.cell != "mlp"
        if recurrent:  # a latent model can start from one value; tau only caps its context
            check_series(series, 1 + f.train_horizon + 1, f" (1 + --train-horizon {f.train_horizon} + 1 to test)")
        else:
            check_series(series, f.tau + f.train_horizon + 1, f" (--tau {f.tau} + --train-horizon {f.train_horizon} + 1 to test)")
        if f.n_train is not None:
            n_train = f.n_train
            if n_train >= n:
                raise UsageError(f"--n-train {n_train} leaves nothing to test: the series has {n} values")
        else:
            n_train = CLASSIC_N_TRAIN if f.synthetic and n > CLASSIC_N_TRAIN else int(n * 0.8)
        lag = f.difference
        need = (1 if recurrent else f.tau) + f.train_horizon + lag
        if n_train < need:
            raise SeqtoolError(
                f"the training part has {n_train} values (raise --n-train); "
                + (f"--tau {f.tau}, " if not recurrent else "")
                + f"--train-horizon {f.train_horizon}" + (f" and --difference {lag}" if lag else "") + f" need at least {need}"
            )
        # a recurrent model's context shrinks to what the training part can hold
        context = min(f.tau, n_train - lag - f.train_horizon) if recurrent else f.tau
        season = f.season or (12 if monthly(series.times) else 1)
        if season >= n_train:
            raise SeqtoolError(f"--season {season} needs a training part longer than {season} values (it has {n_train})")
        ks = [k for k in sorted(set(f.k)) if eval_targets(n_train, n, k, (1 if recurrent else context) + lag, season)]
        if not ks:
            raise UsageError(f"--k {','.join(map(str, f.k))}: no test value has that much history before it; use a smaller k")
        transform = Transform.fit(series.values[:n_train], f.log, lag)
        task = cls(spec, series, transform, n_train, season, context)
        task.skipped_k = sorted(set(f.k) - set(ks))  # too far ahead for this series: left out of the report
        return task

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "ForecastTask":
        return cls(spec, None, Transform.from_state(task_state["transform"]), task_state["n_train"], task_state["season"], task_state["context"])

    def task_state(self) -> dict:
        return {"transform": self.transform.state(), "n_train": self.n_train, "season": self.season, "context": self.context}

    def build_model(self) -> nn.Module:
        m = self.spec.model
        try:
            model = build_forecaster(m.cell, self.context, m.hidden, m.layers, m.dropout, m.impl)
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
        pred = model.segment_predictions(seg, self.spec.forecast.train_horizon)
        target = seg[:, model.min_context :]
        return ((pred - target) ** 2).mean(), target.numel(), None

    @torch.no_grad()
    def evaluate(self, model: Forecaster, device) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for i in range(0, len(self.segments), 1024):
            seg = self.segments[i : i + 1024].to(device)
            pred = model.segment_predictions(seg, self.spec.forecast.train_horizon)
            total += float(((pred - seg[:, model.min_context :]) ** 2).sum())
            count += pred.numel()
        x = self.series.values
        targets = list(range(max(self.n_train, min_history(model, self.transform)), len(x)))
        one = one_step(model, x, targets, self.transform)
        test_mse = float(((one - x[targets]) ** 2).mean())
        model.train(was_training)
        return {"fit_mse": total / max(count, 1), "test_mse": test_mse}

    # ---- forecasting and evaluation ----------------------------------------------------------
    @torch.no_grad()
    def forecast_results(self, model: Forecaster, device) -> tuple[dict, dict]:
        """Everything the report shows -> (results, curves to plot): metrics per k (model, naive,
        seasonal naive on the same points), the recursive forecast over the test part, and the
        forecast past the end."""
        model.eval()
        f, x, tr = self.spec.forecast, self.series.values, self.transform
        n, n0, m = len(x), self.n_train, self.season
        scale = seasonal_naive_scale(x[:n0], m)
        rows, curves = [], {"k": {}}
        for k in sorted(set(f.k) - set(self.skipped_k)):
            targets = eval_targets(n0, n, k, min_history(model, tr), m)
            pred = k_step(model, x, targets, [k], tr)[k]
            actual = x[targets]
            curves["k"][k] = (targets, pred)
            for method, forecast in (("model", pred), ("naive", naive(x, targets, k)), ("seasonal naive", seasonal_naive(x, targets, k, m))):
                rows.append({"k": k, "method": method, "n": len(targets), **all_metrics(forecast, actual, scale)})
        # recursive multi-step from the end of the training part, against the baselines from the same origin
        steps = n - n0
        multi = recursive(model, x, n0 - 1, steps, tr)
        last_season = x[n0 - m : n0]
        multi_rows = [
            {"method": "model", "n": steps, **all_metrics(multi, x[n0:], scale)},
            {"method": "naive", "n": steps, **all_metrics(x[n0 - 1].expand(steps), x[n0:], scale)},
            {"method": "seasonal naive", "n": steps, **all_metrics(last_season.repeat(math.ceil(steps / m))[:steps], x[n0:], scale)},
        ]
        curves["multi"] = multi
        result = {
            "series": self.series.name, "values": n, "n_train": n0, "n_test": steps, "season": m,
            "mase_scale": scale, "model": self.spec.model.cell, "tau": self.context,
            "log": tr.log, "difference": tr.lag,
            "k_step": rows, "multi_step": multi_rows, "skipped_k": self.skipped_k,
        }
        if f.horizon:
            ahead = recursive(model, x, n - 1, f.horizon, tr)
            result["horizon"] = [{"time": t, "forecast": float(v)} for t, v in zip(future_times(self.series.times, f.horizon), ahead)]
        return result, curves

    def report(self, model, device, run_dir) -> tuple[dict, list[str]]:
        from seqtool.forecast.report import forecast_markdown, forecast_plot

        results, curves = self.forecast_results(model, device)
        forecast_plot(Path(run_dir) / "forecast.png", self.series, self.n_train, curves, results.get("horizon"))
        return {"forecast": results}, [forecast_markdown(results), "![series and forecasts](forecast.png)"]
