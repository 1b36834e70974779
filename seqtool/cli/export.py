"""`seqtool export`: a trained run as ONNX graphs (checked against torch) plus its vocabulary and spec."""

import json
from typing import Optional

import typer

from seqtool.cli.app import app


@app.command("export")
def export(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint file, run directory, or 'latest'."),
    fmt: str = typer.Option("onnx", "--format", help="onnx"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="FILE.onnx (default: RUN/export/model.onnx); FILE.json beside it."),
):
    """Export a run's best model to ONNX: a language model as one step (tokens + state -> logits +
    state), a forecaster (window -> the next steps; panels: the horizon), a translator (encoder; one decoder step). The
    graphs are run by onnxruntime and compared with torch before anything is written."""
    from seqtool.core.export import export_run

    print(json.dumps(export_run(checkpoint, fmt, out)))
