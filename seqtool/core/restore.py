"""Rebuild a trained model for inference from a checkpoint (file, run directory or the latest run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seqtool.core.device import pick_device
from seqtool.core.errors import SeqtoolError
from seqtool.core.run import check_complete, load_checkpoint, resolve_checkpoint
from seqtool.core.spec import RunSpec, from_dict
from seqtool.core.task import get_task_class
from seqtool.core.task import Task


@dataclass
class Restored:
    path: Path
    spec: RunSpec
    task: Task
    model: nn.Module
    device: torch.device
    payload: dict


def restore(checkpoint: str | None, task: str | None = None, device: str = "auto", which: str = "best") -> Restored:
    path = resolve_checkpoint(checkpoint, which)
    payload = check_complete(load_checkpoint(path, task=task), path)
    spec = from_dict(payload["spec"], source=str(path))
    try:
        task_obj = get_task_class(payload["task"]).from_checkpoint(spec, payload["task_state"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SeqtoolError(f"{path} is a damaged checkpoint (its task state: {type(exc).__name__} {exc})") from None
    dev = pick_device(device)
    model = task_obj.build_model()
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise SeqtoolError(f"{path}: the weights do not fit the model its spec describes ({str(exc).splitlines()[0]})") from None
    model.to(dev).eval()
    return Restored(path, spec, task_obj, model, dev, payload)


def checkpoint_task(checkpoint: str | None) -> str:
    """The task a checkpoint was trained for, so commands shared by tasks can dispatch."""
    return str(load_checkpoint(resolve_checkpoint(checkpoint, "best")).get("task"))
