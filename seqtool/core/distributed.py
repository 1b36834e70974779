"""Training on several processes with PyTorch's DistributedDataParallel (DDP), started by torchrun.

`torchrun --nproc-per-node N -m seqtool train ...` (or `seqtool train --nproc N`, which starts torchrun
for you) runs N copies of the same command; each learns its rank from torchrun's environment and
joins one process group: gloo on CPU, nccl on CUDA (one GPU per process, cuda:LOCAL_RANK).

What stays the same whatever the number of processes:
- `train.batch` is the global batch of one optimiser step. Every process builds the epoch's batches
  from the same per-epoch generator (so they agree on the order without talking) and trains on its
  share of the rows of each: rank r takes rows [r*B/N, (r+1)*B/N). For sequential partitioning those
  rows are contiguous streams, so each process carries its own hidden states and they stay valid;
  random sampling reshuffles every epoch exactly as one process would. DDP averages the gradients,
  so with equal shares a step is the one a single process takes on the whole batch (to rounding).
  (Where rows hold different numbers of tokens, as in translation, that average of per-process
  means is close to, not exactly, the mean over the whole batch.)
- Only rank 0 writes: the run directory, checkpoints, metrics, reports and the progress display.
  The other ranks get a ReplicaRunDir whose writes do nothing.
- Decisions are shared: after each step the processes agree, with one small all-reduce, on the
  tokens trained, the elapsed time and whether anyone was asked to stop (on CUDA every
  AGREE_EVERY_CUDA steps, to keep host syncs out of most steps), so the learning-rate schedule, the
  budgets and Ctrl-C act on every process at the same step. Epoch sums are all-reduced (global
  loss and tokens/s); held-out evaluation runs on rank 0 and its metrics are broadcast.
- A checkpoint holds the unwrapped model and the carried state gathered back to the global batch,
  so a run resumes on any number of processes.

Dropout draws from a per-rank random stream (forked from the shared seed), as the rows of one big
batch would. Anything random that changes the *shape* of a step (how many forward/backward calls
it makes) must use the per-epoch generator instead, or the processes would stop matching up.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError

#: on CUDA, agree on budgets/stop every this many steps (each agreement is a host sync)
AGREE_EVERY_CUDA = 8
#: a second SIGINT/SIGTERM this soon after the first is the launcher forwarding the same Ctrl-C
DUPLICATE_SIGNAL_SECONDS = 2.0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def peer_failure(exc: BaseException) -> bool:
    """A collective failed because another process of the job went away (gloo: 'Connection closed
    by peer', nccl: a DistBackendError): the launcher reports which process, this one need not."""
    import torch.distributed as tdist

    dist_error = getattr(tdist, "DistError", None) if tdist.is_available() else None
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "[gloo", "gloo/", "NCCL"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


# ---- sharding (pure functions, tested without processes) ---------------------------------------
def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for item in obj:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def batch_rows(batch: Any, dim: int) -> int:
    first = _first_tensor(batch)
    return 0 if first is None or first.dim() <= dim else first.shape[dim]


def shard_rows(batch: Any, rank: int, world: int, dim: int = 0) -> Any:
    """Rank `rank`'s share of every tensor in a batch (tuples, lists, dicts, named tuples), split
    along `dim` into `world` contiguous, nearly equal parts; non-tensors pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.tensor_split(world, dim=dim)[rank] if batch.dim() > dim else batch
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(shard_rows(b, rank, world, dim) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_rows(b, rank, world, dim) for b in batch)
    if isinstance(batch, dict):
        return {k: shard_rows(v, rank, world, dim) for k, v in batch.items()}
    return batch


def _map_state(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(_map_state(s, fn) for s in state)
    return fn(state)


#: recurrent states are (layers * directions, batch, hidden): the batch is dimension 1
STATE_BATCH_DIM = 1


def shard_state(state: Any, rank: int, world: int) -> Any:
    """This rank's columns of a carried state saved for the global batch."""
    return _map_state(state, lambda s: s.tensor_split(world, dim=STATE_BATCH_DIM)[rank].contiguous())


# ---- the process group -------------------------------------------------------------------------
class Dist:
    """Where this process stands: one process (the default, every method a no-op) or rank/world of
    a torchrun job with an initialised process group."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = torch.device("cpu")
        self.agree_every = 1
        self._pending: Any = 0.0  # items since the last agreement (number or device tensor)
        self._since = 0  # steps since the last agreement
        self._elapsed = 0.0  # the last agreed elapsed time
        self._first_signal: float | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        """What this process's collectives run on: nccl for a GPU, gloo for the CPU."""
        return None if not self.active else "nccl" if self.device.type == "cuda" else "gloo"

    def __repr__(self) -> str:
        return f"Dist(rank={self.rank}, world={self.world}, backend={self.backend})" if self.active else "Dist(single process)"

    def use_device(self, device: torch.device) -> torch.device:
        """CUDA means this process's GPU, cuda:LOCAL_RANK."""
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise UsageError(f"local rank {self.local_rank} has no GPU ({torch.cuda.device_count()} visible): start at most one process per GPU")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.agree_every = AGREE_EVERY_CUDA if device.type == "cuda" else 1
        return device

    # model and data
    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around the model for training (the unwrapped model is what gets saved and evaluated)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids, output_device=ids[0] if ids else None, gradient_as_bucket_view=True)

    def check_batch(self, batch: int) -> None:
        if self.active and batch % self.world:
            raise UsageError(f"--batch {batch} is the global batch, split evenly across processes: it must be a multiple of the {self.world} processes")

    def shard_batches(self, batches: Iterable, shard: Callable[[Any, int, int], Any], dim: int) -> Iterator:
        """This rank's share of every batch; batches with fewer rows than processes are skipped by all."""
        if not self.active:
            yield from batches
            return
        for batch in batches:
            if batch_rows(batch, dim) < self.world:
                continue
            yield shard(batch, self.rank, self.world)

    # agreement
    def agree(self, count, elapsed: float, stop: bool) -> tuple[float, float, bool]:
        """After a step: (items to add, elapsed seconds, stop?) agreed by every process.

        One process: (count, elapsed, stop) as they are. Several: items are summed over processes,
        elapsed is the mean of their clocks and stop is anyone's; between agreements (CUDA) items
        add 0, elapsed stays at the last agreed value and nobody stops, so every process computes
        the same learning rate and budget decisions at every step.
        """
        if not self.active:
            return (count if isinstance(count, (int, float)) else float(count)), elapsed, stop
        import torch.distributed as tdist

        self._pending = self._pending + count
        self._since += 1
        if self._since < self.agree_every:
            return 0.0, self._elapsed, False
        vec = torch.zeros(3, dtype=torch.float64, device=self._comm_device())
        vec[0] = self._pending if isinstance(self._pending, torch.Tensor) else float(self._pending)
        vec[1] = elapsed
        vec[2] = 1.0 if stop else 0.0
        tdist.all_reduce(vec)
        items, elapsed_sum, stops = vec.tolist()
        self._pending, self._since = 0.0, 0
        self._elapsed = elapsed_sum / self.world
        return items, self._elapsed, stops > 0

    def flush(self) -> float:
        """At the end of an epoch: the items of the steps since the last agreement (CUDA), summed
        over processes. Every process calls it after the same step, so all take the same branch."""
        if not self.active or self._since == 0:
            return 0.0
        import torch.distributed as tdist

        vec = torch.zeros(1, dtype=torch.float64, device=self._comm_device())
        vec[0] = self._pending if isinstance(self._pending, torch.Tensor) else float(self._pending)
        tdist.all_reduce(vec)
        self._pending, self._since = 0.0, 0
        return float(vec.item())

    def stop_now(self, agreed: bool, requested: bool) -> bool:
        """Stop after this step? One process: whenever asked (also by a callback after agree());
        several: only when agreed, so all stop at the same step (a later request waits for the
        next agreement)."""
        return agreed if self.active else requested

    def same_time(self, elapsed: float) -> float:
        """One elapsed time for all processes (the mean of their clocks), for decisions between epochs."""
        if not self.active:
            return elapsed
        import torch.distributed as tdist

        vec = torch.tensor([elapsed], dtype=torch.float64, device=self._comm_device())
        tdist.all_reduce(vec)
        return float(vec.item()) / self.world

    def start_epoch(self, elapsed: float) -> None:
        """Everyone enters an epoch with the same (restored or agreed) elapsed time."""
        self._elapsed, self._pending, self._since = elapsed, 0.0, 0

    def reduce_sums(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Epoch sums over all processes: 'loss' and 'count' are summed, 'bad_step' is the first
        non-finite step anywhere (-1 for none); the rest (gradient norms, clip counts: the same on
        every process after DDP) stay as rank 0 has them."""
        if not self.active:
            return sums
        import torch.distributed as tdist

        dev = self._comm_device()
        out = dict(sums)
        summed = torch.stack([sums["loss"].double(), sums["count"].double()]).to(dev)
        tdist.all_reduce(summed)
        out["loss"], out["count"] = summed[0].to(sums["loss"].dtype), summed[1].to(sums["count"].dtype)
        if "bad_step" in sums:
            bad = sums["bad_step"].double().to(dev)
            bad = torch.where(bad < 0, torch.full_like(bad, float("inf")), bad)
            tdist.all_reduce(bad, op=tdist.ReduceOp.MIN)
            out["bad_step"] = torch.where(torch.isinf(bad), torch.full_like(bad, -1.0), bad).to(sums["bad_step"].dtype)
        return out

    def on_main(self, fn: Callable[[], Any], share: Callable[[Any], Any] | None = None) -> Any:
        """fn() on rank 0, which keeps its result; the other ranks get share(result) (the result
        itself by default), or rank 0's error raised again."""
        if not self.active:
            return fn()
        import torch.distributed as tdist

        box: list[Any] = [None]
        if self.is_main:
            try:
                result = fn()
            except SeqtoolError as exc:
                box[0] = ("error", str(exc), exc.exit_code)
                tdist.broadcast_object_list(box, src=0)
                raise
            box[0] = ("ok", share(result) if share else result)
            tdist.broadcast_object_list(box, src=0)
            return result
        tdist.broadcast_object_list(box, src=0)
        if box[0][0] == "error":
            error = SeqtoolError(box[0][1])
            error.exit_code = box[0][2]
            raise error
        return box[0][1]

    def any(self, flag: torch.Tensor | bool) -> bool:
        """True on every process if it is true on any (a host sync: for decisions that change
        what every process does next, such as skipping a step)."""
        if not self.active:
            return bool(flag)
        import torch.distributed as tdist

        vec = torch.tensor([1.0 if bool(flag) else 0.0], device=self._comm_device())
        tdist.all_reduce(vec)
        return bool(vec.item() > 0)

    # carried state
    def gather_state(self, state: Any) -> Any:
        """The carried state of the global batch (a collective: every rank calls it; all get it)."""
        if not self.active or state is None:
            return state
        import torch.distributed as tdist

        def gather(s: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(s) for _ in range(self.world)]
            tdist.all_gather(parts, s.contiguous())
            return torch.cat(parts, dim=STATE_BATCH_DIM)

        return _map_state(state, gather)  # (every rank has a state of the same structure: same batches, same model)

    def shard_state(self, state: Any) -> Any:
        return shard_state(state, self.rank, self.world) if self.active and state is not None else state

    # randomness and signals
    def fork_rng(self) -> None:
        """Give each rank its own random stream (dropout), derived from the shared one."""
        if not self.active:
            return
        import random

        base = int(torch.randint(0, 2**62, (1,)))
        torch.manual_seed(base + 7919 * self.rank)
        random.seed(base + 7919 * self.rank)

    def duplicate_signal(self) -> bool:
        """True for a repeat of the first SIGINT/SIGTERM within a moment: under torchrun a Ctrl-C
        reaches a worker twice (from the terminal and forwarded by the agent); only a later one
        means 'abort now'."""
        now = time.monotonic()
        if self._first_signal is None:
            self._first_signal = now
            return False
        return self.active and now - self._first_signal < DUPLICATE_SIGNAL_SECONDS

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


_CURRENT: Dist | None = None


def setup(device_name: str = "auto") -> tuple[Dist, torch.device]:
    """Join torchrun's process group if this process is one of several; returns (dist, device).

    One process: Dist() and the device `device_name` picks. Several: one process group for the
    whole run, gloo for CPU tensors and nccl for CUDA ones when CUDA is present (so it can be
    joined before the run's device is known, e.g. to hand a checkpoint around on resume), and
    this process's GPU, cuda:LOCAL_RANK, as its device. Later calls reuse the group.
    """
    from seqtool.core.device import pick_device

    global _CURRENT
    world = env_world_size()
    if world <= 1:
        return Dist(), pick_device(device_name)
    if _CURRENT is None:
        import torch.distributed as tdist

        if not tdist.is_available():
            raise SeqtoolError("this PyTorch build has no torch.distributed; train in one process")
        for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise UsageError(f"WORLD_SIZE={world} is set but {key} is not: start distributed training with torchrun or seqtool train --nproc")
        if not tdist.is_initialized():
            tdist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
            atexit.register(_teardown)
        _CURRENT = Dist(env_rank(), world, int(os.environ["LOCAL_RANK"]))
    return _CURRENT, _CURRENT.use_device(pick_device(device_name))


def _teardown() -> None:
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        try:
            tdist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# ---- `seqtool train --nproc N`: start torchrun -------------------------------------------------
def strip_nproc(args: list[str]) -> list[str]:
    """The command line without --nproc N / --nproc=N."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def launch(nproc: int, train_args: list[str], command: str) -> int:
    """Run `seqtool train TRAIN_ARGS` in `nproc` processes on this machine with torchrun (the
    standalone rendezvous picks a free port); returns the exit code.

    torchrun runs in its own session, so a terminal's Ctrl-C reaches the workers once, forwarded
    by the agent: they finish the step and save. A second Ctrl-C kills them (files are atomic).
    """
    import signal
    import subprocess

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("LOGLEVEL", "ERROR")  # torchrun's own info/warning lines
    env["SEQTOOL_COMMAND"] = command
    cmd = [sys.executable, "-m", "seqtool.core.launch", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "seqtool", "train", *strip_nproc(train_args)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    forwarded = [0]

    def forward(signum, frame):
        forwarded[0] += 1
        try:
            if forwarded[0] == 1:
                proc.send_signal(signum)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    import threading

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, forward)
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
