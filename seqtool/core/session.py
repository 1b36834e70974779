"""A training session: start a run, resume one, or check and start several processes (torchrun).

What `seqtool train` and `seqtool forecast` do, usable from Python: the CLI only parses flags and
prints. A KeyboardInterrupt the trainer did not turn into a checkpoint itself still ends with the
resume command.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from seqtool.core import distributed
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.progress import Reporter
from seqtool.core.run import RunDir, check_complete, load_checkpoint
from seqtool.core.spec import OPTIONS, RunSpec, apply_overrides, from_dict, split_flags
from seqtool.core.task import get_task_class
from seqtool.core.trainer import Interrupted, Trainer


def start_run(spec: RunSpec, *, reporter: Reporter | None = None, command: str = "") -> Trainer:
    """A Trainer for a new run: prepares the task's data, then creates the run directory."""
    dist = _join(spec)
    task = get_task_class(spec.task).from_spec(spec)
    # [ddp] rank 0 creates (and locks) the run directory; the others learn its path and never write to it
    run = dist.on_main(lambda: RunDir.create(spec.output.out, spec.output.runs_root, f"{spec.task}-{spec.model.cell}",
                                             overwrite=spec.output.overwrite),
                       share=lambda r: str(r.path))
    run = run if dist.is_main else RunDir(Path(run))  # [ddp] the others only know where it is
    try:
        return Trainer(spec, task, run, reporter=reporter, command=command)
    except BaseException:
        if dist.is_main:
            run.discard_if_unused(Path(spec.output.runs_root))
        run.release()
        raise


def resume_run(run_arg: str, flags: dict, *, reporter: Reporter | None = None, command: str = "", corpus: str | None = None) -> Trainer:
    """A Trainer that continues a run from its last checkpoint; `flags` may change only the options
    declared resumable (budgets, where it runs)."""
    overrides, clear = split_flags(flags)
    changed = sorted((set(overrides) | clear) - {o.dotted for o in OPTIONS.values() if o.opt.resumable})
    if changed:
        names = ", ".join(OPTIONS[d].flag for d in changed)
        raise UsageError(f"--resume continues a run as it was specified; these flags would change it: {names}")
    dist, _ = distributed.setup(overrides.get("train.device") or "auto")

    def open_run() -> tuple[RunDir, dict]:
        run = RunDir.open(run_arg)
        try:
            return run, check_complete(load_checkpoint(run.checkpoint("last")), run.checkpoint("last"), training=True)
        except BaseException:
            run.release()
            raise

    # [ddp] rank 0 opens the run and reads the checkpoint; the others get both (no shared disk needed)
    run, payload = dist.on_main(open_run, share=lambda opened: (str(opened[0].path), opened[1]))
    run = run if dist.is_main else RunDir(Path(run))  # [ddp] the others only know where it is
    try:
        spec = from_dict(payload["spec"], source=str(run.checkpoint("last")))
        if spec.task != payload.get("task"):
            raise SeqtoolError(f"{run.checkpoint('last')} is damaged: it holds a {payload.get('task')!r} model but a {spec.task!r} spec")
        apply_overrides(spec, overrides, clear)
        if corpus is not None:
            spec.data.corpus = corpus
        if spec.data.corpus == "-" and corpus is None:
            raise UsageError("this run was trained from standard input; pass the same data again to resume it")
        _join(spec)
        task = get_task_class(spec.task).from_spec(spec)
        if task.task_state() != payload["task_state"]:
            raise SeqtoolError("the data given to --resume does not match the run's data (vocabulary or preprocessing differ)")
        return Trainer(spec, task, run, reporter=reporter, command=command, resume=payload)
    except BaseException:
        run.release()
        raise


def _join(spec: RunSpec) -> distributed.Dist:
    """[ddp] Join torchrun's process group (nothing to do in one process)."""
    dist, _ = distributed.setup(spec.train.device)
    dist.check_batch(spec.train.batch)
    if dist.active and spec.data.corpus == "-":
        raise UsageError("several processes cannot share standard input: save the corpus to a file and pass its path")
    return dist


def check_launch(nproc: int, spec: RunSpec | None, resume: str | None) -> None:
    """What can be checked before `--nproc N` starts N processes: each would otherwise say it N times."""
    from seqtool.core.device import pick_device

    if nproc < 1:
        raise UsageError("--nproc must be >= 1")
    if distributed.env_world_size() > 1 or "LOCAL_RANK" in os.environ:
        raise UsageError("--nproc starts torchrun; this process is already one of torchrun's workers")
    if resume:
        RunDir.open(resume).release()  # a clear error now if it is no run (or one in use)
        return
    if spec.data.corpus == "-":
        raise UsageError("several processes cannot share standard input: save the corpus to a file and pass its path")
    pick_device(spec.train.device)  # --device cuda without one: say so here, once
    if spec.train.batch % nproc:
        raise UsageError(f"--batch {spec.train.batch} is the global batch, split evenly across processes: it must be a multiple of --nproc {nproc}")


@contextmanager
def resumable(trainer: Trainer):
    """A Ctrl-C the trainer does not turn into a checkpoint itself (a second one, or one while the
    report is written) still ends with one line saying how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the last checkpoint is intact; resume with: seqtool train --resume {trainer.run.path}",
                          exit_code=130) from None


def fit(trainer: Trainer) -> dict:
    """Train to the end of the budget; returns the run's summary (what report.json holds)."""
    with resumable(trainer):
        return trainer.fit()


