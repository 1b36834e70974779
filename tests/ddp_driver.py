"""Run by tests/test_distributed.py under torchrun: train the spec given as JSON, with rank 1 alone
asking to stop after global step STOP (as a Ctrl-C reaching one process would)."""

import json
import sys

from seqtool.core.spec import from_dict
from seqtool.core.session import start_run
from seqtool.core.trainer import Interrupted


def main() -> int:
    """The trainer lives in this function, not in a module global: a DDP model still alive while the
    interpreter shuts down can abort the process in gloo's threads (as the CLI, it is freed first)."""
    spec, stop = from_dict(json.loads(sys.argv[1])), int(sys.argv[2])
    trainer = start_run(spec)
    trainer.callbacks.append(lambda tr: tr.request_stop() if tr.dist.rank == 1 and tr.state.global_step == stop else None)
    try:
        trainer.fit()
    except Interrupted:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
