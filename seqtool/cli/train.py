"""`seqtool train`: one run of any task, from a corpus, a spec, or a run to resume."""

from pathlib import Path
from typing import Optional

import typer

from seqtool.cli.app import app, command_line, err, train_args
from seqtool.cli.options import QuietOpt, SpecOpt, spec_flags
from seqtool.core.errors import UsageError


@app.command()
@spec_flags()
def train(
    corpus: Optional[str] = typer.Argument(None, help="Text file, prepared dataset, sentence pairs, CSV, '-' for stdin, or a catalog name."),
    spec_path: Optional[Path] = SpecOpt,
    src: Optional[str] = typer.Option(None, "--src", help="translate: source-side file aligned with --tgt (instead of CORPUS)."),
    nproc: Optional[int] = typer.Option(None, help="Train in N processes on this machine with DDP (starts torchrun; --batch is the global batch)."),
    resume: Optional[str] = typer.Option(None, help="Continue the run in this directory from its last checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved spec (defaults < --spec < flags) as YAML and exit."),
    quiet: bool = QuietOpt,
    flags: dict = None,
):
    """Train a model; writes a run directory (checkpoints, metrics.jsonl, report.{json,md,png})."""
    from seqtool.core.distributed import env_rank, launch
    from seqtool.core.progress import Reporter
    from seqtool.core.report import done_line
    from seqtool.core.session import check_launch, fit, resume_run, start_run
    from seqtool.core.spec import resolve_spec

    if resume and (spec_path or dry_run):
        raise UsageError("--resume takes the spec saved in the run; do not pass --spec" if spec_path else
                         "--dry-run shows the spec of a new run; a resumed run's spec is its spec.yaml")
    spec = None if resume else resolve_spec(spec_path, corpus, flags, src=src)
    if dry_run:
        print(spec.to_yaml(only_used=True), end="")
        return
    if nproc is not None and nproc != 1:
        check_launch(nproc, spec, resume)
        raise SystemExit(launch(nproc, train_args(), command_line()))  # the workers have said what there was to say
    main_rank = env_rank() == 0
    reporter = Reporter(quiet=quiet or not main_rank)
    if resume:
        trainer = resume_run(resume, flags, reporter=reporter, command=command_line(), corpus=corpus)
    else:
        trainer = start_run(spec, reporter=reporter, command=command_line())
    if not main_rank:  # [ddp] the other ranks train and stay silent
        trainer.fit()
        return
    if not quiet:
        err(f"run directory: {trainer.run.path}")
    report = fit(trainer)
    if not quiet:
        err(done_line(report, trainer.task.monitor))
    print(trainer.run.path)
