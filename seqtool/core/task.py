"""The Task seam. The trainer, run directory, spec handling and CLI plumbing are shared; a task
supplies its data, its model, the loss of one batch and its held-out evaluation.

A task is built in one of two ways:
  Task.from_spec(spec)                      -> prepares data from the spec's corpus (training)
  Task.from_checkpoint(spec, task_state)    -> no data, enough to rebuild the model (inference)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator

import torch
from torch import nn


class Task(ABC):
    name: str = ""
    #: metric in evaluate()'s dict that picks the best checkpoint, and whether lower is better
    monitor: str = "val_loss"
    monitor_lower_is_better: bool = True
    #: what train_loss's count measures, for throughput ("tokens", "sentences", "windows")
    unit: str = "tokens"
    #: the training loss is a negative log-likelihood per token, so exp(loss) is a perplexity
    loss_is_nll: bool = False

    def __init__(self, spec):
        self.spec = spec

    @classmethod
    @abstractmethod
    def from_spec(cls, spec) -> "Task":
        """Load and prepare the training data the spec names."""

    @classmethod
    @abstractmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "Task":
        """Rebuild what inference needs (vocabulary, scaling, ...) from a checkpoint."""

    @abstractmethod
    def task_state(self) -> dict:
        """Plain data (lists, dicts, numbers, strings) needed by from_checkpoint; stored in checkpoints."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        ...

    @abstractmethod
    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        """The batches of one epoch, in an order decided by `generator` alone (so resume can replay it)."""

    def batches_per_epoch(self) -> int | None:
        return None

    #: the dimension of a batch's tensors that indexes its rows (examples); DDP splits it
    batch_dim: int = 0

    def shard_batch(self, batch: Any, rank: int, world: int) -> Any:
        """Process `rank`'s share of one global batch when training on `world` processes: by default
        every tensor split along `batch_dim` into contiguous parts. Override for other layouts."""
        from seqtool.core.distributed import shard_rows

        return shard_rows(batch, rank, world, self.batch_dim)

    @abstractmethod
    def train_loss(self, model: nn.Module, batch: Any, state: Any, device: torch.device):
        """Mean loss of one batch -> (loss, count, state).

        `count` is a number or 0-d tensor (tokens, sentences...) for throughput and averaging; do not
        call .item() on it (no host syncs in the step). `state` is what the next batch of the same
        epoch receives (already detached by the trainer): a carried hidden state, or None.
        """

    def train_backward(self, model: nn.Module, batch: Any, state: Any, device: torch.device, backward) -> tuple:
        """Loss of one batch with its gradient accumulated -> (detached loss, count, state).

        The default backpropagates train_loss once through `backward`; a task that cuts the graph
        itself (truncation strategies) calls `backward` once per segment instead.
        """
        loss, count, state = self.train_loss(model, batch, state, device)
        backward(loss)
        return loss.detach(), count, state

    @abstractmethod
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Held-out metrics; must contain `self.monitor`."""

    def held_out_seconds(self, model: nn.Module, device: torch.device, budget: float) -> tuple[float, float]:
        """Predicted seconds of one validation pass and of the final test scoring, asked before
        training when --max-seconds is set so that the budget holds both; the task may shrink its
        test sample to fit `budget` (test() then says so). (0, 0): held-out parts too small to matter
        (the trainer still keeps the measured time of the last validation in reserve)."""
        return 0.0, 0.0

    def validation_label(self) -> str:
        """What one validation pass scores, for the progress line and the epoch log ('131,072 of 5,000,000 tokens')."""
        return ""

    def test(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Metrics on the test split, which selection (best checkpoint, early stopping) never sees:
        computed once, for the chosen model, for the report. {} when the task has no test split."""
        return {}

    def report(self, model: nn.Module, device: torch.device, run_dir) -> tuple[dict, list[str]]:
        """What the task adds to the run's report: (entries for report.json, Markdown sections for
        report.md); it may also write its own files (plots) into run_dir."""
        return {}, self.report_sections(model, device)

    def report_sections(self, model: nn.Module, device: torch.device) -> list[str]:
        """Extra Markdown for report.md (samples, translations, tables)."""
        return []


def get_task_class(name: str) -> type[Task]:
    """The Task class of a family, by its task name (imported on first use: `seqtool sample` need not load translation)."""
    from seqtool.core.family import family

    return family(name).hook("task")
