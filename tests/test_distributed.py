"""Distributed training (DDP, gloo, 2 processes on the CPU) and the GPU paths as they run on CPU:
sharding keeps each sampling scheme's meaning, a 2-process step equals a 1-process step on the
whole batch, one run directory, checkpoints that resume on another number of processes, mixed
precision and torch.compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqtool.data.batching import random_batches, sequential_batches
from seqtool.core.distributed import Dist, shard_rows, shard_state, strip_nproc
from seqtool.core.restore import restore
from seqtool.core.run import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# a tiny, dropout-free model, so two processes and one must compute the same thing
SMALL = ["--embed", "8", "--hidden", "24", "--layers", "1", "--dropout", "0", "--steps", "12", "--threads", "1",
         "--max-seconds", "0", "--quiet", "--lr", "0.01", "--seed", "3"]


# ---- sharding, without processes ---------------------------------------------------------------
def test_sequential_shards_are_contiguous_streams_that_cover_the_batch():
    ids = torch.arange(2000)
    batches = list(sequential_batches(ids, 8, 10, torch.Generator().manual_seed(0)))
    shards = {r: [shard_rows(b, r, 2, dim=1) for b in batches] for r in range(2)}
    for k, (x, y) in enumerate(batches):
        assert torch.equal(torch.cat([shards[0][k][0], shards[1][k][0]], dim=1), x)
        assert torch.equal(torch.cat([shards[0][k][1], shards[1][k][1]], dim=1), y)
    for r in range(2):
        xs, ys = zip(*shards[r])
        assert xs[0].shape == (10, 4)
        for k in range(len(xs) - 1):  # each column continues where it stopped: carried states stay valid
            assert torch.equal(xs[k + 1][0], ys[k][-1])


def test_random_shards_split_each_batch_and_the_epoch_identically_on_every_rank():
    ids = torch.arange(3000)
    epoch = lambda: list(random_batches(ids, 6, 10, torch.Generator().manual_seed(5)))  # noqa: E731
    whole = epoch()
    seen = []
    for r in range(3):  # every rank rebuilds the epoch from the same per-epoch generator
        mine = [shard_rows(b, r, 3, dim=1) for b in epoch()]
        assert [x.shape[1] for x, _ in mine] == [2] * len(whole)
        seen.append(mine)
    for k, (x, _) in enumerate(whole):
        assert torch.equal(torch.cat([seen[r][k][0] for r in range(3)], dim=1), x)
    other_epoch = list(random_batches(ids, 6, 10, torch.Generator().manual_seed(6)))
    assert not torch.equal(other_epoch[0][0], whole[0][0])  # reshuffled per epoch


def test_shard_rows_handles_nested_batches_and_shard_batches_skips_tiny_ones():
    batch = {"src": torch.arange(10).view(5, 2), "lengths": torch.arange(5), "name": "pairs", "pair": (torch.ones(5, 3), None)}
    part = shard_rows(batch, 1, 2, dim=0)
    assert part["src"].tolist() == [[6, 7], [8, 9]] and part["lengths"].tolist() == [3, 4]
    assert part["name"] == "pairs" and part["pair"][0].shape == (2, 3) and part["pair"][1] is None
    dist = Dist(rank=1, world=2)  # sharding needs no process group
    batches = [(torch.zeros(4, 6),), (torch.zeros(4, 1),), (torch.zeros(4, 2),)]
    out = list(dist.shard_batches(batches, lambda b, r, w: shard_rows(b, r, w, 1), dim=1))
    assert [b[0].shape[1] for b in out] == [3, 1]  # the 1-row batch is skipped by every rank


def test_carried_state_shards_by_batch_column_and_nproc_is_stripped():
    h = torch.arange(2 * 6 * 3).view(2, 6, 3).float()
    parts = [shard_state((h, h + 1), r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts], dim=1), h) and torch.equal(parts[2][1], h[:, 4:] + 1)
    assert strip_nproc(["x.txt", "--nproc", "2", "--batch", "8", "--nproc=3"]) == ["x.txt", "--batch", "8"]


@pytest.fixture
def fake_group():
    """A process group of 2 whose collectives do nothing (torch's test backend): enough to follow a
    Dist's bookkeeping in one process."""
    import torch.distributed as tdist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    tdist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    yield
    tdist.destroy_process_group()


def test_agreement_every_k_steps_as_on_cuda_holds_decisions_between_agreements(fake_group):
    dist = Dist(rank=0, world=2)
    dist.agree_every = 3  # what CUDA uses (AGREE_EVERY_CUDA), to keep host syncs out of most steps
    dist.start_epoch(10.0)
    assert dist.agree(5, 11.0, True) == (0.0, 10.0, False)  # nothing changes between agreements...
    assert dist.agree(torch.tensor(5.0), 12.0, False) == (0.0, 10.0, False)
    items, elapsed, stop = dist.agree(5, 13.0, False)  # ...then the sums (here: of one process) arrive
    assert (items, stop) == (15.0, False) and elapsed == pytest.approx(13.0 / 2)  # (the other clock reads 0 here)
    dist.agree(7, 14.0, True)
    assert dist.flush() == 7.0 and dist.flush() == 0.0  # the epoch's last steps are not lost
    assert dist.stop_now(agreed=False, requested=True) is False  # a local request waits for an agreement
    assert Dist().stop_now(agreed=False, requested=True) is True


# ---- two processes -----------------------------------------------------------------------------
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog; a stitch in time saves nine. " * 24, encoding="utf-8")
    return path


def _torchrun(*args: str, cwd: Path, launcher: str = "torch.distributed.run") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", launcher, "--standalone", "--nproc-per-node", "2", *args],
                          capture_output=True, text=True, cwd=cwd, env=_env(), timeout=240)


