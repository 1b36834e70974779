"""One registry per family: a family registered from outside seqtool (tests/toyfamily.py) trains,
evaluates, exports and runs on onnxruntime through the shared train/eval/export paths."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from seqtool.core.family import families, family, register, unregister

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy():
    import toyfamily

    register(toyfamily.TOY)
    yield toyfamily
    unregister(toyfamily.TOY.name)


def test_a_registered_family_trains_evaluates_and_exports(cli, tmp_path, toy):
    result = cli("train", "--task", "toy", "--hidden", "16", "--batch", "32", "--lr", "0.03", "--epochs", "12", "--max-seconds", "0",
                 "--threads", "1", "--out", "run", "--quiet")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["task"] == "toy" and report["best"]["val_accuracy"] > 0.9  # first bit == last bit: learnt
    saved = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())  # only the options a toy run reads
    assert saved["task"] == "toy" and "translate" not in saved and "forecast" not in saved and "level" not in saved["data"]
    scored = cli("eval", "run", "--json", "--out", "scores.json")
    assert scored.code == 0, scored.err
    assert json.loads(scored.out) == json.loads((tmp_path / "scores.json").read_text())
    assert json.loads(scored.out)["accuracy"] > 0.9
    refused = cli("eval", "run", "--per-token", "-")  # another family's eval flag
    assert (refused.code, refused.err) == (2, "seqtool: error: --per-token is for language models; this is a toy run\n")
    exported = cli("export", "run")
    assert exported.code == 0, exported.err
    files = json.loads(exported.out)["files"]
    assert [Path(f).name for f in files] == ["model.onnx", "model.json"]
    from seqtool.core.export import restore_engine

    onnx, native = restore_engine(str(tmp_path / "run"), "toy", engine="onnxruntime"), restore_engine(str(tmp_path / "run"), "toy")
    x = toy.bit_strings(9, 5)[0]
    with torch.no_grad():
        assert torch.allclose(onnx.model(x), native.model(x), atol=1e-4)


def test_options_of_other_families_are_refused_for_it(cli, toy):
    result = cli("train", "--task", "toy", "--level", "word", "--dry-run")
    assert (result.code, result.err) == (2, "seqtool: error: --level does not apply to task toy (it is used by lm, translate, classify and tag)\n")
    assert "toy" in family("toy").title and list(families())[-1] == "toy"


def test_unknown_tasks_name_the_registered_ones(cli):
    result = cli("train", "--task", "nope", "--dry-run")
    assert result.code == 2
    assert result.err == f"seqtool: error: task: 'nope' is not one of {', '.join(families())}\n"


def test_core_and_cli_never_name_a_family():
    found = subprocess.run(["grep", "-rnE", r'"(lm|translate|forecast|panel|classify|tag)"', "seqtool/cli", "seqtool/core"],
                           cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    assert all(line.startswith("seqtool/core/spec.py:") for line in found), found  # option declarations only
