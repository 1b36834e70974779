"""`seqtool export RUN --format onnx --out FILE.onnx`: a trained run as ONNX graphs that run
without Python (onnxruntime, other runtimes, a browser), with its vocabulary and spec beside them.

Each family declares what its graphs are (its `graphs` hook, seqtool/core/family.py: lm/export.py,
forecast/export.py, translate/export.py): a module, example inputs and which of their axes are dynamic. Each graph is
exported with torch's maintained exporter (`torch.onnx.export(..., dynamo=True)`), then run by
onnxruntime on other inputs (another batch size) and compared with torch: past TOLERANCE the
export is refused and nothing is left behind. Files appear only when every graph passed: one
`FILE.onnx` (or `FILE.encoder.onnx` and `FILE.decoder.onnx` for a translator) and `FILE.json`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.family import family

FORMATS = ("onnx",)
SIDECAR_FORMAT = "seqtool-onnx/1"
#: parity: |onnxruntime - torch| <= ATOL + RTOL |torch|, element by element (float32 graphs)
ATOL, RTOL = 1e-4, 1e-4
ENGINES = ("torch", "onnxruntime")


@dataclass
class Graph:
    """One graph to export: `module(*example.values())` traces it; `check` holds other inputs
    (same names) for the parity test, run against `reference` (default: the module); `dynamic`
    names the axes that vary (input -> {axis: name})."""

    part: str  # "model", or "encoder" / "decoder"
    module: nn.Module
    example: dict[str, torch.Tensor]
    check: dict[str, torch.Tensor]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    reference: nn.Module | None = None  # what parity compares with, when not the exported module itself


def graph_path(out: Path, part: str) -> Path:
    stem = out.with_suffix("") if out.suffix == ".onnx" else out
    return stem.with_name(stem.name + ("" if part == "model" else f".{part}") + ".onnx")


def sidecar_path(out: Path) -> Path:
    return (out.with_suffix("") if out.suffix == ".onnx" else out).with_suffix(".json")


def export_run(checkpoint: str | None, fmt: str = "onnx", out: str | None = None) -> dict:
    """Export a run's best checkpoint; returns what was written and the parity found."""
    from seqtool.core.restore import restore

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: the formats are {', '.join(FORMATS)}")
    r = restore(checkpoint, device="cpu")
    graphs: list[Graph] = family(r.payload["task"]).hook("graphs")(r)
    target = (Path(out) if out else r.path.parent.parent / "export" / "model.onnx").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    parts = {g.part: graph_path(target, g.part) for g in graphs}
    temporary = {part: path.with_name(path.name + ".part") for part, path in parts.items()}
    differences = {}
    try:
        for g in graphs:
            _export(g, temporary[g.part], r.payload["task"])
            differences[g.part] = _parity(g, temporary[g.part])
        for part in parts:
            os.replace(temporary[part], parts[part])
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    sidecar = {"format": SIDECAR_FORMAT, "task": r.payload["task"], "checkpoint": str(r.path),
               "global_step": int(r.payload["progress"]["global_step"]),
               "graphs": {g.part: {"file": parts[g.part].name, "inputs": list(g.example), "outputs": g.outputs,
                                   "dynamic": {k: {str(a): n for a, n in v.items()} for k, v in g.dynamic.items()}} for g in graphs},
               "max_abs_difference": differences, "tolerance": {"atol": ATOL, "rtol": RTOL},
               "spec": r.spec.to_dict(only_used=True), "task_state": r.payload["task_state"]}
    recipe = r.path.parent.parent / "combination.json"  # forecasters: the combination and interval widths, for consumers
    if recipe.exists():
        sidecar["combination"] = json.loads(recipe.read_text(encoding="utf-8"))
    from seqtool.core.run import atomic_write_text

    atomic_write_text(sidecar_path(target), json.dumps(sidecar, indent=1, default=_plain) + "\n")
    return {"files": [str(p) for p in parts.values()] + [str(sidecar_path(target))], "max_abs_difference": differences}


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _export(g: Graph, path: Path, task: str) -> None:
    dims = {}
    dynamic = {name: {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in g.dynamic.get(name, {}).items()}
               for name in g.example}
    sink = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes (e.g. torchvision ops skipped) are not ours to print
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            torch.onnx.export(g.module.eval(), tuple(g.example.values()), str(path), dynamo=True, input_names=list(g.example),
                              output_names=g.outputs, dynamic_shapes=dynamic, verbose=False, external_data=False)
    except Exception as exc:  # the exporter's errors are many kinds; say which part failed, in one line
        raise SeqtoolError(f"the {task} model's {g.part} graph cannot be exported to ONNX: {_cause(exc)}") from None


