"""Reliability: nothing lost on interrupt, crash, full disk or non-finite training; checkpoints that
cannot run code; reproducible runs. Faults are injected (SIGKILL/SIGINT/SIGTERM at seeded moments,
NaN losses and gradients, ENOSPC) and every one must leave a loadable checkpoint and a clear line."""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from seqtool.core.run import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from seqtool.core.spec import RunSpec
from seqtool.lm.task import LanguageModelTask
from seqtool.core.session import start_run
from tests import chaos
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]

#: a run of ~50 steps per epoch that the kill/interrupt tests take apart and compare
RUN_ARGS = ["--embed", "8", "--hidden", "16", "--layers", "1", "--dropout", "0.1", "--batch", "4", "--steps", "8",
            "--threads", "1", "--max-seconds", "0", "--epochs", "12", "--lr", "0.01", "--quiet"]
CORPUS_TEXT = "the quick brown fox jumps over the lazy dog. " * 30


def one_error_line(result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("seqtool: error: ") and "Traceback" not in result.err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def corpus(workdir) -> Path:
    path = workdir / "corpus.txt"
    path.write_text(CORPUS_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(workdir, corpus) -> list[dict]:
    """RUN_ARGS trained start to finish without interruption."""
    chaos.warm_up()
    rows = chaos.reference_run(workdir, corpus, RUN_ARGS)
    assert len(rows) == 12
    return rows


def tiny_spec(corpus: Path, out: Path, **train) -> RunSpec:
    spec = RunSpec()
    spec.data.corpus, spec.data.steps = str(corpus), 8
    spec.model.embed, spec.model.hidden, spec.model.layers, spec.model.dropout = 8, 16, 1, 0.0
    t = spec.train
    t.batch, t.epochs, t.max_seconds, t.threads, t.lr, t.optimizer = 4, 2, None, 1, 0.01, "adam"
    for key, value in train.items():
        setattr(t, key, value)
    spec.output.out = str(out)
    return spec


class NanGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def inject(monkeypatch, fault) -> None:
    """fault(call_index) -> 'loss' (NaN loss), 'grad' (finite loss, NaN gradients) or None."""
    original = LanguageModelTask.train_loss
    calls = itertools.count()

    def train_loss(self, model, batch, state, device):
        loss, count, state = original(self, model, batch, state, device)
        kind = fault(next(calls))
        if kind == "loss":
            loss = loss * float("nan")
        elif kind == "grad":
            loss = NanGrad.apply(loss)
        return loss, count, state

    monkeypatch.setattr(LanguageModelTask, "train_loss", train_loss)


def params_finite(checkpoint: Path) -> bool:
    return all(torch.isfinite(v).all() for v in load_checkpoint(checkpoint)["model"].values())


# ---- SIGKILL / SIGINT / SIGTERM -------------------------------------------------------------------
def test_sigkill_at_random_moments_always_leaves_a_resumable_run(workdir, corpus, reference):
    """8 SIGKILLs at seeded random moments: each leaves a whole checkpoint that --resume continues,
    and the finished run logs exactly the metrics of the run that was never killed."""
    (workdir / "killed").mkdir()
    epoch = reference[-1]["elapsed"] / len(reference)  # seconds per epoch here: kill moments scale with it
    report = chaos.kill_and_resume(workdir / "killed", corpus, RUN_ARGS, kills=8, seed=6, reference=reference,
                                   max_delay=epoch / 2)
    assert report.kills >= 6, report  # a kill that comes after the run finished is not counted
    assert report.survived == report.kills
    assert report.steps == sorted(report.steps) and report.steps[-1] > 0
    assert report.temp_files_left == 0  # resume removes what a kill left mid-write
    assert report.matched, "the killed-and-resumed run diverged from the uninterrupted one"
    assert chaos.same_state(workdir / "killed" / "run", workdir / "reference")  # weights and optimizer state, bit for bit


def test_sigint_exits_130_with_the_resume_command_and_resuming_matches(workdir, corpus, reference):
    """A training process gets Ctrl-C mid-run: it finishes the step, saves, prints the resume
    command as its one stderr line and exits 130; resuming gives the uninterrupted run's metrics."""
    run, log = workdir / "sigint", workdir / "sigint.log"
    pid = chaos.fork_cli(["train", corpus, *RUN_ARGS, "--out", run], workdir, log)
    chaos.wait_for(lambda: bool(chaos.metric_rows(run)), pid)  # after the first epoch
    os.kill(pid, signal.SIGINT)
    assert chaos.wait_exit(pid) == 130, log.read_text()
    lines = log.read_text().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert lines[0].startswith("seqtool: error: interrupted at step ")
    assert lines[0].endswith(f"resume with: seqtool train --resume {run}")
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]
    assert saved["step_in_epoch"] > 0  # saved in the middle of an epoch, not at its end
    code = chaos.wait_exit(chaos.fork_cli(["train", "--resume", run, "--quiet"], workdir, workdir / "sigint-resume.log"))
    assert code == 0, (workdir / "sigint-resume.log").read_text()
    assert chaos.comparable(chaos.metric_rows(run)) == chaos.comparable(reference)


def test_sigterm_saves_exits_143_and_resumes_exactly(cli, corpus, reference, monkeypatch, tmp_path):
    from seqtool.core.trainer import Trainer

    original = Trainer.fit

    def fit(self):
        self.callbacks.append(lambda t: os.kill(os.getpid(), signal.SIGTERM) if t.state.global_step == 50 else None)
        return original(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    stopped = cli("train", corpus, *RUN_ARGS, "--out", tmp_path / "run")
    assert stopped.code == 143
    assert f"resume with: seqtool train --resume {tmp_path / 'run'}" in one_error_line(stopped, 143)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["global_step"] == 50
    monkeypatch.setattr(Trainer, "fit", original)
    assert cli("train", "--resume", tmp_path / "run", "--quiet").code == 0
    assert chaos.comparable(chaos.metric_rows(tmp_path / "run")) == chaos.comparable(reference)


def test_second_ctrl_c_aborts_at_once_and_keeps_the_checkpoint(cli, corpus, monkeypatch, tmp_path):
    from seqtool.core.trainer import Trainer

    original = Trainer.fit

    def fit(self):
        def twice(t):
            if t.state.global_step == 45:
                os.kill(os.getpid(), signal.SIGINT)  # first: finish the step and save...
                os.kill(os.getpid(), signal.SIGINT)  # ...second: abort now
        self.callbacks.append(twice)
        return original(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    result = cli("train", corpus, *RUN_ARGS, "--out", tmp_path / "run")
    line = one_error_line(result, 130)
    assert line.endswith(f"the last checkpoint is intact; resume with: seqtool train --resume {tmp_path / 'run'}")
    progress = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]
    assert progress["global_step"] < 45 and progress["step_in_epoch"] == 0  # the last epoch-end save, untouched
    monkeypatch.setattr(Trainer, "fit", original)
    assert cli("train", "--resume", tmp_path / "run", "--epochs", "2", "--quiet").code == 0


def test_interrupt_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(cli, tiny_text, monkeypatch, tmp_path):
    import seqtool.core.run

    real_replace, writes = os.replace, itertools.count()

    def replace(src, dst):
        if str(dst).endswith("last.pt") and next(writes) == 2:  # step 0, epoch 1, then epoch 2
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(seqtool.core.run.os, "replace", replace)
    result = cli("train", tiny_text, *TINY, "--epochs", "3", "--out", tmp_path / "run")
    assert "resume with: seqtool train --resume" in one_error_line(result, 130)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["epoch"] == 1
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))


