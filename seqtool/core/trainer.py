"""The one training loop, shared by every task.

It owns what all tasks have in common: device, seeding, optimiser and learning-rate schedule,
gradient clipping, carried (detached) recurrent state, time/token/epoch budgets, the progress
display, metrics.jsonl, atomic last/best checkpoints and exact resume. A Task supplies the rest.

No host syncs inside a step: losses, gradient norms and clip counts accumulate on the device and
are read back only when the progress bar refreshes or an epoch ends.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

import seqtool
from seqtool.core import distributed
from seqtool.core.accel import Precision, fused_optimizers, keep_freed_memory, maybe_compile, pinned
from seqtool.core.device import describe
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.epoch import EpochSums
from seqtool.core.logs import MetricSinks
from seqtool.core.faults import MAX_ROLLBACKS, NanPolicy, all_finite, nonfinite_error, resource_error, rollback_limit_error
from seqtool.nn.stack import compact_recurrent_weights, detach_state
from seqtool.core.progress import Reporter, Throttle
from seqtool.core.run import RunDir, load_checkpoint, save_checkpoint
from seqtool.core.spec import RunSpec
from seqtool.core.task import Task

class Interrupted(SeqtoolError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    items: float = 0.0  # tokens (or sentences, windows) trained on
    train_seconds: float = 0.0  # time inside training steps, for throughput
    elapsed: float = 0.0  # wall time, summed over resumes
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    plateau_scale: float = 1.0
    lr_scale: float = 1.0  # halved by each --on-nan rollback
    rollbacks: int = 0
    partial: dict = field(default_factory=dict)  # the current epoch's running sums (mid-epoch save)
    done: bool = False


def build_optimizer(spec: RunSpec, params, fused: bool = False) -> torch.optim.Optimizer:
    t = spec.train
    extra = {"fused": True} if fused else {}
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, **extra)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **extra)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **extra)


def lr_factor(spec: RunSpec, fraction: float, step: int, plateau_scale: float) -> float:
    """Multiplier of the base learning rate at a point in training (fraction of the budget used)."""
    t = spec.train
    factor = plateau_scale
    if t.warmup and step < t.warmup:
        factor *= (step + 1) / t.warmup
    fraction = min(max(fraction, 0.0), 1.0)
    if t.schedule == "cosine":
        factor *= 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * fraction))
    elif t.schedule == "step":
        factor *= 0.1 ** ((fraction >= 0.5) + (fraction >= 0.75))
    return factor


def _grad_norm(params: list[torch.Tensor], clip: float | None) -> torch.Tensor:
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "python" in state:
        random.setstate((3, tuple(state["python"]), None))


def _to_device_state(state, device):
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s.to(device) for s in state)
    return state.to(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak device memory on CUDA; peak resident memory of this process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions() -> dict:
    return {"seqtool": seqtool.__version__, "torch": str(torch.__version__), "python": platform.python_version(),
            "platform": platform.platform()}


class Trainer:
    """Runs one task's training into one run directory."""

    def __init__(
        self,
        spec: RunSpec,
        task: Task,
        run: RunDir,
        *,
        reporter: Reporter | None = None,
        command: str = "",
        resume: dict | None = None,
    ):
        self.spec, self.task, self.run = spec, task, run
        self.reporter = reporter or Reporter(quiet=True)
        self.command = command
        if spec.train.threads:
            torch.set_num_threads(spec.train.threads)
        keep_freed_memory()  # no page faults from re-allocating each step's large tensors
        # [ddp] one process unless started by torchrun (seqtool/distributed.py)
        self.dist, self.device = distributed.setup(spec.train.device)
        self.dist.check_batch(spec.train.batch)
        torch.manual_seed(spec.train.seed)
        random.seed(spec.train.seed)
        try:
            self.model: nn.Module = task.build_model().to(self.device)
        except ValueError as exc:  # a combination of model options the model cannot be built from
            raise UsageError(f"cannot build the model: {exc}") from None
        except (RuntimeError, MemoryError) as exc:
            raise resource_error(exc, "building the model") or exc
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(spec, self.params, fused=fused_optimizers(self.device))
        # [gpu] autocast/GradScaler, and the module the step calls: DDP, then torch.compile (self.model
        # stays the plain model: it is what gets saved and evaluated)
        self.precision = Precision(spec.train.precision, self.device)
        self.train_model = maybe_compile(self.dist.wrap(self.model), spec.train.compile, self.device,
                                         warn=None if self.dist.is_main else (lambda message: None))
        self.state = TrainState()
        self.nan = NanPolicy(spec.train.on_nan)
        self.carry = None
        # seconds of a --max-seconds budget kept for the last validation and the final test scoring
        self.val_seconds = self.test_seconds = 0.0
        self.callbacks: list[Callable[["Trainer"], None]] = []
        self._stop_signal: int | None = None
        if resume is not None:
            self._restore(resume)
        self.dist.fork_rng()  # [ddp] per-rank dropout streams
        self.sinks = MetricSinks(run, spec.output.log, self.state.global_step) if spec.output.log and self.dist.is_main else None

    # ---- checkpoints -------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "task": self.task.name,
            "spec": self.spec.with_absolute_paths().to_dict(only_used=True),
            "task_state": self.task.task_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": asdict(self.state),
            "rng": _rng_state(),
            "carry": self.dist.gather_state(detach_state(self.carry)),  # [ddp] the whole batch's state
            "precision": self.precision.state_dict(),
            "versions": versions(),
        }

    def save(self, which: tuple[str, ...] = ("last",)) -> None:
        if not all_finite(self.params):  # never replace a good checkpoint with a poisoned model
            raise nonfinite_error(self.state.global_step - 1, self.state.epoch + 1, self.run.checkpoint("last"), self._saved_step())
        payload = self._payload()  # [ddp] every rank calls this (it gathers the carried state)
        if not self.dist.is_main:
            return
        for name in which:
            save_checkpoint(self.run.checkpoint(name), payload)

    def _saved_step(self) -> int | None:
        try:
            return int(load_checkpoint(self.run.checkpoint("last"))["progress"]["global_step"])
        except (SeqtoolError, KeyError, TypeError, ValueError):
            return None

    def _rollback(self, bad_step: int) -> None:
        """--on-nan rollback: back to the last checkpoint with half the learning rate."""
        s = self.state
        if s.rollbacks >= MAX_ROLLBACKS:
            raise rollback_limit_error(bad_step, s.rollbacks)
        scale, rollbacks, elapsed = s.lr_scale * 0.5, s.rollbacks + 1, s.elapsed
        self._restore(self.dist.on_main(lambda: load_checkpoint(self.run.checkpoint("last"), task=self.task.name)))  # [ddp]
        self.state.lr_scale, self.state.rollbacks, self.state.elapsed = scale, rollbacks, elapsed
        self.reporter.log(f"non-finite loss or gradients at step {bad_step}: rolled back to step {self.state.global_step}, "
                          f"learning rate x{scale:g}")

    def _restore(self, payload: dict) -> None:
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            for group in self.optimizer.param_groups:  # [gpu] fused or not is where we run now, not where it ran
                group["fused"] = True if fused_optimizers(self.device) else None
            self.state = TrainState(**payload["progress"])
            _set_rng_state(payload["rng"])
            self.carry = self.dist.shard_state(_to_device_state(payload.get("carry"), self.device))  # [ddp]
            self.precision.load_state_dict(payload.get("precision"))
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise SeqtoolError(f"{self.run.checkpoint('last')} is a damaged checkpoint ({detail})") from None
        if self.dist.is_main:  # [ddp] rank 0 alone writes the run directory
            self.run.truncate_metrics(self.state.epoch)

    # ---- budget ------------------------------------------------------------------------------
    def training_seconds(self) -> float | None:
        """The part of --max-seconds that training may use: the whole budget less the time kept for
        the last validation and the final test scoring (at least a tenth of it)."""
        t = self.spec.train.max_seconds
        return max(t - self.val_seconds - self.test_seconds, 0.1 * t) if t else None

    def fraction_done(self) -> float:
        t, s = self.spec.train, self.state
        fractions = []
        per_epoch = self.task.batches_per_epoch()
        if per_epoch:
            fractions.append(s.global_step / (per_epoch * t.epochs))
        else:
            fractions.append(s.epoch / t.epochs)
        if t.max_seconds:
            fractions.append(s.elapsed / self.training_seconds())
        if t.max_tokens:
            fractions.append(s.items / t.max_tokens)
        return max(fractions)

    def _budget_left(self) -> bool:
        t, s = self.spec.train, self.state
        if t.max_seconds and s.elapsed >= self.training_seconds():
            return False
        if t.max_tokens and s.items >= t.max_tokens:
            return False
        return True

    # ---- signals -----------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Finish the current step, save, and stop (what Ctrl-C does)."""
        self._stop_signal = signum

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self.dist.duplicate_signal():  # [ddp] the same Ctrl-C, forwarded by torchrun
                return
            if self._stop_signal is not None:  # second Ctrl-C: abort now (files are atomic)
                raise KeyboardInterrupt
            self.request_stop(signum)

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until a budget, the epochs or patience run out; returns the run's summary (report.json)."""
        if self.dist.is_main:  # [ddp] rank 0 holds the run's lock for the job
            self.run.acquire()  # held already unless fit() runs again on this Trainer
        previous = self._install_signals()
        try:
            self._record_start()
            if not self.dist.on_main(lambda: self.run.checkpoint("last").exists()):  # [ddp] rank 0's disk decides
                self.save(("last",))  # a step-0 checkpoint: resumable (and a rollback target) from the start
            self.reporter.start(f"train {self.task.name}", total=1.0)
            self._wall0, self._elapsed0 = time.perf_counter(), self.state.elapsed
            if self.spec.train.max_seconds:  # [ddp] rank 0 scores, every rank keeps the same reserve
                self.val_seconds, self.test_seconds = self.dist.on_main(
                    lambda: self.task.held_out_seconds(self.model, self.device, self.spec.train.max_seconds))
            self.throttle = Throttle(self.reporter, self.state.items, self._wall0)
            while self.state.epoch < self.spec.train.epochs and (self._budget_left() or self.state.global_step == 0) and not self.state.done:
                sums, stopped = self.train_epoch()
                bad = self._first_nonfinite_step(sums)
                if bad is not None and self.spec.train.on_nan == "rollback":
                    self._rollback(bad)
                    continue
                if bad is not None:
                    self._nonfinite(bad)
                if stopped:
                    self.state.partial = sums
                    self.save(("last",))
                    return self._interrupted()
                self.end_epoch(sums)
            self.reporter.stop()
            return self.finish()
        except (RuntimeError, MemoryError) as exc:
            raise resource_error(exc, f"at step {self.state.global_step}") or exc
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.reporter.stop()
            if self.sinks is not None:
                self.sinks.close()
            self.run.release()

    def train_epoch(self) -> tuple[dict, bool]:
        """Steps through the rest of the current epoch -> (its sums, stopped by a signal)."""
        s = self.state
        self.model.train()
        sums = EpochSums(self.device, s.partial if self.dist.is_main else None, skipped=int((s.partial or {}).get("skipped", 0)),
                         steps=int((s.partial or {}).get("steps", s.step_in_epoch)))
        if s.step_in_epoch == 0:
            self.carry = None
        self.dist.start_epoch(s.elapsed)
        generator = torch.Generator().manual_seed(self.spec.train.seed * 1_000_003 + s.epoch)
        # [ddp] this process's rows of every batch; [gpu] pinned for non-blocking copies
        batches = pinned(self.dist.shard_batches(self.task.train_batches(s.epoch, generator), self.task.shard_batch, self.task.batch_dim),
                         self.device)
        stopped = False
        for index, batch in enumerate(batches):
            if index < s.step_in_epoch:
                continue  # a resumed epoch replays the same order up to where it stopped
            count = self.step(batch, sums)
            s.step_in_epoch = index + 1
            if self._after_step(count, sums):
                stopped = True
                break
            if not self._budget_left() or (self.nan.check_now(s.global_step) and self.dist.any(sums.bad_step >= 0)):
                break
        s.items += self.dist.flush()  # [ddp] items of steps not agreed on yet (CUDA)
        return sums.reduce(self.dist), stopped

    def step(self, batch, sums: EpochSums):
        """One optimizer step on one batch; returns the items it trained on (0 when skipped)."""
        s, t = self.state, self.spec.train
        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = t.lr * s.lr_scale * lr_factor(self.spec, self.fraction_done(), s.global_step, s.plateau_scale)
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():  # [gpu] no-op for fp32
            loss, count, self.carry = self.task.train_backward(self.train_model, batch, self.carry, self.device, self._backward)
        self.carry = detach_state(self.carry)
        self.precision.unscale(self.optimizer)  # [gpu] fp16: true gradient sizes before clipping
        norm = self.precision.finite_norm(_grad_norm(self.params, t.clip))
        loss = loss.detach()
        finite = torch.isfinite(loss + norm)  # one check for both (inf - inf is nan)
        if self.nan.skip(finite, self.dist, s.global_step):
            self.optimizer.zero_grad(set_to_none=True)
            self.carry = None  # the carried state may be what went wrong
            sums.skipped += 1
            count = 0  # a skipped batch trained nothing
        else:
            self.precision.step(self.optimizer)
            sums.add(loss, count, norm, finite, s.global_step, t.clip)
        s.global_step += 1
        s.train_seconds += time.perf_counter() - started
        return count

    def _after_step(self, count, sums: EpochSums) -> bool:
        """Budgets, callbacks and the display after a step; True when a signal asks to stop."""
        s, now = self.state, time.perf_counter()
        # [ddp] global items, one elapsed time and one stop decision for all processes
        items, s.elapsed, stop = self.dist.agree(count, self._elapsed0 + now - self._wall0, self._stop_signal is not None)
        s.items += items  # (one process: tensor counts sync here)
        for callback in self.callbacks:
            callback(self)
        self.throttle.tick(now, s.items, self.fraction_done, lambda rate: self._status(sums.mean_loss(), rate))
        return self.dist.stop_now(stop, self._stop_signal is not None)  # [ddp] only an agreed stop

    def _first_nonfinite_step(self, sums: dict) -> int | None:
        bad = int(sums["bad_step"])
        if bad < 0 and not all_finite(self.params):  # weights overflowed on a finite update
            bad = self.state.global_step - 1
        return bad if bad >= 0 else None

    def end_epoch(self, sums: dict) -> None:
        """Evaluate, log, keep the best, checkpoint."""
        s = self.state
        s.epoch, s.step_in_epoch, s.partial = s.epoch + 1, 0, {}
        self.carry = None
        label = self.task.validation_label()
        self.reporter.update(self.fraction_done(), f"validating{' on ' + label if label else ''}...")
        started = time.perf_counter()
        metrics, self.val_seconds = self.dist.on_main(  # [ddp] rank 0 evaluates; its time is everyone's reserve
            lambda: (self.task.evaluate(self.model, self.device), time.perf_counter() - started))
        s.elapsed = self.dist.same_time(self._elapsed0 + time.perf_counter() - self._wall0)  # [ddp] the mean of the clocks
        row = self._metrics_row(sums, metrics)
        improved = self._track_best(metrics)
        if self.dist.is_main:
            self.run.append_metrics(row)
            if self.sinks is not None:
                self.sinks.write(row)
        self.reporter.log(self._epoch_line(row))
        if self.spec.train.patience is not None and s.bad_epochs >= self.spec.train.patience:
            s.done = True
        self.save(("last", "best") if improved else ("last",))

    def _record_start(self) -> None:
        """spec.yaml and run.json (with the history of starts and resumes)."""
        s = self.state
        if not self.dist.is_main:  # [ddp] rank 0 writes
            return
        self.run.write_text("spec.yaml", self.spec.with_absolute_paths().to_yaml(only_used=True))
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        history = self.run.read_json("run.json").get("history", [])
        history.append({"command": self.command, "started": started, "from_step": s.global_step})
        self.run.write_json("run.json", {
            "command": self.command, "cwd": os.getcwd(), "device": describe(self.device),
            "processes": self.dist.world,  # [ddp]
            "versions": versions(), "host": platform.node(), "started": started,
            "resumed_from_epoch": s.epoch if s.global_step else None, "history": history,
        })

    def finish(self) -> dict:
        """Write report.json/.md and plots for the run as it stands; returns the summary."""
        from seqtool.core.report import write_run_report

        summary = self.summary()
        if not self.dist.is_main:  # [ddp] rank 0 reports
            return summary
        chosen = self.selected_model()
        if self.reporter.live and self.test_seconds >= 1:
            self.reporter.log(f"scoring the test split (about {self.test_seconds:.0f} s)...")
        started = time.perf_counter()
        test = self.task.test(chosen, self.device)
        if test:
            summary["test"] = {"epoch": self.state.best_epoch, **test}
            summary["test_seconds"] = time.perf_counter() - started
            summary["wall_seconds"] += summary["test_seconds"]  # the budget holds the test scoring too
        extra, sections = self.task.report(chosen, self.device, self.run.path)
        summary.update(extra)
        write_run_report(self.run, summary, self.task.monitor, sections)
        return summary

    def selected_model(self) -> nn.Module:
        """The model selection chose: the best checkpoint's weights (the current ones when there is none)."""
        best = self.run.checkpoint("best")
        if not best.is_file():
            return self.model
        chosen = compact_recurrent_weights(copy.deepcopy(self.model))
        chosen.load_state_dict(load_checkpoint(best)["model"])
        return chosen.eval()

    # ---- helpers -----------------------------------------------------------------------------
    def _backward(self, loss: torch.Tensor) -> None:
        """The one place a loss is backpropagated (tasks that cut their own graph call it per segment)."""
        self.precision.backward(loss)  # [gpu] outside autocast, scaled for fp16

    def _status(self, mean_loss: float, rate: float) -> str:
        ppl = f"  ppl {math.exp(min(mean_loss, 50)):.2f}" if self.task.loss_is_nll else ""
        return f"loss {mean_loss:.4g}{ppl}  {rate:,.0f} {self.task.unit}/s"

    def _metrics_row(self, sums: dict, metrics: dict) -> dict:
        s, steps = self.state, sums["steps"]
        count = max(sums["count"], 1.0)
        train_loss = sums["loss"] / count
        row = {
            "epoch": s.epoch,
            "step": s.global_step,
            "train_loss": train_loss,
            **({"train_ppl": math.exp(min(train_loss, 50.0))} if self.task.loss_is_nll else {}),
            **{k: float(v) for k, v in metrics.items()},
            "grad_norm": sums["norm"] / max(steps, 1),
            "clip_frac": sums["clipped"] / max(steps, 1) if self.spec.train.clip is not None else 0.0,
            "lr": self.optimizer.param_groups[0]["lr"],
            **({"skipped_steps": int(sums.get("skipped", 0))} if self.spec.train.on_nan == "skip" else {}),
            **({"rollbacks": s.rollbacks} if self.spec.train.on_nan == "rollback" else {}),
            f"{self.task.unit}_per_s": s.items / max(s.train_seconds, 1e-9),
            "elapsed": s.elapsed,
        }
        return row

    def _epoch_line(self, row: dict) -> str:
        monitor = self.task.monitor
        parts = [f"epoch {row['epoch']:>3}", f"train loss {row['train_loss']:.4f}"]
        if monitor in row:
            label = self.task.validation_label()
            parts.append(f"{monitor} {row[monitor]:.4f}" + (f" (on {label})" if label else ""))
        parts.append(f"{row[f'{self.task.unit}_per_s']:,.0f} {self.task.unit}/s")
        parts.append(f"{row['elapsed']:.0f}s")
        return "  ".join(parts)

    def _track_best(self, metrics: dict) -> bool:
        s, task = self.state, self.task
        value = float(metrics[task.monitor])
        better = s.best is None or (value < s.best if task.monitor_lower_is_better else value > s.best)
        if math.isfinite(value) and better:
            s.best, s.best_epoch, s.bad_epochs = value, s.epoch, 0
            return True
        s.bad_epochs += 1
        if self.spec.train.schedule == "plateau":
            s.plateau_scale *= 0.5
        return False

    def _nonfinite(self, step: int) -> None:
        raise nonfinite_error(step, self.state.epoch + 1, self.run.checkpoint("last"), self._saved_step())

    def _interrupted(self) -> dict:
        signum = self._stop_signal or signal.SIGINT
        code = 130 if signum == signal.SIGINT else 143
        raise Interrupted(
            f"interrupted at step {self.state.global_step}; checkpoint saved; resume with: seqtool train --resume {self.run.path}",
            exit_code=code,
        )

    def summary(self) -> dict:
        s = self.state
        rows = self.run.read_metrics()
        return {
            "run": str(self.run.path),
            "task": self.task.name,
            "epochs": s.epoch,
            "steps": s.global_step,
            "final": rows[-1] if rows else {},
            "best": {"epoch": s.best_epoch, self.task.monitor: s.best},
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "wall_seconds": s.elapsed,
            f"{self.task.unit}_per_s": s.items / max(s.train_seconds, 1e-9),
            "device": describe(self.device),
            "processes": self.dist.world,  # [ddp]
            "precision": self.spec.train.precision,
            "peak_memory_mb": peak_memory_mb(self.device),
            "command": self.command,
            "versions": versions(),
        }
