"""`seqtool sample`, the language-model family's own command: text from a language model, one
sample per line (streamed when there is one)."""

import sys
from typing import Optional

import typer

from seqtool.cli.app import app, err
from seqtool.cli.options import CheckpointOpt, DeviceOpt, EngineOpt, JsonOpt, OnnxOpt


@app.command()
def sample(
    checkpoint: Optional[str] = CheckpointOpt,
    prefix: str = typer.Option("", help="Text to start from; normalised like the training text."),
    length: int = typer.Option(200, help="Tokens to generate after the prefix."),
    temperature: float = typer.Option(1.0),
    top_k: Optional[int] = typer.Option(None),
    top_p: Optional[float] = typer.Option(None),
    greedy: bool = typer.Option(False, help="Always take the most likely token."),
    num: int = typer.Option(1, help="Number of samples."),
    seed: Optional[int] = typer.Option(None, help="Seed for reproducible samples."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    engine: str = EngineOpt,
    onnx: Optional[str] = OnnxOpt,
):
    """Generate text from a language model, one sample per line on stdout."""
    from seqtool.core.export import restore_engine
    from seqtool.lm.family import LM
    from seqtool.lm.sampling import check_sampling, write_samples

    check_sampling(prefix, length, num, seed, temperature, top_k, top_p)
    r = restore_engine(checkpoint, LM.name, device, engine, onnx)
    for warning in r.task.prefix_warnings(prefix):
        err(f"warning: {warning}")

    def write(piece: str) -> None:  # streamed: a sample appears as it is generated
        sys.stdout.write(piece)
        sys.stdout.flush()

    write_samples(r, prefix, length, write, num=num, seed=seed, as_json=as_json, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)