# ---- non-finite loss or gradients ---------------------------------------------------------------
def test_stop_names_the_step_and_never_saves_a_poisoned_model(cli, tiny_text, monkeypatch, tmp_path):
    """NaN gradients (finite loss) on the very last step of the run: the epoch-end save must not
    write the poisoned weights."""
    assert cli("train", tiny_text, *TINY, "--epochs", "2", "--out", tmp_path / "probe").code == 0
    total = chaos.metric_rows(tmp_path / "probe")[-1]["step"]  # steps in the whole run
    inject(monkeypatch, lambda i: "grad" if i == total - 1 else None)
    result = cli("train", tiny_text, *TINY, "--epochs", "2", "--out", tmp_path / "run")
    line = one_error_line(result, 1)
    assert f"non-finite at step {total - 1} (epoch 2)" in line and "--lr" in line and "--on-nan" in line
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert params_finite(last)
    assert load_checkpoint(last)["progress"]["epoch"] == 1
    assert f"(step {load_checkpoint(last)['progress']['global_step']}) is intact" in line


def test_stop_on_a_real_divergence(cli, tiny_text, tmp_path):
    result = cli("train", tiny_text, *TINY, "--epochs", "2", "--optimizer", "sgd", "--weight-decay", "1e30",
                 "--out", tmp_path / "run")
    assert "non-finite at step" in one_error_line(result, 1)
    assert params_finite(tmp_path / "run" / "checkpoints" / "last.pt")


