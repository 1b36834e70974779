"""`seqtool sample`: text from a language model, one sample per line (streamed when there is one)."""

import json
import sys
from typing import Optional

import typer

from seqtool.cli.app import app, err


@app.command()
def sample(
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint or run directory (default: latest run)."),
    prefix: str = typer.Option("", help="Text to start from; normalised like the training text."),
    length: int = typer.Option(200, help="Tokens to generate after the prefix."),
    temperature: float = typer.Option(1.0),
    top_k: Optional[int] = typer.Option(None),
    top_p: Optional[float] = typer.Option(None),
    greedy: bool = typer.Option(False, help="Always take the most likely token."),
    num: int = typer.Option(1, help="Number of samples."),
    seed: Optional[int] = typer.Option(None, help="Seed for reproducible samples."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    engine: str = typer.Option("torch", help="torch | onnxruntime (the run's ONNX export: seqtool export)."),
    onnx: Optional[str] = typer.Option(None, "--onnx", help="onnxruntime: the exported FILE.onnx (default: RUN/export/model.onnx)."),
):
    """Generate text from a language model, one sample per line on stdout."""
    from seqtool.core.export import restore_engine
    from seqtool.lm.sampling import check_sampling

    check_sampling(prefix, length, num, seed, temperature, top_k, top_p)
    r = restore_engine(checkpoint, "lm", device, engine, onnx)
    task, model, where = r.task, r.model, r.device
    for warning in task.prefix_warnings(prefix):
        err(f"warning: {warning}")
    choice = dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)
    if num == 1 and not as_json:  # stream the text as it is generated

        def write(piece: str) -> None:
            sys.stdout.write(piece.replace("\n", " "))
            sys.stdout.flush()

        task.generate(model, prefix, length, seed=seed, device=where, on_text=write, **choice)
        sys.stdout.write("\n")
        return
    for i, text in enumerate(task.generate(model, prefix, length, num=num, seed=seed, device=where, **choice)):
        print(json.dumps({"index": i, "prefix": prefix, "text": text}) if as_json else text.replace("\n", " "))
