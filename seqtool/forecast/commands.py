"""`seqtool forecast`, the forecasting families' own command: train a forecaster (the same path as
`seqtool train --task forecast`) and print its evaluation table, or with --horizon its forecast as
CSV; which task the data means and what a finished run prints are decided by the two functions below."""

import sys
from pathlib import Path
from typing import Optional

import typer

from seqtool.cli.app import app, command_line, err
from seqtool.core.errors import UsageError
from seqtool.cli.options import OnnxOpt, QuietOpt, SpecOpt, spec_flags
from seqtool.forecast.family import FORECAST, FORECASTING, PANEL


@app.command()
@spec_flags(tasks=FORECASTING)
def forecast(
    data: Optional[str] = typer.Argument(None, help="CSV or one-number-per-line file, '-' for stdin, or a catalog name (airline-passengers)."),
    spec_path: Optional[Path] = SpecOpt,
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Forecast with this trained run (no training): "
                                             "--horizon values past the end of DATA (default: the run's series); --out FILE writes the CSV."),
    engine: str = typer.Option("torch", help="With --checkpoint: torch | onnxruntime (the run's ONNX export: seqtool export)."),
    onnx: Optional[str] = OnnxOpt,
    quiet: bool = QuietOpt,
    flags: dict = None,
):
    """Train a forecaster on a numeric series; report k-step and multi-step errors against naive,
    seasonal-naive, drift, ETS and Theta (stdout: the table, or with --horizon the forecast as CSV).
    Many series (a CSV with an id column, or --wide): one global model; stdout: unique_id,ds,forecast."""
    from seqtool.core.progress import Reporter
    from seqtool.core.session import fit, start_run
    from seqtool.core.spec import resolve_spec
    from seqtool.forecast.saved import forecast_with_run

    if checkpoint is not None:
        sys.stdout.write(forecast_with_run(checkpoint, data, flags, engine, onnx) or "")
        return
    if engine != "torch" or onnx is not None:
        raise UsageError("--engine and --onnx forecast with a trained run: give --checkpoint RUN")
    spec = resolve_spec(spec_path, data, {**flags, "task": forecasting_task(data, flags)})
    trainer = start_run(spec, reporter=Reporter(quiet=quiet), command=command_line())
    if not quiet:
        err(f"run directory: {trainer.run.path}")
    out, notes = run_output(fit(trainer), trainer.run.path, spec.forecast.horizon)
    sys.stdout.write(out)
    if not quiet:
        err(notes)


def forecasting_task(data: str | None, flags: dict) -> str:
    """panel when --wide or --id-column is given or the file's header names an id column, else forecast."""
    from seqtool.forecast.panel import looks_like_panel

    panel = flags["forecast.wide"] is not None or flags["forecast.id_column"] is not None or looks_like_panel(data)
    return PANEL.name if panel else FORECAST.name


def run_output(report: dict, run_path: Path, horizon: int) -> tuple[str, str]:
    """(stdout, notes for stderr) of a finished run: a panel's forecasts as CSV; one series' k-step
    table, or with a horizon its forecast as CSV (the table then goes with the notes)."""
    from seqtool.forecast.report import horizon_csv, text_table

    where = f"report: {run_path / 'report.md'}"
    if report["task"] == PANEL.name:
        return (run_path / report["panel"]["forecast_csv"]).read_text(encoding="utf-8"), where
    results = report["forecast"]  # report.json's forecast section
    if horizon:
        return horizon_csv(results["horizon"]), text_table(results) + "\n" + where
    return text_table(results) + "\n", where
