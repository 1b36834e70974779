"""`seqtool eval`: score a trained run — perplexity (language models), BLEU/chrF (translation), or
how far back the gradient reaches (--grad-flow)."""

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from seqtool.cli.app import app
from seqtool.cli.options import typer_option
from seqtool.core.errors import UsageError


FLAG_FAMILY = {"--per-token": ("lm",), **dict.fromkeys(("--tgt", "--beam", "--length-penalty", "--max-len", "--sentence-bleu"), ("translate",)),
               "--out": ("translate", "panel"), "--test": ("panel",), "--wide": ("panel",)}
FAMILY_NAMES = {"lm": "language models", "translate": "translation runs", "forecast": "forecasting runs", "panel": "panel runs"}


@app.command("eval")
def evaluate(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint file, run directory, or 'latest'."),
    data: Optional[str] = typer.Argument(None, help="Text to score ('-' for stdin); default: the run's held-out split."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    per_token: Optional[str] = typer.Option(None, help="Write each token's surprisal (TSV) here; '-' for stdout."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    grad_flow: Optional[list[str]] = typer.Option(None, "--grad-flow", metavar="CHECKPOINT", help="Instead: how far back the gradient reaches "
                                                  "(|d loss_T / d h_t|, largest singular values) for this checkpoint (repeatable)."),
    flow_steps: int = typer.Option(50, help="--grad-flow: sequence length T."),
    flow_batch: int = typer.Option(16, help="--grad-flow: sequences averaged over."),
    flow_plot: str = typer.Option("grad-flow.png", help="--grad-flow: the PNG to write (one line per checkpoint)."),
    tgt: Optional[str] = typer_option("translate.tgt", "translate: target-side file aligned with DATA."),
    beam: Optional[int] = typer_option("translate.beam", "translate: beam width, 1 = greedy (default: the run's)."),
    length_penalty: Optional[float] = typer_option("translate.length_penalty", "translate: score / length**ALPHA (default: the run's)."),
    max_len: Optional[int] = typer.Option(None, help="translate: most tokens to generate."),
    sentence_bleu: bool = typer.Option(False, "--sentence-bleu", help="translate: also the classic per-sentence BLEU (k=2)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="translate: write eval.json and eval.md into this directory; "
                                      "panel: test.json and test-scores.csv (default: the run directory)."),
    test: Optional[str] = typer.Option(None, "--test", help="panel: score the forecasts of DATA (default: the run's series) on this CSV, as M4 does."),
    wide: Optional[bool] = typer.Option(None, "--wide", help="panel: the --test file has one row per series (default: the run's layout)."),
):
    """Perplexity of a language model on a text; BLEU and chrF of a translation model on pairs; a
    forecaster's k-step errors against the baselines on its held-out tail (or on SERIES)."""
    from seqtool.core.restore import checkpoint_task
    from seqtool.core.run import atomic_write_text
    from seqtool.forecast import many, report as forecast_report, saved as forecast_saved
    from seqtool.lm import evaluate as lm_eval
    from seqtool.lm.diagnostics import grad_flow_report
    from seqtool.translate import translator

    if grad_flow:
        result, text = grad_flow_report([checkpoint] + grad_flow if checkpoint else grad_flow, data, flow_steps, flow_batch, flow_plot, device)
        print(json.dumps(result) if as_json else text)
        return
    if checkpoint is None:
        raise UsageError("missing CHECKPOINT (a checkpoint file, run directory, or 'latest')")
    family = checkpoint_task(checkpoint)
    given = {"--per-token": per_token, "--tgt": tgt, "--beam": beam, "--length-penalty": length_penalty, "--max-len": max_len,
             "--sentence-bleu": sentence_bleu or None, "--out": out, "--test": test, "--wide": wide}
    for flag in (f for f, v in given.items() if v is not None and family not in FLAG_FAMILY[f]):
        raise UsageError(f"{flag} is for {' and '.join(FAMILY_NAMES[t] for t in FLAG_FAMILY[flag])}; this is a {FAMILY_NAMES[family][:-1]}")
    if family == "panel":
        if test is None:
            raise UsageError("a panel run is scored on a test file: seqtool eval RUN [DATA] --test TEST.csv")
        result = many.evaluate_checkpoint(checkpoint, data, test, bool(wide), out, device)
        print(json.dumps(result) if as_json else many.scores_table(result))
    elif family == "translate":
        result = translator.evaluate_checkpoint(checkpoint, data, tgt, beam, length_penalty, max_len, sentence_bleu, out, device)
        print(json.dumps(result, ensure_ascii=False) if as_json else translator.markdown_report(result), end="\n" if as_json else "")
    elif family == "forecast":
        result = forecast_saved.evaluate_checkpoint(checkpoint, data, device)
        print(json.dumps(result) if as_json else forecast_report.text_table(result))
    else:
        result, rows = lm_eval.evaluate_lm(checkpoint, data, device=device, per_token=per_token is not None)
        if per_token == "-":
            sys.stdout.write(lm_eval.surprisal_tsv(rows))
        elif per_token:
            atomic_write_text(Path(per_token), lm_eval.surprisal_tsv(rows))
        if as_json or per_token != "-":
            print(json.dumps(result) if as_json else lm_eval.perplexity_line(result))
