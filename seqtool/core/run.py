"""The run directory: where a run's spec, checkpoints, metrics and reports live.

Every file is replaced atomically (temp file in the same directory, fsync, rename), so a process
killed at any moment leaves the previous version readable. Checkpoints hold tensors and plain data
only and are loaded with torch.load(weights_only=True): loading one never executes code.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # not POSIX: no run-directory lock
    fcntl = None

from seqtool.core.errors import SeqtoolError, UsageError

CHECKPOINT_FORMAT = "seqtool-checkpoint"
CHECKPOINT_VERSION = 1
LATEST = "latest"
LOCK = ".lock"
#: run-directory locks this process holds: real path of the lock file -> [fd, holders]
_HELD: dict[str, list] = {}


def default_runs_root() -> Path:
    return Path(os.environ.get("SEQTOOL_RUNS", "runs"))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class WriteError(SeqtoolError, OSError):
    """A file of the run could not be written (disk full, read-only, permissions)."""

    def __init__(self, path: Path, exc: OSError, what: str = ""):
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason += " (the disk is full)"
        super().__init__(f"cannot write {what or path}: {reason}")
        self.path, self.errno = Path(path), exc.errno


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, rename it over `path`. On any failure
    (or a KeyboardInterrupt) the temp file is removed and `path` keeps its previous content."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise WriteError(path, exc) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, payload: dict) -> None:
    """Serialise in memory first, so a full disk fails before the old checkpoint is touched."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, buffer)
    existed = Path(path).is_file()
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except WriteError as exc:
        kept = "the previous checkpoint is intact" if existed else "no checkpoint has been written yet"
        raise SeqtoolError(f"{exc}; {kept}") from None