def test_one_ddp_step_equals_one_step_on_the_whole_batch(cli, corpus, tmp_path):
    """torchrun, 2 processes x 4 rows = 1 process x batch 8: one Adam step on random windows."""
    one = [*SMALL, "--sampling", "random", "--max-tokens", "1", "--batch", "8", "--epochs", "1"]
    ddp = _torchrun("-m", "seqtool", "train", str(corpus), *one, "--out", str(tmp_path / "ddp"), cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    single = cli("train", corpus, *one, "--out", tmp_path / "single")
    assert single.code == 0, single.err
    ddp_ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert ddp_ckpt["progress"]["global_step"] == 1 == load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")["progress"]["global_step"]
    assert ddp_ckpt["progress"]["items"] == 8 * 12  # the tokens of both processes
    before = restore(str(tmp_path / "single"), task="lm").task.build_model().state_dict()  # the shared initialisation
    assert any(not torch.equal(before[k], ddp_ckpt["model"][k]) for k in before)  # the step did move the weights
    _assert_same_params(ddp_ckpt["model"], _params(tmp_path / "single"))


def test_interrupted_ddp_run_resumes_mid_epoch_on_one_process_as_if_never_split(corpus, tmp_path):
    """Sequential streams with carried states: 2 processes stop mid-epoch when one of them asks (at
    the next agreed step), save the whole batch's state, and one process finishes the run. The
    weights equal one process training straight through."""
    from seqtool.core.spec import from_dict
    from seqtool.core.session import resume_run, start_run

    raw = {"data": {"corpus": str(corpus), "steps": 12},
           "model": {"embed": 8, "hidden": 24, "layers": 2, "dropout": 0.0},
           "train": {"batch": 8, "epochs": 2, "max_seconds": None, "threads": 1, "lr": 0.01, "seed": 3, "clip": 0.5}}
    straight = start_run(from_dict({**raw, "output": {"dir": str(tmp_path / "single")}}))
    straight.fit()
    per_epoch = straight.state.global_step // 2
    stop = per_epoch + 2  # in the second epoch
    ddp = _torchrun(str(ROOT / "tests" / "ddp_driver.py"), json.dumps({**raw, "output": {"dir": str(tmp_path / "ddp")}}), str(stop),
                   cwd=tmp_path, launcher="seqtool.core.launch")  # torchrun, with the workers' exit code
    assert ddp.returncode == 130, ddp.stderr
    saved = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert saved["progress"]["global_step"] == stop + 1  # rank 1's request, agreed after the next step
    assert saved["progress"]["epoch"] == 1 and saved["progress"]["partial"]["count"] == 3 * 8 * 12
    assert saved["carry"].shape == (2, 8, 24)  # the state of all 8 streams, not one process's 4

    resumed = resume_run(str(tmp_path / "ddp"), {})
    assert resumed.dist.world == 1
    resumed.fit()
    _assert_same_params(_params(tmp_path / "ddp"), _params(tmp_path / "single"))
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    for got, want in zip(rows, expected, strict=True):  # all-reduced sums: the global training loss
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)


