"""Fault injection shared by the reliability tests and `make stress` (bench/stress.py).

Training runs in a child process (forked from an interpreter that has already imported torch, so a
child starts in milliseconds instead of seconds) that is killed with SIGKILL or interrupted with
SIGINT at seeded random moments; after each kill the run directory must hold a loadable,
consistent checkpoint, and the run finished by `--resume` must log exactly the metrics of an
uninterrupted run (timing fields aside).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: metrics that measure time, not training: ignored when comparing runs
TIMING_KEYS = ("elapsed",)


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS and not k.endswith("_per_s")} for r in rows]


def metric_rows(run: Path) -> list[dict]:
    """Complete rows of metrics.jsonl (a line cut short by a kill ends the list)."""
    from seqtool.core.run import RunDir

    return RunDir(run).read_metrics()


def warm_up() -> None:
    """Import in the parent what a training child would import lazily (torch.optim pulls in
    torch._dynamo on first use: seconds), so forked children start at once."""
    import torch

    import seqtool.cli  # noqa: F401
    import seqtool.core.report
    import seqtool.lm.task  # noqa: F401
    import seqtool.core.trainer  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    seqtool.core.report.pyplot()


def fork_cli(args: list[str], cwd: Path, log: Path, stdout: int | None = None, close: tuple[int, ...] = ()) -> int:
    """Run `seqtool ARGS` in a forked child with stderr (and stdout, unless a file descriptor is
    given for it) to `log`; returns its pid. `close`: the parent's file descriptors the child must
    not hold (the read end of its stdout pipe). The child exits with the CLI's exit code, as
    `python -m seqtool` would (os._exit: no atexit handlers, no test teardown in the child)."""
    pid = os.fork()
    if pid:
        if stdout is not None:
            os.close(stdout)
        return pid
    code = 70
    try:
        for fd in close:
            os.close(fd)
        os.chdir(cwd)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd if stdout is None else stdout, 1)
        os.dup2(fd, 2)
        sys.__stdout__ = sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from seqtool.cli import main

        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def wait_exit(pid: int, timeout: float = 120.0) -> int:
    """Exit code of a child (negative signal number when killed by a signal)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"child {pid} did not finish in {timeout:.0f} s")
        time.sleep(0.01)