def test_skip_drops_the_update_of_a_bad_batch_and_goes_on(tiny_text, monkeypatch, tmp_path):
    inject(monkeypatch, lambda i: {5: "loss", 9: "grad"}.get(i))
    trainer = start_run(tiny_spec(tiny_text, tmp_path / "run", on_nan="skip"))
    snapshots = {}
    trainer.callbacks.append(lambda t: snapshots.__setitem__(t.state.global_step, [p.detach().clone() for p in t.params]))
    trainer.fit()
    for bad in (5, 9):  # after step `bad` the weights are those after step bad-1
        assert all(torch.equal(a, b) for a, b in zip(snapshots[bad + 1], snapshots[bad]))
        assert not all(torch.equal(a, b) for a, b in zip(snapshots[bad + 2], snapshots[bad + 1]))
    rows = chaos.metric_rows(tmp_path / "run")
    assert [r["skipped_steps"] for r in rows] == [2, 0]
    assert all(map(lambda r: r["train_loss"] == r["train_loss"] and r["val_ppl"] < 1e6, rows))  # finite


def test_skip_gives_up_when_every_batch_is_bad(cli, tiny_text, monkeypatch, tmp_path):
    inject(monkeypatch, lambda i: "loss" if i >= 3 else None)
    line = one_error_line(cli("train", tiny_text, *TINY, "--on-nan", "skip", "--out", tmp_path / "run"), 1)
    assert "non-finite for 20 batches in a row (steps 3-22)" in line
    assert params_finite(tmp_path / "run" / "checkpoints" / "last.pt")


def test_rollback_reloads_the_last_checkpoint_and_halves_the_lr(cli, tiny_text, monkeypatch, tmp_path):
    clean = cli("train", tiny_text, *TINY, "--epochs", "2", "--schedule", "none", "--out", tmp_path / "clean")
    per_epoch = chaos.metric_rows(tmp_path / "clean")[0]["step"]
    inject(monkeypatch, lambda i: "loss" if i == per_epoch + 3 else None)  # once, in epoch 2
    result = cli("train", tiny_text, *TINY, "--epochs", "2", "--schedule", "none", "--on-nan", "rollback", "--out", tmp_path / "run")
    assert clean.code == 0 and result.code == 0, result.err
    rows, reference = chaos.metric_rows(tmp_path / "run"), chaos.metric_rows(tmp_path / "clean")
    assert chaos.comparable(rows[:1]) == chaos.comparable([{**reference[0], "rollbacks": 0}])  # epoch 1 untouched
    assert rows[1]["rollbacks"] == 1 and rows[1]["lr"] == pytest.approx(reference[1]["lr"] / 2)
    assert rows[1]["step"] == reference[1]["step"]  # epoch 2 replayed from its start
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["lr_scale"] == 0.5


def test_rollback_gives_up_after_too_many(cli, tiny_text, tmp_path):
    result = cli("train", tiny_text, *TINY, "--epochs", "2", "--optimizer", "sgd", "--weight-decay", "1e30",
                 "--on-nan", "rollback", "--out", tmp_path / "run")
    assert "again after 8 rollbacks" in one_error_line(result, 1)
    assert params_finite(tmp_path / "run" / "checkpoints" / "last.pt")


