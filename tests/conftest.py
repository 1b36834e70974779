"""Shared fixtures: an in-process CLI runner and small, fast training settings."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seqtool.cli import main

torch.set_num_threads(1)  # deterministic and fast on a shared 2-core machine

# small model and budget flags for end-to-end tests: seconds, not minutes
TINY = ["--embed", "8", "--hidden", "32", "--layers", "1", "--dropout", "0", "--batch", "8", "--steps", "16",
        "--threads", "1", "--max-seconds", "0", "--quiet"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `seqtool ARGS` in-process in a temporary working directory; returns code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: bytes | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(exit_info.value.code, captured.out, captured.err)

    return run


@pytest.fixture
def float64():
    """Exact comparisons (scratch vs fused, analytic gradients) run in float64, seeded."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def tiny_text(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 120, encoding="utf-8")
    return path