def wait_for(condition, pid: int, timeout: float = 60.0) -> bool:
    """Poll until condition() holds; False when the child ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            raise ChildEnded(os.waitstatus_to_exitcode(status))
        time.sleep(0.005)
    raise TimeoutError("the child made no progress")


class ChildEnded(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def check_consistent(run: Path) -> dict:
    """What a resume would load must be a whole, self-consistent checkpoint; returns its progress."""
    from seqtool.core.run import load_checkpoint

    payload = load_checkpoint(run / "checkpoints" / "last.pt", task="lm")
    progress = payload["progress"]
    rows = metric_rows(run)
    epochs = [r["epoch"] for r in rows]
    assert epochs == list(range(1, len(epochs) + 1)), epochs
    # a row is appended just before its epoch's checkpoint: a kill in between leaves one row more
    assert progress["epoch"] <= len(rows) <= progress["epoch"] + 1, (progress["epoch"], len(rows))
    if (run / "checkpoints" / "best.pt").exists():
        load_checkpoint(run / "checkpoints" / "best.pt", task="lm")
    return progress


@dataclass
class KillReport:
    kills: int = 0  # SIGKILLs that landed on a running training process
    survived: int = 0  # ... after which the checkpoint loaded, was consistent, and resume went on
    finished_early: int = 0  # the child finished before its kill moment came
    mid_write: int = 0  # kills that left a half-written temp file: they hit an atomic write
    steps: list[int] = field(default_factory=list)  # checkpoint step after each kill
    matched: bool = False  # the run finished by --resume logged the uninterrupted run's metrics
    temp_files_left: int = 0


def _identity(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def kill_and_resume(workdir: Path, corpus: Path, train_args: list[str], kills: int, seed: int,
                    reference: list[dict] | None, max_delay: float = 0.5) -> KillReport:
    """Train, SIGKILL at `kills` seeded random moments (each restart resumes), then finish the run.

    A moment is: once the child trains, after 0 or 1 more checkpoint writes (seeded), a seeded delay
    in [0, max_delay); with max_delay about half an epoch, kills land in every phase (steps,
    evaluation, checkpoint writes) and the run advances by less than an epoch per kill on average,
    however fast the machine."""
    rng = random.Random(seed)
    run = workdir / "run"
    report = KillReport()
    for i in range(kills):
        args = ["train", corpus, *train_args, "--out", run] if i == 0 else ["train", "--resume", run, "--quiet"]
        pid = fork_cli(args, workdir, workdir / f"kill-{i}.log")
        checkpoint, info = run / "checkpoints" / "last.pt", run / "run.json"
        before = info.stat().st_mtime_ns if info.exists() else None

        def training() -> bool:  # run.json is rewritten as training starts (then a step-0 checkpoint)
            return checkpoint.exists() and info.exists() and info.stat().st_mtime_ns != before

        try:
            wait_for(training, pid)
            for _ in range(rng.randint(0, 1)):
                seen = _identity(checkpoint)
                wait_for(lambda: _identity(checkpoint) != seen, pid)
            time.sleep(rng.uniform(0.0, max_delay))
        except ChildEnded as ended:
            assert ended.code == 0, (ended.code, (workdir / f"kill-{i}.log").read_text())
            report.finished_early += 1
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = wait_exit(pid)
        if code == 0:
            report.finished_early += 1
            continue
        assert code == -signal.SIGKILL, (code, (workdir / f"kill-{i}.log").read_text())
        report.kills += 1
        report.mid_write += bool(temp_files(run))
        progress = check_consistent(run)
        report.steps.append(progress["global_step"])
        report.survived += 1
    pid = fork_cli(["train", "--resume", run, "--quiet"], workdir, workdir / "final.log")
    code = wait_exit(pid)
    assert code == 0, (code, (workdir / "final.log").read_text())
    report.temp_files_left = len(temp_files(run))
    if reference is not None:
        report.matched = comparable(metric_rows(run)) == comparable(reference)
    return report


def temp_files(run: Path) -> list[Path]:
    return list(run.glob(".*.tmp")) + list((run / "checkpoints").glob(".*.tmp"))


def interrupt_and_resume(workdir: Path, corpus: Path, train_args: list[str], seed: int, reference: list[dict],
                         max_delay: float = 1.5) -> dict:
    """Ctrl-C (SIGINT) at a seeded random moment, then --resume to the end: did it exit 130 with the
    resume command, and does the finished run match the uninterrupted one exactly?"""
    rng = random.Random(seed)
    run, log = workdir / "run", workdir / "sigint.log"
    pid = fork_cli(["train", corpus, *train_args, "--out", run], workdir, log)
    try:
        wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), pid)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGINT)
    except (ChildEnded, ProcessLookupError):
        pass
    code = wait_exit(pid)
    text = log.read_text()
    said_how = code == 130 and text.strip().endswith(f"resume with: seqtool train --resume {run}")
    if code not in (0, 130):
        raise AssertionError((code, text))
    resumed = wait_exit(fork_cli(["train", "--resume", run, "--quiet"], workdir, workdir / "resume.log"))
    assert resumed == 0, (workdir / "resume.log").read_text()
    return {"interrupted": code == 130, "said_how": said_how, "log": text,
            "matched": comparable(metric_rows(run)) == comparable(reference)}


def reference_run(workdir: Path, corpus: Path, train_args: list[str]) -> list[dict]:
    """The same training, never interrupted: its metrics rows."""
    pid = fork_cli(["train", corpus, *train_args, "--out", workdir / "reference"], workdir, workdir / "reference.log")
    code = wait_exit(pid)
    assert code == 0, (code, (workdir / "reference.log").read_text())
    return metric_rows(workdir / "reference")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def same_state(run: Path, other: Path) -> bool:
    """Every parameter and every optimizer state tensor of the two runs' last checkpoints are equal
    (torch.equal: bit for bit), and so are the plain optimizer settings."""
    import torch

    from seqtool.core.run import load_checkpoint

    a, b = (load_checkpoint(Path(r) / "checkpoints" / "last.pt") for r in (run, other))
    if a["model"].keys() != b["model"].keys() or not all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]):
        return False
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    if sa.keys() != sb.keys():
        return False
    for key in sa:
        for name, value in sa[key].items():
            other_value = sb[key][name]
            same = torch.equal(value, other_value) if isinstance(value, torch.Tensor) else value == other_value
            if not same:
                return False
    return a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
