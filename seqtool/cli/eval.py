"""`seqtool eval`: score a trained run as its family says (each family declares its evaluate hook and
the eval flags it accepts, seqtool/core/family.py), or how far back the gradient reaches (--grad-flow)."""

import json
import sys
from typing import Optional

import typer

from seqtool.cli.app import app
from seqtool.cli.options import DeviceOpt, with_params
from seqtool.core.errors import UsageError
from seqtool.core.family import eval_flags, families

FLAGS = eval_flags()  # flag -> (declaration, the families that accept it)


def family_flags(command):
    """Give the command one option per family eval flag; it receives them as `flags` {flag: value or None}."""
    extra = {d.name: (Optional[d.kind], typer.Option(None, d.flag, *d.aliases, help=d.help)) for d, _ in FLAGS.values()}
    doc = command.__doc__ + "".join(f"\n\n{f.title}s: {f.eval_help}." for f in families().values() if f.eval_help)
    return with_params(command, extra, doc)


@app.command("eval")
@family_flags
def evaluate(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint file, run directory, or 'latest'."),
    data: Optional[str] = typer.Argument(None, help="Data to score ('-' for stdin); default: the run's held-out split."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    device: str = DeviceOpt,
    grad_flow: Optional[list[str]] = typer.Option(None, "--grad-flow", metavar="CHECKPOINT", help="Instead: how far back the gradient reaches "
                                                  "(|d loss_T / d h_t|, largest singular values) for this checkpoint (repeatable)."),
    flow_steps: int = typer.Option(50, help="--grad-flow: sequence length T."),
    flow_batch: int = typer.Option(16, help="--grad-flow: sequences averaged over."),
    flow_plot: str = typer.Option("grad-flow.png", help="--grad-flow: the PNG to write (one line per checkpoint)."),
    flags: dict = None,
):
    """Score a trained run on DATA or its held-out split, as its task family does."""
    from seqtool.core.family import family
    from seqtool.core.restore import checkpoint_task

    if grad_flow:
        from seqtool.lm.diagnostics import grad_flow_report

        result, text = grad_flow_report([checkpoint] + grad_flow if checkpoint else grad_flow, data, flow_steps, flow_batch, flow_plot, device)
        print(json.dumps(result) if as_json else text)
        return
    if checkpoint is None:
        raise UsageError("missing CHECKPOINT (a checkpoint file, run directory, or 'latest')")
    run_family = family(checkpoint_task(checkpoint))
    given = {name: value for name, value in flags.items() if value is not None and value is not False}
    for declared, users in (d for d in eval_flags().values() if d[0].name in given):  # families registered since import too
        if run_family not in users:
            raise UsageError(f"{declared.flag} is for {' and '.join(f.title + 's' for f in users)}; this is a {run_family.title}")
    sys.stdout.write(run_family.hook("evaluate")(checkpoint, data, device=device, as_json=as_json, **given))
