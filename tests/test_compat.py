"""Checkpoints written before the package layout moved (format version 1, seqtool at 7b4cab0) still
load, and give what that version gave: the fixtures were trained by it and the expected outputs
below are what its CLI printed for them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from seqtool.core.run import CHECKPOINT_VERSION, load_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def old_runs(tmp_path):
    for name in ("lm-format1.torch", "translate-format1.torch", "format1-text.txt"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def test_the_fixtures_hold_the_old_key_names():
    payload = load_checkpoint(FIXTURES / "translate-format1.torch")
    assert payload["version"] == CHECKPOINT_VERSION == 1
    assert "dir" in payload["spec"]["output"] and "target" in payload["spec"]["translate"]


def test_an_old_language_model_samples_and_scores_as_before(cli, old_runs):
    result = cli("sample", "-c", "lm-format1.torch", "--prefix", "the time", "--length", "30", "--greedy")
    assert result.code == 0, result.err
    assert result.out == "the time" + "e" * 30 + "\n"  # what the old version printed: an undertrained model
    result = cli("eval", "lm-format1.torch", "format1-text.txt", "--json")
    assert result.code == 0, result.err
    scored = json.loads(result.out)
    assert scored["tokens"] == 3038
    assert scored["perplexity"] == pytest.approx(14.886200820784122, rel=1e-6)


def test_an_old_translator_translates_as_before(cli, old_runs):
    result = cli("translate", "-c", "translate-format1.torch", "go .", "help !", "--json")
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.out.splitlines()]
    assert records[0]["translations"][0]["text"] == "" and records[0]["translations"][0]["score"] == pytest.approx(-2.359651803970337, rel=1e-5)
    assert records[1]["translations"][0]["text"] == " ".join(["aide"] * 16)


def test_a_newer_format_is_refused_naming_its_version(cli, tmp_path):
    payload = load_checkpoint(FIXTURES / "lm-format1.torch")
    payload["version"] = CHECKPOINT_VERSION + 1
    torch.save(payload, tmp_path / "future.torch")
    result = cli("sample", "-c", "future.torch")
    assert result.code == 1
    assert result.err == "seqtool: error: future.torch has checkpoint format version 2; this seqtool reads version 1\n"
