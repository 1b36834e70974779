"""--log tensorboard,csv: the same per-epoch metrics as metrics.jsonl, in TensorBoard event files and
a flat CSV, kept consistent across a resume."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import TINY


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tensorboard_events_and_csv_hold_what_metrics_jsonl_holds(cli, tmp_path, tiny_text):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = cli("train", tiny_text, *TINY, "--epochs", "3", "--log", "tensorboard,csv", "--out", "run")
    assert result.code == 0, result.err
    rows = jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 3
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "val_ppl", "lr", "grad_norm", "tokens_per_s"):
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [r["step"] for r in rows]
        assert [e.value for e in logged] == pytest.approx([r[key] for r in rows], rel=1e-6)
    table = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [float(r["val_loss"]) for r in table] == pytest.approx([r["val_loss"] for r in rows])
    assert list(table[0])[:2] == ["epoch", "step"]


def test_the_csv_follows_a_resume_and_a_bad_sink_is_refused(cli, tmp_path, tiny_text):
    assert cli("train", tiny_text, *TINY, "--epochs", "2", "--log", "csv", "--out", "run").code == 0
    resumed = cli("train", "--resume", "run", "--epochs", "4", "--quiet")
    assert resumed.code == 0, resumed.err
    rows = jsonl(tmp_path / "run" / "metrics.jsonl")
    table = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in table] == [r["epoch"] for r in rows] == [1, 2, 3, 4]
    result = cli("train", tiny_text, *TINY, "--log", "wandb")
    assert result.code == 2 and result.err == "seqtool: error: output.log: 'wandb' is not one of tensorboard, csv\n"
