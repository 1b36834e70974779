"""`python -m seqtool.core.launch ARGS`: torchrun itself (torch.distributed.run: the same arguments and
elastic agent) with a CLI's manners. `seqtool train --nproc N` runs it.

torchrun reports a failed worker with a Python traceback and a table; the workers have already
printed the error (rank 0 prints user errors, every rank its internal errors), so here a failure
becomes the worker's exit code, plus one line when the first failure is not one rank 0 reported.
"""

from __future__ import annotations

import logging
import signal
import sys


#: exit codes of errors that rank 0 prints itself: SeqtoolError, UsageError, interrupted (SIGINT/SIGTERM)
REPORTED_BY_RANK0 = (1, 2, 130, 143)
#: rank 0's exit codes that only ever follow its own message or a stop every rank agreed on (1 may
#: also be a silent failure in a collective, after another rank went away)
ENDED_BY_RANK0 = (2, 130, 143)
#: signals a worker gets because another one ended: the agent stops the survivors with SIGTERM, and
#: one may abort (SIGABRT, in its communication thread) when its peer's connection closes
CONSEQUENCES = (signal.SIGTERM, signal.SIGABRT)


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the workers speak for themselves
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:
        first_rank, first = _cause(exc)
        code = first.exitcode
        rank0 = exc.failures.get(0)
        if code < 0 and -code in CONSEQUENCES and rank0 is not None and rank0.exitcode in ENDED_BY_RANK0:
            return rank0.exitcode  # rank 0 ended the job (and said why); a survivor's SIGTERM/SIGABRT came after
        if code < 0:  # killed by a signal (out of memory, kill -9): nobody else can say it
            print(f"seqtool: error: training process rank {first_rank} was killed by signal {-code}", file=sys.stderr, flush=True)
            return 128 - code
        if rank0 is not None and rank0.exitcode in REPORTED_BY_RANK0:
            return rank0.exitcode  # rank 0 has printed the error (every rank meets the same user error)
        print(f"seqtool: error: training process rank {first_rank} failed with exit code {code}", file=sys.stderr, flush=True)
        return code or 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


def _cause(exc) -> tuple[int, object]:
    """(rank, failure) that ended the job: a rank killed from outside (kill -9, the OOM killer) over
    the first failure in time, since the survivors end by signals too (CONSEQUENCES)."""
    killed = sorted((rank, f) for rank, f in exc.failures.items() if f.exitcode < 0 and -f.exitcode not in CONSEQUENCES)
    return killed[0] if killed else exc.get_first_failure()


if __name__ == "__main__":
    raise SystemExit(main())
