"""Hostile inputs that used to hang or mislead: pipes and devices named as files, checkpoints with
non-finite weights, UTF-16 text with a byte-order mark, a full disk before the first checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqtool.core.run import load_checkpoint, save_checkpoint
from tests.conftest import TINY
from tests.test_reliability import fail_fsync_of, one_error_line

ROOT = Path(__file__).resolve().parents[1]


def seqtool(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """A real process with a deadline: a command that blocks fails the test instead of hanging it."""
    return subprocess.run([sys.executable, "-m", "seqtool", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [["train"], ["preprocess"], ["forecast"]])
def test_a_named_pipe_is_refused_not_waited_on(tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = seqtool(*command, str(fifo), "--quiet" if command != ["preprocess"] else "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"seqtool: error: {fifo} is a named pipe, not a regular file; save the data to a file, "
                             "or send it to standard input with '-'\n")


def test_an_endless_device_is_refused(tmp_path):
    result = seqtool("train", "/dev/zero", "--quiet", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("seqtool: error: /dev/zero is a character device, not a regular file")


def test_a_spec_that_is_a_pipe_is_refused(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result = seqtool("train", "x.txt", "--spec", str(fifo), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"seqtool: error: spec file {fifo} is not a regular file\n")


@pytest.fixture
def poisoned_run(cli, tiny_text, tmp_path) -> Path:
    """A finished run whose checkpoints were then given a NaN weight."""
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", tmp_path / "run").code == 0
    for name in ("best", "last"):
        path = tmp_path / "run" / "checkpoints" / f"{name}.pt"
        payload = load_checkpoint(path)
        key = next(k for k in payload["model"] if payload["model"][k].is_floating_point())
        payload["model"][key].view(-1)[0] = float("nan")
        payload = {k: v for k, v in payload.items() if k not in ("format", "version")}
        save_checkpoint(path, payload)
    return tmp_path / "run"


@pytest.mark.parametrize("args", [["sample", "-c", "{run}"], ["eval", "{run}"], ["train", "--resume", "{run}", "--epochs", "2"]])
def test_non_finite_weights_are_refused_at_load_naming_the_file(cli, poisoned_run, args):
    line = one_error_line(cli(*[a.format(run=poisoned_run) for a in args]), 1)
    which = "last" if "--resume" in args else "best"
    assert line.startswith(f"seqtool: error: {poisoned_run / 'checkpoints' / (which + '.pt')} holds non-finite weights (NaN or inf in ")


def test_a_utf16_file_with_a_byte_order_mark_is_read_as_utf16(cli, tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 120
    (tmp_path / "u16.txt").write_bytes(text.encode("utf-16"))  # BOM + little-endian
    (tmp_path / "u8.txt").write_text(text, encoding="utf-8")
    wide, plain = cli("preprocess", "u16.txt", "--json"), cli("preprocess", "u8.txt", "--json")
    assert wide.code == 0, wide.err
    assert wide.out.replace("u16.txt", "X") == plain.out.replace("u8.txt", "X")


def test_disk_full_before_the_first_checkpoint_says_none_was_written(cli, tiny_text, monkeypatch, tmp_path):
    fail_fsync_of(monkeypatch, ".last.pt.", on_call=0)  # the step-0 checkpoint
    line = one_error_line(cli("train", tiny_text, *TINY, "--epochs", "1", "--out", tmp_path / "run"), 1)
    assert "No space left on device" in line and line.endswith("no checkpoint has been written yet")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_training_step_that_makes_weights_non_finite_stops_before_saving(cli, tiny_text, monkeypatch, tmp_path):
    """A finite loss whose update overflows the weights: stopped, and the saved model is the finite one before it."""
    from seqtool.core import trainer

    original = trainer.Trainer.step

    def step(self, batch, sums):
        count = original(self, batch, sums)
        if self.state.global_step == 5:
            with torch.no_grad():
                self.params[0].fill_(float("inf"))
        return count

    monkeypatch.setattr(trainer.Trainer, "step", step)
    line = one_error_line(cli("train", tiny_text, *TINY, "--epochs", "1", "--out", tmp_path / "run"), 1)
    assert "became non-finite" in line
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["progress"]["global_step"] == 0 and all(torch.isfinite(t).all() for t in saved["model"].values())
