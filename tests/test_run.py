"""The run directory: atomic files, run naming and runs/latest, checkpoints that load safely,
and exact resume of an interrupted training run."""

import builtins
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import seqtool.core.run as run_module
from seqtool.data.dataset import prepare_text
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.restore import restore
from seqtool.core.run import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    RunDir,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from seqtool.core.spec import from_dict
from seqtool.core.session import resume_run, start_run
from seqtool.core.trainer import Interrupted

TEXT = "the quick brown fox jumps over the lazy dog. "
TIMING = {"elapsed", "tokens_per_s"}


# ---- atomic files ------------------------------------------------------------------------------
def test_atomic_writes_replace_the_file_and_leave_no_temp_files(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_module.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_failed_checkpoint_write_says_the_previous_one_is_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"task": "lm", "w": torch.ones(3)})
    monkeypatch.setattr(run_module.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(SeqtoolError, match="the previous checkpoint is intact"):
        save_checkpoint(path, {"task": "lm", "w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ---- run directories ---------------------------------------------------------------------------
def test_create_refuses_a_non_empty_out_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UsageError, match="is not empty; pass --resume .* or --overwrite"):
        RunDir.create(str(out), tmp_path / "runs", "lm-gru")
    assert (out / "keep.txt").read_text() == "precious"
    run = RunDir.create(str(out), tmp_path / "runs", "lm-gru", overwrite=True)
    assert run.path == out
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    assert not (tmp_path / "runs").exists()  # an explicit --out does not move runs/latest


def test_create_accepts_an_empty_out_and_refuses_a_file(tmp_path):
    (tmp_path / "empty").mkdir()
    assert RunDir.create(str(tmp_path / "empty"), tmp_path, "x").checkpoint_dir.is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        RunDir.create(str(tmp_path / "file"), tmp_path, "x", overwrite=True)


def test_create_makes_unique_names_and_latest_points_at_the_newest(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module.time, "strftime", lambda fmt, *a: "20240101-120000")  # same second
    root = tmp_path / "runs"
    runs = [RunDir.create(None, root, "lm-gru") for _ in range(3)]
    assert [r.path.name for r in runs] == ["20240101-120000-lm-gru", "20240101-120000-lm-gru-2", "20240101-120000-lm-gru-3"]
    latest = root / "latest"
    assert latest.is_symlink()
    assert not os.path.isabs(os.readlink(latest))  # relative: the runs folder can be moved
    assert latest.resolve() == runs[-1].path.resolve()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no temp link left


def test_resolve_checkpoint_finds_the_latest_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTOOL_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SeqtoolError, match="no run found"):
        resolve_checkpoint(None)
    run = RunDir.create(None, tmp_path / "runs", "lm-gru")
    save_checkpoint(run.checkpoint("last"), {"task": "lm"})
    assert resolve_checkpoint(None).resolve() == run.checkpoint("last").resolve()  # no best yet: last
    save_checkpoint(run.checkpoint("best"), {"task": "lm"})
    assert resolve_checkpoint(None).resolve() == run.checkpoint("best").resolve()
    assert resolve_checkpoint(str(run.path), which="last") == run.checkpoint("last")
    with pytest.raises(SeqtoolError, match="no such checkpoint or run directory"):
        resolve_checkpoint(str(tmp_path / "nope"))


def test_metrics_survive_a_line_cut_short_and_truncate_on_resume(tmp_path):
    run = RunDir.create(str(tmp_path / "r"), tmp_path, "x")
    for epoch in (1, 2, 3):
        run.append_metrics({"epoch": epoch, "loss": 1.0 / epoch})
    with open(run.metrics_path, "a") as fh:
        fh.write('{"epoch": 4, "lo')  # killed mid-write
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    run.truncate_metrics(2)
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]


# ---- checkpoints -------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    payload = {
        "task": "lm",
        "model": {"w": torch.randn(3, 4), "b": torch.arange(5)},
        "carry": (torch.ones(2, 1, 3), torch.zeros(2, 1, 3)),
        "progress": {"epoch": 2, "best": None, "elapsed": 1.5, "partial": {"loss": 3.25}},
        "vocab": ["<unk>", "a", " "],
        "versions": {"torch": str(torch.__version__)},
    }
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path, task="lm")
    assert loaded["format"] == CHECKPOINT_FORMAT and loaded["version"] == CHECKPOINT_VERSION
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"]) and torch.equal(loaded["model"]["b"], payload["model"]["b"])
    assert isinstance(loaded["carry"], tuple) and all(torch.equal(a, b) for a, b in zip(loaded["carry"], payload["carry"]))
    assert loaded["progress"] == payload["progress"]
    assert loaded["vocab"] == payload["vocab"] and loaded["versions"] == payload["versions"]


def test_load_refuses_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 4)
    dataset = tmp_path / "tiny.data"
    prepare_text(TEXT, "char", "lower").save(dataset)  # a torch zip, but a dataset
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(2)}, plain)  # a torch file without our format marker
    for path in (text, empty, noise, dataset, plain):
        with pytest.raises(SeqtoolError, match="is not a seqtool checkpoint"):
            load_checkpoint(path)
    with pytest.raises(SeqtoolError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_refuses_a_truncated_checkpoint(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"task": "lm", "w": torch.randn(64, 64)})
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(SeqtoolError, match="is not a readable checkpoint"):
            load_checkpoint(bad)


