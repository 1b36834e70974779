"""`seqtool forecast`: train a forecaster (the same path as `seqtool train --task forecast`) and
print its evaluation table, or with --horizon its forecast as CSV."""

import sys
from pathlib import Path
from typing import Optional

import typer

from seqtool.cli.app import app, command_line, err
from seqtool.core.errors import UsageError
from seqtool.cli.options import QuietOpt, SpecOpt, spec_flags


@app.command()
@spec_flags(tasks=("forecast", "panel"))
def forecast(
    data: Optional[str] = typer.Argument(None, help="CSV or one-number-per-line file, '-' for stdin, or a catalog name (airline-passengers)."),
    spec_path: Optional[Path] = SpecOpt,
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Forecast with this trained run (no training): "
                                             "--horizon values past the end of DATA (default: the run's series); --out FILE writes the CSV."),
    engine: str = typer.Option("torch", help="With --checkpoint: torch | onnxruntime (the run's ONNX export: seqtool export)."),
    onnx: Optional[str] = typer.Option(None, "--onnx", help="onnxruntime: the exported FILE.onnx (default: RUN/export/model.onnx)."),
    quiet: bool = QuietOpt,
    flags: dict = None,
):
    """Train a forecaster on a numeric series; report k-step and multi-step errors against naive,
    seasonal-naive, drift, ETS and Theta (stdout: the table, or with --horizon the forecast as CSV).
    Many series (a CSV with an id column, or --wide): one global model; stdout: unique_id,ds,forecast."""
    from seqtool.core.progress import Reporter
    from seqtool.core.session import fit, start_run
    from seqtool.core.spec import resolve_spec
    from seqtool.forecast.panel import looks_like_panel
    from seqtool.forecast.report import horizon_csv, text_table
    from seqtool.forecast.saved import forecast_with_run

    if checkpoint is not None:
        sys.stdout.write(forecast_with_run(checkpoint, data, flags, engine, onnx) or "")
        return
    if engine != "torch" or onnx is not None:
        raise UsageError("--engine and --onnx forecast with a trained run: give --checkpoint RUN")
    panel = flags["forecast.wide"] is not None or flags["forecast.id_column"] is not None or looks_like_panel(data)
    spec = resolve_spec(spec_path, data, {**flags, "task": "panel" if panel else "forecast"})
    trainer = start_run(spec, reporter=Reporter(quiet=quiet), command=command_line())
    if not quiet:
        err(f"run directory: {trainer.run.path}")
    report = fit(trainer)
    if panel:
        sys.stdout.write((trainer.run.path / report["panel"]["forecast_csv"]).read_text(encoding="utf-8"))
        if not quiet:
            err(f"report: {trainer.run.path / 'report.md'}")
        return
    results = report["forecast"]  # report.json's forecast section
    print(horizon_csv(results["horizon"]) if spec.forecast.horizon else text_table(results), end="" if spec.forecast.horizon else "\n")
    if not quiet:
        err((text_table(results) + "\n" if spec.forecast.horizon else "") + f"report: {trainer.run.path / 'report.md'}")