# ---- disk full, unwritable output ---------------------------------------------------------------
def fail_fsync_of(monkeypatch, name_part: str, on_call: int) -> dict:
    """fsync reports ENOSPC (as it does when delayed allocation finds the disk full) for the
    `on_call`-th write of a file whose path contains name_part; set ['armed'] False to stop."""
    real_fsync, calls, switch = os.fsync, itertools.count(), {"armed": True}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if switch["armed"] and name_part in target and next(calls) == on_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return switch


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(cli, tiny_text, monkeypatch, tmp_path):
    disk = fail_fsync_of(monkeypatch, ".last.pt.", on_call=2)  # step 0 and epoch 1 are written, epoch 2 is not
    line = one_error_line(cli("train", tiny_text, *TINY, "--epochs", "3", "--out", tmp_path / "run"), 1)
    assert "No space left on device" in line and "the previous checkpoint is intact" in line
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["epoch"] == 1
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))
    disk["armed"] = False
    assert cli("train", "--resume", tmp_path / "run", "--quiet").code == 0  # and the run goes on from there
    assert [r["epoch"] for r in chaos.metric_rows(tmp_path / "run")] == [1, 2, 3]


def test_disk_full_while_logging_metrics_is_one_clear_line(cli, tiny_text, monkeypatch, tmp_path):
    fail_fsync_of(monkeypatch, "metrics.jsonl", on_call=1)
    line = one_error_line(cli("train", tiny_text, *TINY, "--epochs", "3", "--out", tmp_path / "run"), 1)
    assert "metrics.jsonl: No space left on device" in line