def test_nproc_run_writes_one_run_directory_and_resumes_on_one_process(cli, corpus, tmp_path):
    """seqtool train --nproc 2 with random truncation (whole streams, a backward per random
    segment, the cuts shared by the processes), then --resume in one process."""
    args = [*SMALL, "--batch", "8", "--truncation", "random"]
    ddp = subprocess.run([sys.executable, "-m", "seqtool", "train", str(corpus), *args, "--epochs", "2", "--nproc", "2"],
                         capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=240)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stderr == ""  # --quiet: nothing from torchrun or the other rank either
    runs = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    assert len(runs) == 1 and ddp.stdout == f"runs/{runs[0].name}\n"  # rank 0 alone prints it
    run = runs[0]
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    assert "--nproc 2" in json.loads((run / "report.json").read_text())["command"]
    restored = restore(str(run), task="lm")  # a valid checkpoint: the unwrapped model, loadable
    assert not any(k.startswith("module.") for k in restored.payload["model"])

    single = cli("train", corpus, *args, "--epochs", "2", "--out", tmp_path / "single")
    assert single.code == 0, single.err
    _assert_same_params(_params(run), _params(tmp_path / "single"))

    resumed = cli("train", "--resume", run, "--epochs", "3")
    assert resumed.code == 0, resumed.err
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_nproc_refuses_what_cannot_work(cli, corpus):
    odd = cli("train", corpus, "--batch", "7", "--nproc", "2")
    assert odd.code == 2 and "multiple of --nproc 2" in odd.err
    stdin = cli("train", "-", "--nproc", "2", stdin=b"abc")
    assert stdin.code == 2 and "standard input" in stdin.err


# ---- precision and compile on the CPU ----------------------------------------------------------
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_follows_fp32_closely_and_keeps_fp32_weights(cli, corpus, tmp_path, precision):
    from seqtool.core.accel import Precision

    losses = {}
    for name in ("fp32", precision):
        result = cli("train", corpus, *SMALL, "--batch", "8", "--epochs", "1", "--precision", name, "--out", tmp_path / name)
        assert result.code == 0, result.err
        losses[name] = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
    assert losses[precision] != losses["fp32"]  # autocast did change the arithmetic...
    assert losses[precision] == pytest.approx(losses["fp32"], rel=1e-2)  # ...not the training
    ckpt = load_checkpoint(tmp_path / precision / "checkpoints" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values())
    if precision == "fp16":
        assert ckpt["precision"]["scale"] > 0  # the GradScaler's state is saved for resume
    with Precision(precision, torch.device("cpu")).autocast():
        dtype = torch.nn.Linear(4, 3)(torch.ones(2, 4)).dtype
    assert dtype == (torch.bfloat16 if precision == "bf16" else torch.float16)