def _cause(exc: Exception) -> str:
    """The exporter's own summary of what failed (its messages run to pages), as one plain line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1 :]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _parity(g: Graph, path: Path) -> float:
    session = session_for(path)
    got = session.run(g.outputs, {k: v.numpy() for k, v in g.check.items()})
    with torch.no_grad():
        expected = (g.reference or g.module).eval()(*g.check.values())
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    worst = 0.0
    for name, a, b in zip(g.outputs, got, expected):
        b = b.detach().numpy()
        excess = np.abs(a - b) - (ATOL + RTOL * np.abs(b))
        worst = max(worst, float(np.abs(a - b).max(initial=0.0)))
        if a.shape != b.shape or (excess > 0).any():
            raise SeqtoolError(f"the exported {g.part} graph's {name!r} differs from torch's by {float(np.abs(a - b).max()):.3g} "
                               f"(more than {ATOL:g} + {RTOL:g}|x|): nothing was written")
    return worst


def session_for(path: Path, threads: int = 1):
    """An onnxruntime session on the CPU with `threads` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("the onnxruntime engine needs the onnxruntime package: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise SeqtoolError(f"{path} is not a graph onnxruntime can run ({str(exc).strip().splitlines()[0][:200]})") from None


def load_export(checkpoint: str | None, onnx: str | None, task: str, threads: int = 1):
    """(the spec, the task rebuilt from the sidecar, {part: onnxruntime session}) of a run's export:
    `onnx` (FILE.onnx) or the run's export/model.onnx; no torch weights are read. Refused when the
    export is of another task or older than the run's best checkpoint."""
    from seqtool.core.run import load_checkpoint, resolve_checkpoint

    best = resolve_checkpoint(checkpoint, "best")
    target = Path(onnx) if onnx else best.parent.parent / "export" / "model.onnx"
    try:
        sidecar = json.loads(sidecar_path(target).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SeqtoolError(f"no ONNX export at {target}: run seqtool export {best.parent.parent} first") from None
    except (OSError, ValueError) as exc:
        raise SeqtoolError(f"{sidecar_path(target)} is damaged ({type(exc).__name__}: {exc})") from None
    if sidecar.get("format") != SIDECAR_FORMAT or sidecar.get("task") != task:
        raise SeqtoolError(f"{sidecar_path(target)} is not a seqtool ONNX export of a {task} run")
    step = int(load_checkpoint(best).get("progress", {}).get("global_step", -1))
    if step != sidecar.get("global_step"):
        raise SeqtoolError(f"the export at {target} is of step {sidecar.get('global_step')}, the run's best checkpoint is step {step}: "
                           "export again")
    from seqtool.core.spec import from_dict
    from seqtool.core.task import get_task_class

    spec = from_dict(sidecar["spec"], source=str(sidecar_path(target)))
    task_obj = get_task_class(task).from_checkpoint(spec, sidecar["task_state"])
    sessions = {part: session_for(graph_path(target, part), threads) for part in sidecar["graphs"]}
    return spec, task_obj, sessions


def restore_engine(checkpoint: str | None, task: str, device: str = "auto", engine: str = "torch", onnx: str | None = None):
    """The run for inference (a seqtool.core.restore.Restored): its torch model, or with engine
    onnxruntime its export behind the same interface (the task and spec from the sidecar; no torch
    weights are read)."""
    from seqtool.core.restore import Restored, restore
    from seqtool.core.run import resolve_checkpoint

    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: choose {' or '.join(ENGINES)}")
    if engine == "torch":
        if onnx is not None:
            raise UsageError("--onnx needs --engine onnxruntime")
        return restore(checkpoint, task=task, device=device)
    spec, task_obj, sessions = load_export(checkpoint, onnx, task)
    model = family(task).hook("engine")(sessions, spec)
    return Restored(resolve_checkpoint(checkpoint, "best"), spec, task_obj, model, torch.device("cpu"), {})