def load_checkpoint(path: Path, task: str | None = None) -> dict:
    """Load a checkpoint without executing code from it; check its format, version and task."""
    path = Path(path)
    if not path.is_file():
        raise SeqtoolError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise SeqtoolError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive; anything else is not ours
        raise SeqtoolError(f"{path} is not a seqtool checkpoint" + (" (the file is empty)" if not magic else ""))
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": not for the user's stderr
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise SeqtoolError(f"refusing to load {path}: it holds Python objects{what}, not just tensors and plain data, and unpickling them could run code") from None
    except MemoryError:
        raise SeqtoolError(f"{path} is not a readable checkpoint (it does not fit in memory)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways (zip, pickle, storage)
        detail = str(exc).splitlines()[0][:120] if str(exc) else "truncated"
        raise SeqtoolError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise SeqtoolError(f"{path} is not a seqtool checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise SeqtoolError(f"{path} has checkpoint format version {payload.get('version')}; this seqtool reads version {CHECKPOINT_VERSION}")
    if task is not None and payload.get("task") != task:
        raise SeqtoolError(f"{path} is a '{payload.get('task')}' checkpoint, not a '{task}' one")
    return payload


def check_complete(payload: dict, path: Path, training: bool = False) -> dict:
    """A checkpoint about to rebuild a model (or a whole run, `training`) has every part it needs."""
    parts = [("task", str), ("spec", dict), ("task_state", dict), ("model", dict)]
    if training:
        parts += [("optimizer", dict), ("progress", dict), ("rng", dict)]
    for key, kind in parts:
        if not isinstance(payload.get(key), kind):
            raise SeqtoolError(f"{path} is a damaged checkpoint (its '{key}' is missing or not a {kind.__name__})")
    for name, tensor in payload["model"].items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SeqtoolError(f"{path} holds non-finite weights (NaN or inf in {name}); it cannot be used; an earlier checkpoint may be")
    return payload


def resolve_checkpoint(arg: str | None, which: str = "best") -> Path:
    """A checkpoint file, a run directory (its best or last checkpoint), or by default runs/latest."""
    if arg is None or arg == LATEST:
        root = default_runs_root()
        latest = root / LATEST
        if not latest.exists():
            raise SeqtoolError(f"no run found under {root}/ (train one with 'seqtool train CORPUS', or pass --checkpoint)")
        path = latest.resolve()
    else:
        path = Path(arg)
    if path.is_dir():
        for name in (which, "last", "best"):
            candidate = path / "checkpoints" / f"{name}.pt"
            if candidate.is_file():
                return candidate
        raise SeqtoolError(f"{path} holds no checkpoint (looked for checkpoints/{which}.pt)")
    if not path.exists():
        raise SeqtoolError(f"no such checkpoint or run directory: {path}")
    return path


class RunDir:
    """One training run on disk. Never overwrites a previous run unless asked to."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: str | None = None

    # files
    spec_path = property(lambda self: self.path / "spec.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")

    def checkpoint(self, which: str) -> Path:
        return self.checkpoint_dir / f"{which}.pt"

    @classmethod
    def create(cls, out: str | None, runs_root: str | Path, name: str, overwrite: bool = False) -> "RunDir":
        """A new run directory: `out` if given (refused when non-empty unless overwrite), else a
        unique `runs_root/<time>-<name>`; runs_root/latest then points at it."""
        if out:
            path = Path(out)
            if path.exists() and not path.is_dir():
                raise UsageError(f"--out {path} exists and is not a directory")
            if path.is_dir() and any(path.iterdir()):
                if not overwrite:
                    raise UsageError(f"run directory {path} is not empty; pass --resume {path} to continue it or --overwrite to replace it")
                if (path / "checkpoints").is_dir():
                    busy = cls(path)
                    busy.acquire()  # refuses a directory another seqtool process is training into
                    busy.release()
                try:
                    shutil.rmtree(path)
                except OSError as exc:
                    raise SeqtoolError(f"cannot replace run directory {path}: {exc.strerror or exc}") from None
        else:
            root = Path(runs_root)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = root / f"{stamp}-{name}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = root / f"{stamp}-{name}-{suffix}"
        existed = path.exists()
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            if not existed:  # leave nothing that would make the next attempt need --overwrite
                shutil.rmtree(path, ignore_errors=True)
            raise SeqtoolError(f"cannot write to run directory {path}: {exc.strerror or exc}") from None
        run = cls(path)
        run.acquire()
        if not out:
            try:
                run.mark_latest(Path(runs_root))
            except OSError as exc:
                run.release()
                raise SeqtoolError(f"cannot update {Path(runs_root) / LATEST}: {exc.strerror or exc}") from None
        return run

    @classmethod
    def open(cls, arg: str) -> "RunDir":
        path = Path(arg)
        if path.is_file() and path.parent.name == "checkpoints":
            path = path.parent.parent
        if not (path / "checkpoints" / "last.pt").is_file():
            raise SeqtoolError(f"{path} is not a run directory with a checkpoint to resume (no checkpoints/last.pt)")
        run = cls(path)
        run.acquire()
        run.remove_stale_temp_files()
        return run

    # ---- one process per run -------------------------------------------------------------------
    def acquire(self) -> None:
        """Hold the run's lock (an flock on checkpoints/.lock, released by the kernel however the
        process ends): two processes writing one run directory would interleave its checkpoints and
        metrics. Within one process the lock is shared (counted), so a library user may hold
        several Trainers of one run."""
        if self._lock_fd is not None or fcntl is None:
            return
        lock = self.checkpoint_dir / LOCK
        key = os.path.realpath(lock)
        if key in _HELD:
            _HELD[key][1] += 1
            self._lock_fd = key
            return
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SeqtoolError(f"cannot write to run directory {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SeqtoolError(f"run directory {self.path} is in use by another seqtool process; wait for it to end or stop it first") from None
        _HELD[key] = [fd, 1]
        self._lock_fd = key

    def release(self) -> None:
        key, self._lock_fd = getattr(self, "_lock_fd", None), None
        held = _HELD.get(key) if key is not None else None
        if held is not None:
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                os.close(held[0])

    def __del__(self):
        self.release()

    def discard_if_unused(self, runs_root: Path | None = None) -> None:
        """Remove a run directory that a failed start left with nothing in it (so the next attempt
        needs no --overwrite), and a runs/latest link pointing at it."""
        try:
            leftovers = [p for p in self.path.rglob("*") if p.name != LOCK and not (p.is_dir() and p == self.checkpoint_dir)]
            if leftovers:
                return
            self.release()
            shutil.rmtree(self.path)
            link = Path(runs_root or default_runs_root()) / LATEST
            if link.is_symlink() and not link.exists():
                link.unlink()
        except OSError:
            pass

    def remove_stale_temp_files(self) -> list[Path]:
        """Temp files left by a process killed in the middle of an atomic write (we hold the lock,
        so none of them is being written now)."""
        removed = []
        for directory in (self.path, self.checkpoint_dir):
            for tmp in directory.glob(".*.tmp"):
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    pass
        return removed

    def mark_latest(self, runs_root: Path) -> None:
        """Point runs_root/latest at this run (a symlink swapped atomically)."""
        runs_root.mkdir(parents=True, exist_ok=True)
        link = runs_root / LATEST
        target = os.path.relpath(self.path.resolve(), runs_root.resolve())
        tmp = runs_root / f".{LATEST}.{os.getpid()}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2, default=_json_default) + "\n")

    def read_json(self, name: str) -> dict:
        """A JSON file of the run as a dict ({} when missing or unreadable)."""
        try:
            data = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything after it is unreliable
        return rows

    def truncate_metrics(self, keep_until_epoch: int) -> None:
        """On resume: drop rows logged after the checkpoint we resume from."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= keep_until_epoch]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def append_metrics(self, row: dict) -> None:
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, default=_json_default) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise WriteError(self.metrics_path, exc) from None


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
