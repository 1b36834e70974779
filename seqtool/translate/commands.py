"""`seqtool translate`, the translation family's own command: sentences (arguments or stdin lines) through a trained translation run."""

import json
import sys
from typing import Optional

import typer

from seqtool.cli.app import app
from seqtool.cli.options import CheckpointOpt, DeviceOpt, EngineOpt, OnnxOpt, typer_option
from seqtool.core.errors import UsageError


@app.command()
def translate(
    sentences: Optional[list[str]] = typer.Argument(None, help="Sentences to translate; none: read standard input line by line."),
    checkpoint: Optional[str] = CheckpointOpt,
    beam: Optional[int] = typer_option("translate.beam", "Beam width; 1 = greedy (default: the run's translate.beam)."),
    length_penalty: Optional[float] = typer_option("translate.length_penalty", "Rank beam hypotheses by score / length**ALPHA (default: the run's)."),
    nbest: int = typer.Option(1, help="Hypotheses per sentence (tab-separated; needs --beam >= N)."),
    max_len: Optional[int] = typer.Option(None, help="Most tokens to generate (default: the run's data.steps)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input line: source, hypotheses, scores."),
    attention_out: bool = typer.Option(False, "--attention-out", help="With --json: add each hypothesis' attention weights."),
    tokenized: bool = typer.Option(False, "--tokenized", help="Print tokens separated by spaces instead of detokenised text."),
    batch: int = typer.Option(64, help="Sentences decoded together."),
    device: str = DeviceOpt,
    engine: str = EngineOpt,
    onnx: Optional[str] = OnnxOpt,
):
    """Translate sentences with a trained translation run: one output line per input line."""
    from seqtool.core.export import restore_engine
    from seqtool.translate.family import TRANSLATE
    from seqtool.translate.translator import decoding_for, line_chunks, translate_records

    if attention_out and not as_json:
        raise UsageError("--attention-out adds the weights to the JSON output: use it with --json")
    if batch < 1:
        raise UsageError("--batch must be >= 1")
    r = restore_engine(checkpoint, TRANSLATE.name, device, engine, onnx)
    decoding = decoding_for(r, beam, length_penalty, nbest, max_len)

    for chunk in [[s.replace("\n", " ") for s in sentences]] if sentences else line_chunks(sys.stdin, 16 * batch):
        for record in translate_records(r, chunk, decoding, tokenized=tokenized, attention=attention_out, batch=batch):
            print(json.dumps(record, ensure_ascii=False) if as_json else "\t".join(t["text"] for t in record["translations"]))
        sys.stdout.flush()