def test_load_refuses_another_task_and_another_version(tmp_path):
    path = tmp_path / "t.pt"
    save_checkpoint(path, {"task": "translate"})
    with pytest.raises(SeqtoolError, match="is a 'translate' checkpoint, not a 'lm' one"):
        load_checkpoint(path, task="lm")
    with pytest.raises(SeqtoolError, match="is a 'translate' checkpoint, not a 'lm' one"):
        restore(str(path), task="lm", device="cpu")
    assert load_checkpoint(path)["task"] == "translate"  # no task asked: fine
    old = tmp_path / "v99.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "version": 99, "task": "lm"}, old)
    with pytest.raises(SeqtoolError, match="has checkpoint format version 99; this seqtool reads version 1"):
        load_checkpoint(old)


class MakesMarker:
    """Unpickling this calls open(marker, 'w'): a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    # the crafted object really executes when unpickled the unsafe way
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(MakesMarker(proof))).close()
    assert proof.exists()

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "task": "lm", "x": MakesMarker(marker)}, evil)
    with pytest.raises(SeqtoolError, match="refusing to load .*could run code") as exc:
        load_checkpoint(evil)
    assert "\n" not in str(exc.value)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "x": MakesMarker(marker)}))
    with pytest.raises(SeqtoolError):
        load_checkpoint(raw)
    assert not marker.exists()


# ---- training runs: checkpoints and exact resume -----------------------------------------------
def lm_spec(tmp_path, out, sampling="sequential", epochs=3):
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT * 16)
    return from_dict({
        "data": {"corpus": str(corpus), "steps": 8, "sampling": sampling, "clean": "lower", "val_fraction": 0.1},
        "model": {"cell": "gru", "hidden": 16, "layers": 2, "embed": 8, "dropout": 0.2},  # dropout: uses the RNG
        "train": {"batch": 4, "epochs": epochs, "max_seconds": None, "threads": 1, "lr": 0.005,
                  "schedule": "cosine", "warmup": 5, "seed": 3},
        "output": {"dir": str(tmp_path / out)},
    })


def metrics_without_timing(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def stop_at(step: int):
    return lambda tr: tr.request_stop() if tr.state.global_step == step else None


def test_trainer_checkpoints_load_and_rebuild_the_model(tmp_path):
    trainer = start_run(lm_spec(tmp_path, "run", epochs=1))
    trainer.fit()
    payload = load_checkpoint(trainer.run.checkpoint("last"), task="lm")
    assert payload["progress"]["epoch"] == 1
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(payload["model"][name], tensor), name
    restored = restore(str(trainer.run.path), task="lm", device="cpu")
    assert restored.task.vocab.itos == trainer.task.vocab.itos
    assert (trainer.run.path / "spec.yaml").is_file() and (trainer.run.path / "run.json").is_file()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = {}
    for sampling in ("sequential", "random"):
        tmp_path = tmp_path_factory.mktemp(f"full-{sampling}")
        trainer = start_run(lm_spec(tmp_path, "full", sampling))
        trainer.fit()
        out[sampling] = (tmp_path, trainer)
    return out


@pytest.mark.parametrize("sampling", ["sequential", "random"])
@pytest.mark.parametrize("where", ["mid-epoch", "epoch-end"])
def test_resume_continues_exactly_where_the_run_stopped(tmp_path, uninterrupted, sampling, where):
    full_dir, full = uninterrupted[sampling]
    expected = metrics_without_timing(full.run.path)
    first_epoch_steps = expected[0]["step"]
    stop = first_epoch_steps + 3 if where == "mid-epoch" else first_epoch_steps

    trainer = start_run(lm_spec(full_dir, tmp_path / "cut", sampling))
    trainer.callbacks.append(stop_at(stop))
    with pytest.raises(Interrupted, match=f"interrupted at step {stop}; checkpoint saved") as exc:
        trainer.fit()
    assert exc.value.exit_code == 130
    assert len(metrics_without_timing(tmp_path / "cut")) == (1 if where == "mid-epoch" else 0)
    saved = load_checkpoint(trainer.run.checkpoint("last"))["progress"]
    assert saved["global_step"] == stop

    resumed = resume_run(str(tmp_path / "cut"), {})
    assert resumed.state.global_step == stop
    resumed.fit()
    assert metrics_without_timing(tmp_path / "cut") == expected
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_resume_may_extend_the_budget_but_not_change_the_run(tmp_path):
    trainer = start_run(lm_spec(tmp_path, "run", epochs=1))
    trainer.fit()
    with pytest.raises(UsageError, match="would change it: --hidden, --lr"):
        resume_run(str(trainer.run.path), {"model.hidden": 32, "train.lr": 0.1, "train.epochs": None})
    more = resume_run(str(trainer.run.path), {"train.epochs": 2})
    more.fit()
    rows = more.run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["step"] > rows[0]["step"]


def test_resume_can_lift_a_limit(tmp_path):
    trainer = start_run(lm_spec(tmp_path, "run", epochs=1))
    trainer.spec.train.max_tokens = 10_000
    trainer.fit()
    assert load_checkpoint(trainer.run.checkpoint("last"))["spec"]["train"]["max_tokens"] == 10_000
    lifted = resume_run(str(trainer.run.path), {"train.epochs": 2, "train.max_tokens": 0})
    assert lifted.spec.train.max_tokens is None and lifted.spec.train.epochs == 2
    with pytest.raises(UsageError, match="would change it: --clip"):
        resume_run(str(trainer.run.path), {"train.clip": 0})


def test_resume_refuses_changed_data(tmp_path):
    trainer = start_run(lm_spec(tmp_path, "run", epochs=1))
    trainer.fit()
    (tmp_path / "corpus.txt").write_text((TEXT + "xyz! ") * 16)  # a new character
    with pytest.raises(SeqtoolError, match="does not match the run's data"):
        resume_run(str(trainer.run.path), {})


def test_resume_needs_a_run_with_a_last_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeqtoolError, match="no checkpoints/last.pt"):
        resume_run(str(tmp_path / "empty"), {})
