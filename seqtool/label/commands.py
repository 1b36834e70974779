"""`seqtool predict`, the labelling families' own command: a label for each line of text
(classification) or a tag for each token (tagging), from arguments or standard input."""

import sys
from typing import Optional

import typer

from seqtool.cli.app import app
from seqtool.cli.options import CheckpointOpt, DeviceOpt, EngineOpt, OnnxOpt


@app.command()
def predict(
    texts: Optional[list[str]] = typer.Argument(None, help="Texts (tagging: whitespace-separated tokens); none: read standard input line by line."),
    checkpoint: Optional[str] = CheckpointOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line: classify, the label and the class probabilities; tag, tokens and tags."),
    top: Optional[int] = typer.Option(None, help="classify --json: only the K most probable classes."),
    fmt: str = typer.Option("slash", "--format", help="tag: slash (word/TAG word/TAG) | conll (token<TAB>tag lines, a blank line after each sentence)."),
    batch: int = typer.Option(256, help="Sequences read together."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    device: str = DeviceOpt,
    engine: str = EngineOpt,
    onnx: Optional[str] = OnnxOpt,
):
    """Label lines with a trained classification or tagging run: one output line per input line."""
    import torch

    from seqtool.label.predict import predict_lines, restore_labeler

    if threads is not None:
        if threads < 1:
            raise typer.BadParameter("must be >= 1", param_hint="--threads")
        torch.set_num_threads(threads)
    r = restore_labeler(checkpoint, device, engine, onnx)
    for outputs in predict_lines(r, texts if texts else sys.stdin, as_json=as_json, top=top, fmt=fmt, batch=batch):
        sys.stdout.write("".join(line + "\n" for line in outputs))
        sys.stdout.flush()