def test_compile_trains_and_saves_the_plain_model(cli, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTOOL_COMPILE_BACKEND", "aot_eager")  # the same tracing, no code generation
    result = cli("train", corpus, *SMALL, "--batch", "8", "--epochs", "1", "--max-tokens", "300", "--compile", "--out", tmp_path / "c")
    assert result.code == 0, result.err
    assert "warning" not in result.err
    model = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["model"]
    assert not any("_orig_mod" in k for k in model)
    assert restore(str(tmp_path / "c"), task="lm").model is not None


def test_compile_unavailable_is_a_warning_not_a_failure(monkeypatch, capsys):
    from seqtool.core import accel

    monkeypatch.setattr(accel, "compile_unavailable", lambda device, backend: "no C++ compiler found")
    model = torch.nn.Linear(2, 2)
    assert accel.maybe_compile(model, True, torch.device("cpu")) is model
    assert "--compile: no C++ compiler found; training without it" in capsys.readouterr().err


@pytest.mark.parametrize("codes, exit_code, said", [
    ({0: 2, 1: 2}, 2, ""),  # a user error: rank 0 has printed it, nothing to add
    ({1: 1, 0: 143}, 143, ""),  # rank 0 reported (interrupted) after rank 1's own message
    ({1: 3}, 3, "training process rank 1 failed with exit code 3"),
    ({1: -9, 0: 143}, 137, "training process rank 1 was killed by signal 9"),
    ({1: -6, 0: 130}, 130, ""),  # an agreed stop: rank 1 aborted at exit, after rank 0 had ended
    ({1: -15, 0: 2}, 2, ""),  # rank 0 printed a user error; the agent then stopped rank 1
    ({1: -6, 0: 1}, 134, "training process rank 1 was killed by signal 6"),  # rank 0 failed silently in a collective
])
def test_launcher_turns_worker_failures_into_an_exit_code_and_at_most_one_line(monkeypatch, capsys, codes, exit_code, said):
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from seqtool.core import launch

    def fail(args):
        raise ChildFailedError("seqtool", {r: ProcessFailure(r, 100 + r, c, "<none>") for r, c in codes.items()})

    monkeypatch.setattr(torchrun, "run", fail)
    assert launch.main(["--standalone", "--nproc-per-node=2", "-m", "seqtool", "train"]) == exit_code
    err = capsys.readouterr().err
    assert err == (f"seqtool: error: {said}\n" if said else "")


def test_a_killed_worker_ends_the_job_with_one_clear_line(corpus, tmp_path):
    """The surviving process fails in a collective; only the launcher speaks: the dead rank and its signal."""
    args = ["train", str(corpus), *SMALL, "--batch", "8", "--epochs", "50", "--out", str(tmp_path / "ddp")]
    ddp = _torchrun(str(ROOT / "tests" / "ddp_kill_driver.py"), *args, cwd=tmp_path, launcher="seqtool.core.launch")
    assert ddp.returncode == 137, ddp.stderr
    lines = ddp.stderr.splitlines()
    assert lines[-1] == "seqtool: error: training process rank 1 was killed by signal 9", ddp.stderr
    # the survivor usually fails in a collective and says nothing; at times its communication thread
    # aborts first, and the C++ runtime's own line about it cannot be silenced from Python
    assert set(lines[:-1]) <= {"terminate called without an active exception"}, ddp.stderr


def test_the_launcher_names_the_killed_rank_over_a_survivor_that_aborted():
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from seqtool.core.launch import _cause

    def failure(rank, code, timestamp):
        f = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file="")
        f.timestamp = timestamp
        return f

    for survivor in (-6, -15):  # aborted, or stopped by the agent, before the killed rank was seen
        assert _cause(ChildFailedError("train", {0: failure(0, survivor, 1), 1: failure(1, -9, 2)}))[0] == 1
    plain = ChildFailedError("train", {0: failure(0, 1, 2), 1: failure(1, 3, 1)})
    assert _cause(plain)[0] == plain.get_first_failure()[0]


def test_an_ensemble_classifier_trains_under_ddp_as_on_one_process(cli, tmp_path):
    """--nproc 2 on a classification run with --members 2 and --adversarial: the members' own losses
    go through DDP (the forward's per_member flag), each process perturbs its own rows (two forward
    passes before one backward), and two processes of 4 rows step as one process of 8."""
    from tests.test_label import write_classify_layout

    root = write_classify_layout(tmp_path / "cls")
    args = ["--task", "classify", str(root), "--members", "2", "--adversarial", "1", "--embed", "8", "--hidden", "12", "--dropout", "0", "--unk-rate", "0",
            "--batch", "8", "--epochs", "1", "--threads", "1", "--max-seconds", "0", "--quiet", "--lr", "0.01", "--seed", "3"]
    ddp = subprocess.run([sys.executable, "-m", "seqtool", "train", *args, "--nproc", "2", "--out", "ddp"],
                         capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=240)
    assert ddp.returncode == 0, ddp.stderr
    single = cli("train", *args, "--out", tmp_path / "single")
    assert single.code == 0, single.err
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["processes"] == 2
    _assert_same_params(_params(tmp_path / "ddp"), _params(tmp_path / "single"))
