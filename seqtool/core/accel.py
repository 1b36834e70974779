"""The GPU paths, kept small and run on CPU by the same code: mixed precision (autocast, with a
GradScaler for fp16), pinned host batches for non-blocking copies, and optional torch.compile.

Nothing here reads a value back to the host: with fp16 on CUDA the optimiser is a fused one, which
takes the scaler's inf check on the device instead of syncing for it.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import nullcontext
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from seqtool.core.errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast for the forward pass and loss; loss scaling for fp16. Weights, optimiser state and
    checkpoints stay fp32 whatever the precision."""

    def __init__(self, name: str, device: torch.device):
        if name not in PRECISIONS:
            raise UsageError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError("--precision bf16: this GPU has no bfloat16 support; use fp16 or fp32")
        self.name, self.device = name, device
        self.dtype = _DTYPES[name]
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def autocast(self):
        if not self.mixed:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate (scaled for fp16); tasks may call this per segment inside the autocast
        region of the step, but the backward pass itself runs outside it, as torch recommends."""
        if not self.mixed:
            loss.backward()
            return
        with torch.autocast(self.device.type, enabled=False):
            self.scaler.scale(loss).backward()  # scale() is the identity when the scaler is off

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Before clipping: gradients back to their true size."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()

    def finite_norm(self, norm: torch.Tensor) -> torch.Tensor:
        """With loss scaling, an overflowing step is skipped, not a failure: count its norm as 0."""
        if self.scaler.is_enabled():
            return torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))
        return norm

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict | None) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


def fused_optimizers(device: torch.device) -> bool:
    """Fused Adam/AdamW/SGD on CUDA: one kernel per step, and GradScaler without a host sync."""
    return device.type == "cuda"


# ---- host -> device --------------------------------------------------------------------------
def _pin(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory() if obj.device.type == "cpu" else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_pin(o) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pin(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _pin(v) for k, v in obj.items()}
    return obj


def pinned(batches: Iterable, device: torch.device) -> Iterator:
    """Batches in page-locked memory when training on CUDA, so the tasks' .to(device,
    non_blocking=True) copies overlap with compute; unchanged on CPU."""
    if device.type != "cuda":
        yield from batches
        return
    for batch in batches:
        yield _pin(batch)


# ---- torch.compile ---------------------------------------------------------------------------
def compile_backend() -> str:
    """SEQTOOL_COMPILE_BACKEND picks torch.compile's backend (default inductor; the tests use
    aot_eager, which traces the same graphs without generating code)."""
    return os.environ.get("SEQTOOL_COMPILE_BACKEND", "inductor")


def compile_unavailable(device: torch.device, backend: str) -> str | None:
    """Why torch.compile cannot run here, or None."""
    try:
        import torch._dynamo as dynamo
    except Exception as exc:  # noqa: BLE001 - any import problem means no compile
        return f"torch.compile cannot be imported ({type(exc).__name__})"
    if not dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version_info.major}.{sys.version_info.minor} on this platform"
    if backend == "inductor":
        if device.type == "cpu":
            cxx = os.environ.get("CXX")
            if not (cxx and shutil.which(cxx)) and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
                return "the inductor backend needs a C++ compiler on CPU (none found; set CXX)"
        elif device.type == "cuda":
            try:
                from torch.utils._triton import has_triton
            except ImportError:
                return "the inductor backend needs Triton on CUDA"
            if not has_triton():
                return "the inductor backend needs Triton on CUDA (not installed)"
    return None


def maybe_compile(model: nn.Module, enabled: bool, device: torch.device, warn=None) -> nn.Module:
    """torch.compile(model) when asked and possible; otherwise the model, with a warning saying why."""
    if not enabled:
        return model
    backend = compile_backend()
    reason = compile_unavailable(device, backend)
    if reason is not None:
        (warn or _warn)(f"--compile: {reason}; training without it")
        return model
    return torch.compile(model, backend=backend, dynamic=False)


def _warn(message: str) -> None:
    print(f"seqtool: warning: {message}", file=sys.stderr, flush=True)


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Stop re-faulting the same memory every training step.

    A step allocates the same large tensors every time (a 35k-word vocabulary's logits are ~100 MB).
    By default glibc serves each allocation above 32 MB with a fresh mmap and unmaps it on free, so
    every step faults all those pages in again: measured on a 35k-word LSTM step, ~100k minor page
    faults per step and a quarter of the time in the kernel. Here glibc serves them from its heap
    and keeps what is freed (no mmap, no trimming), and torch's CPU allocator puts large tensors on
    transparent huge pages (THP_MEM_ALLOC_ENABLE, unless the user set it), which also keeps the
    heap from fragmenting. Measured together: ~0 faults per step, ~0 system time. Returns whether
    it applied (Linux with glibc; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # read by torch's allocator at each allocation
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False
