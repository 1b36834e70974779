"""Run by tests/test_distributed.py under seqtool's torchrun launcher: `seqtool ARGS`, with rank 1
killed by SIGKILL at global step 3 (as the kernel's out-of-memory killer would)."""

import os
import signal
import sys

from seqtool.cli import main
from seqtool.core import trainer

original_step = trainer.Trainer.step


def step(self, batch, sums):
    if self.dist.rank == 1 and self.state.global_step == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return original_step(self, batch, sums)


trainer.Trainer.step = step
main(sys.argv[1:])