def test_unwritable_output_is_refused_before_training(cli, tiny_text, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    line = one_error_line(cli("train", tiny_text, *TINY, "--out", tmp_path / "file" / "run"), 1)
    assert "cannot write to run directory" in line

    import pathlib

    def read_only(self, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(pathlib.Path, "write_bytes", read_only)
    started = []
    monkeypatch.setattr("seqtool.core.trainer.Trainer.fit", lambda self: started.append(1))
    line = one_error_line(cli("train", tiny_text, *TINY, "--out", tmp_path / "ro"), 1)
    assert "Read-only file system" in line and not started


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_read_only_directory_is_refused(cli, tiny_text, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "Permission denied" in one_error_line(cli("train", tiny_text, *TINY, "--out", locked / "run"), 1)


def test_a_failed_start_leaves_no_run_directory_behind(cli, tiny_text, tmp_path):
    result = cli("train", tiny_text, *TINY, "--hidden", "1000000000", "--out", tmp_path / "run")
    assert "out of memory building the model" in one_error_line(result, 1)
    assert not (tmp_path / "run").exists()  # so the next attempt needs no --overwrite


def test_one_process_per_run_directory_and_stale_temp_files(cli, tiny_text, tmp_path):
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", tmp_path / "run").code == 0
    stale = tmp_path / "run" / "checkpoints" / ".last.pt.x1y2.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = os.open(tmp_path / "run" / "checkpoints" / ".lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)  # what another training process on this run holds
    try:
        assert "in use by another seqtool process" in one_error_line(cli("train", "--resume", tmp_path / "run"), 1)
        assert "in use by another seqtool process" in one_error_line(
            cli("train", tiny_text, *TINY, "--out", tmp_path / "run", "--overwrite"), 1)
    finally:
        os.close(other)
    assert stale.exists()
    assert cli("train", "--resume", tmp_path / "run", "--epochs", "2", "--quiet").code == 0
    assert not stale.exists()


# ---- reproducibility, recorded provenance, paths -------------------------------------------------
def test_same_spec_and_seed_give_identical_metrics_and_run_json_records_provenance(cli, tiny_text, tmp_path):
    args = [tiny_text, *TINY, "--epochs", "2", "--dropout", "0.2", "--sampling", "random"]
    runs = [cli("train", *args, "--seed", seed, "--out", tmp_path / name) for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    assert all(r.code == 0 for r in runs), [r.err for r in runs]
    a, b, c = (chaos.comparable(chaos.metric_rows(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c  # the comparison can tell runs apart
    info = chaos.read_json(tmp_path / "a" / "run.json")
    assert info["command"] == "seqtool train " + " ".join(map(str, args)) + f" --seed 3 --out {tmp_path / 'a'}"
    assert info["device"].startswith("cpu (1 threads)")
    assert {"seqtool", "torch", "python", "platform"} <= set(info["versions"]) and info["versions"]["torch"] == torch.__version__
    assert info["cwd"] == os.getcwd() and len(info["history"]) == 1


def test_spec_paths_are_relative_to_the_spec_and_nothing_is_written_elsewhere(cli, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "text.txt").write_text(CORPUS_TEXT)
    (project / "specs").mkdir()
    (project / "specs" / "run.yaml").write_text(yaml.safe_dump({
        "data": {"corpus": "../data/text.txt", "steps": 8},
        "model": {"hidden": 16, "embed": 8, "layers": 1},
        "train": {"batch": 4, "epochs": 1, "max_seconds": None, "threads": 1},
        "output": {"dir": "../out/run1", "runs_root": "../runs"},
    }))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = {p for p in tmp_path.rglob("*")}
    result = cli("train", "--spec", project / "specs" / "run.yaml", "--quiet")
    assert result.code == 0, result.err
    assert Path(result.out.strip()) == project / "out" / "run1"
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == project / "out" or (project / "out" / "run1") in (p, *p.parents) for p in new), sorted(new)
    assert not any(p.name.endswith(".tmp") for p in new)


# ---- checkpoints that cannot run code, of another task or version -------------------------------
class Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(cli, tiny_text, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "seqtool-checkpoint", "version": CHECKPOINT_VERSION, "task": "lm", "x": Evil(marker)}, evil)
    torch.load(evil, weights_only=False)  # what plain pickle would do with it...
    assert marker.exists()
    marker.unlink()  # ...and seqtool never does:
    run = tmp_path / "run"
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", run).code == 0
    (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
    for args in (["sample", "--checkpoint", evil], ["eval", evil], ["train", "--resume", run], ["train", evil, *TINY]):
        line = one_error_line(cli(*args), 1)
        assert "refusing to load" in line and "could run code" in line, line
        assert not marker.exists(), args


@pytest.mark.parametrize("damage, needle", [
    (lambda p: save_checkpoint(p, {"task": "translate", "spec": {}, "task_state": {}, "model": {}}), "is a 'translate' checkpoint, not a 'lm' one"),
    (lambda p: torch.save({"format": "seqtool-checkpoint", "version": 999, "task": "lm"}, p), "has checkpoint format version 999; this seqtool reads version 1"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "is not a seqtool checkpoint"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "is not a readable checkpoint"),
    (lambda p: p.write_bytes(b"just text"), "is not a seqtool checkpoint"),
])
def test_foreign_old_or_damaged_checkpoints_are_one_clear_line(cli, tiny_text, tmp_path, damage, needle):
    run = tmp_path / "run"
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", run).code == 0
    for name in ("last.pt", "best.pt"):
        damage(run / "checkpoints" / name)
    # --resume and eval take any task: for them this fake translation checkpoint is just damaged
    others = [["train", "--resume", run], ["eval", run]] if "translate" not in needle else []
    for args in (["sample", "--checkpoint", run], *others):
        assert needle in one_error_line(cli(*args), 1), args
    if "translate" in needle:
        assert "is a damaged checkpoint (its task state" in one_error_line(cli("eval", run), 1)


# ---- text encodings ------------------------------------------------------------------------------
def test_encodings_and_the_undecodable_bytes_policy(cli, tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("élan café naïve " * 200).encode("latin-1"))
    common = [*TINY, "--epochs", "1", "--clean", "lower"]
    strict = one_error_line(cli("train", latin, *common), 1)
    assert "is not valid utf-8 (byte 0xe9 at offset 0)" in strict and "--encoding" in strict
    vocab = {}
    for name, flags in {"latin": ["--encoding", "latin-1"], "replace": ["--encoding-errors", "replace"],
                        "ignore": ["--encoding-errors", "ignore"]}.items():
        result = cli("train", latin, *common, *flags, "--out", tmp_path / name)
        assert result.code == 0, result.err
        vocab[name] = set(load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["task_state"]["vocab"])
    assert {"é", "ï"} <= vocab["latin"]
    assert "\ufffd" in vocab["replace"] and "é" not in vocab["replace"]
    assert not {"\ufffd", "é"} & vocab["ignore"] and "l" in vocab["ignore"]
    # eval reads new text with the run's encoding
    scored = cli("eval", tmp_path / "latin", latin, "--json")
    assert scored.code == 0 and json.loads(scored.out)["unk_tokens"] == 0
    wide = tmp_path / "wide.txt"
    wide.write_bytes(("hello world " * 200).encode("utf-16-le"))  # NUL bytes are normal in UTF-16; no byte-order mark
    assert "binary" in one_error_line(cli("train", wide, *common), 1)
    assert cli("train", wide, *common, "--encoding", "utf-16-le", "--out", tmp_path / "wide").code == 0
    assert "unknown encoding 'klingon'" in one_error_line(cli("train", latin, *common, "--encoding", "klingon"), 2)
    assert "not one of strict, replace, ignore" in one_error_line(cli("preprocess", latin, "--encoding-errors", "maybe"), 2)


@pytest.mark.parametrize("args, code, needle", [
    (["--lr", "nan"], 2, "train.lr must be a finite number"),
    (["--max-seconds", "inf"], 2, "train.max_seconds must be a finite number"),
    (["--seed", "-1"], 2, "train.seed must be in [0, 4294967295]"),
    (["--seed", str(2**70)], 2, "train.seed must be in"),
    (["--threads", "100000"], 2, "train.threads must be <= 1024"),
    (["--on-nan", "ignore"], 2, "'ignore' is not one of stop, skip, rollback"),
    (["--level", "word", "--clean", "none", "--min-freq", "500"], 1, "the vocabulary would be only <unk>"),
])
def test_values_that_used_to_crash_or_train_garbage(cli, tiny_text, args, code, needle):
    assert needle in one_error_line(cli("train", tiny_text, *TINY, "--epochs", "1", *args), code)


def test_sample_refuses_values_that_used_to_crash(cli, tiny_text, tmp_path):
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--clean", "none", "--out", tmp_path / "run").code == 0
    for args, needle in ((["--temperature", "nan"], "--temperature must be a finite number > 0"),
                         (["--seed", "-5"], "--seed must be in [0, 2**63)"),
                         (["--prefix", "caf\udce9"], "--prefix has bytes that are not valid text")):
        assert needle in one_error_line(cli("sample", "--checkpoint", tmp_path / "run", *args), 2)


def test_a_reader_that_goes_away_is_not_an_error(cli, tiny_text, tmp_path):
    """`seqtool sample ... | head -c 10`: exit 0 and nothing on stderr (typer used to exit 1)."""
    assert cli("train", tiny_text, *TINY, "--epochs", "1", "--out", tmp_path / "run").code == 0
    read_end, write_end = os.pipe()
    pid = chaos.fork_cli(["sample", "--checkpoint", tmp_path / "run", "--length", "1000", "--num", "300"],
                         tmp_path, tmp_path / "sample.log", stdout=write_end, close=(read_end,))
    with os.fdopen(read_end, "rb") as reader:
        assert len(reader.read(10)) == 10
    assert chaos.wait_exit(pid) == 0
    assert (tmp_path / "sample.log").read_text() == ""


def test_forecast_takes_the_same_nan_policy(cli, monkeypatch):
    from seqtool.forecast.task import ForecastTask

    original, calls = ForecastTask.train_loss, {}

    def train_loss(self, model, batch, state, device):  # the third batch of each run is poisoned
        loss, count, state = original(self, model, batch, state, device)
        calls[id(self)] = calls.get(id(self), -1) + 1
        return (loss * float("nan") if calls[id(self)] == 2 else loss), count, state

    monkeypatch.setattr(ForecastTask, "train_loss", train_loss)
    fast = ["--synthetic", "sine", "--epochs", "1", "--threads", "1", "--quiet"]
    assert "non-finite at step 2" in one_error_line(cli("forecast", *fast, "--out", "stopped"), 1)
    calls.clear()
    skipped = cli("forecast", *fast, "--on-nan", "skip", "--out", "skipped")
    assert skipped.code == 0, skipped.err
    assert chaos.metric_rows(Path("skipped"))[0]["skipped_steps"] == 1
    assert "'maybe' is not one of stop, skip, rollback" in one_error_line(cli("forecast", *fast, "--on-nan", "maybe"), 2)
