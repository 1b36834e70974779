"""Why LSTM and GRU beat the vanilla RNN, measured: how far back the gradient reaches, and the
spectral norm of the recurrent weights that decides whether it explodes or vanishes.

Library functions return numbers or write files; they never print.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from seqtool.core.errors import SeqtoolError
from seqtool.nn.stack import RecurrentStack, State

GATE_NAMES = {"rnn": ("h",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}

LossFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GradFlow:
    """norms[l][t-1] = batch mean of ‖∂loss_T/∂h_t‖ for layer l (forward direction), t = 1..T."""

    norms: list[list[float]]

    @property
    def steps(self) -> int:
        return len(self.norms[-1])

    @property
    def last(self) -> list[float]:
        """The last layer's curve, the one the output head reads."""
        return self.norms[-1]

    def relative(self, layer: int = -1) -> list[float]:
        """The curve divided by its value at t = T: the fraction of the gradient left t steps back."""
        curve = self.norms[layer]
        top = curve[-1]
        return [v / top if top else float("nan") for v in curve]


def _scratch_twin(stack: RecurrentStack, dtype: torch.dtype | None, device: torch.device) -> RecurrentStack:
    twin = RecurrentStack(
        stack.input_size,
        stack.hidden_size,
        stack.cell,
        num_layers=stack.num_layers,
        dropout=stack.dropout,
        bidirectional=stack.bidirectional,
        batch_first=stack.batch_first,
        impl="scratch",
        nonlinearity=stack.nonlinearity,
    )
    twin.load_state_dict(stack.state_dict())
    return twin.to(device=device, dtype=dtype).eval()


def grad_flow(
    stack: RecurrentStack,
    x: torch.Tensor,
    state: State | None = None,
    loss_fn: LossFn | None = None,
    dtype: torch.dtype | None = None,
) -> GradFlow:
    """Norm of ∂loss_T/∂h_t for t = T..1, where loss_T reads only the last step's output.

    x is a batch of input sequences (already embedded) laid out as the stack expects. `loss_fn` maps
    the last step's output (batch, output_size) to per-example losses (batch,), e.g. a head plus
    cross-entropy with reduction="none"; the default sums the output features. Per-example losses
    are summed, so each example's gradient is its own and the reported norm is their batch mean.

    Works for either implementation: the measurement runs on a scratch copy (eval mode, no dropout;
    `dtype` to change precision), whose per-step states are the tensors the recurrence reads. For a
    bidirectional stack only the forward direction is measured: the backward one runs the other way.
    """
    twin = _scratch_twin(stack, dtype, x.device)
    dtype = next(twin.parameters()).dtype
    x = x.to(dtype)
    if state is not None:
        state = tuple(s.to(dtype) for s in state) if isinstance(state, tuple) else state.to(dtype)
    output, _, steps = twin.forward_steps(x, state)
    last = output[:, -1] if stack.batch_first and x.dim() == 3 else output[-1]
    losses = last.sum(dim=-1) if loss_fn is None else loss_fn(last)
    hs = [h for layer in steps for h in layer[0]]  # forward direction of every layer, in time order
    grads = torch.autograd.grad(losses.sum(), hs, allow_unused=True)
    T = len(steps[0][0])
    norms = []
    for layer in range(len(steps)):
        row = []
        for g in grads[layer * T : (layer + 1) * T]:
            row.append(0.0 if g is None else g.reshape(-1, g.shape[-1]).norm(dim=-1).mean().item())
        norms.append(row)
    return GradFlow(norms)


def lm_grad_flow(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> GradFlow:
    """grad_flow for a language model (seqtool.nn.lm.RNNLM): loss_T = cross-entropy of the last step.

    tokens and targets are (steps, batch) ids, time-major as the model reads them; the inputs go
    through the model's own embedding (or one-hot), the last output through its head.
    """
    with torch.no_grad():
        if model.embedding is None:
            x = torch.nn.functional.one_hot(tokens, model.vocab_size).to(model.out_dtype)
        else:
            x = model.embedding(tokens)
    last_target = targets[-1]
    was_training = model.training
    model.eval()
    try:
        return grad_flow(
            model.rnn, x, loss_fn=lambda y: model.output_nll(y, last_target)
        )
    finally:
        model.train(was_training)


def text_windows(ids: torch.Tensor, steps: int, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random windows of `steps` tokens and their next tokens, (steps, batch) each, seeded."""
    ids = ids.flatten()
    if ids.numel() < steps + 1:
        raise SeqtoolError(f"the text has {ids.numel()} tokens; {steps} steps need at least {steps + 1}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - steps, (batch,), generator=generator)
    index = starts[None, :] + torch.arange(steps)[:, None]
    return ids[index].long(), ids[index + 1].long()


@dataclass
class ModelFlow:
    """One checkpoint's measurements, for `seqtool eval --grad-flow`."""

    label: str
    checkpoint: str
    cell: str
    source: str
    flow: GradFlow
    singular_values: list[dict]

    def to_dict(self) -> dict:
        return {
            "label": self.label, "checkpoint": self.checkpoint, "cell": self.cell, "source": self.source,
            "grad_norms": self.flow.norms, "relative": self.flow.relative(),
            "singular_values": self.singular_values,
        }


def checkpoint_grad_flow(
    checkpoint: str | None, data: str | None = None, steps: int = 50, batch: int = 16, device: str = "auto", seed: int = 0
) -> ModelFlow:
    """Restore a language-model checkpoint and measure it on windows of DATA or its held-out split."""
    from seqtool.lm.evaluate import text_ids
    from seqtool.core.restore import restore

    r = restore(checkpoint, task="lm", device=device)
    ids, source = text_ids(r, data)
    tokens, targets = text_windows(ids, steps, batch, seed)
    flow = lm_grad_flow(r.model, tokens.to(r.device), targets.to(r.device))
    cell = r.spec.model.cell
    label = f"{checkpoint or 'latest'} ({cell})"
    return ModelFlow(label, str(r.path), cell, source, flow, recurrent_singular_values(r.model.rnn))


def recurrent_singular_values(stack: RecurrentStack) -> list[dict]:
    """Largest singular value of every recurrent weight, per gate block and for the whole matrix.

    Gradients through time pick up a factor W_hh^T per step (times the activation's derivative),
    so σ_max above 1 allows explosion and well below 1 forces vanishing. Rows are dicts with keys
    layer, direction ("forward"/"reverse"), block (a gate name, or "all") and sigma_max.
    """
    gates = GATE_NAMES[stack.cell]
    rows = []
    for name, w in stack.rnn.named_parameters():
        if not name.startswith("weight_hh_l"):
            continue
        rest = name[len("weight_hh_l") :]
        direction = "reverse" if rest.endswith("_reverse") else "forward"
        layer = int(rest.removesuffix("_reverse"))
        w = w.detach().to(device="cpu", dtype=torch.float64)
        blocks = list(zip(gates, w.chunk(len(gates), dim=0)))
        if len(gates) > 1:
            blocks.append(("all", w))
        for block, m in blocks:
            sigma = torch.linalg.matrix_norm(m, ord=2).item()
            rows.append({"layer": layer, "direction": direction, "block": block, "sigma_max": sigma})
    return rows


def format_grad_flow_table(curves: Mapping[str, GradFlow], relative: bool = False) -> str:
    """Plain-text table, one column per model, rows at t = T, T−1, T−2, T−4, ... and t = 1."""
    T = max(flow.steps for flow in curves.values())
    back = sorted({0, T - 1} | {2**k for k in range(T.bit_length()) if 2**k < T})
    names = list(curves)
    width = max(12, *(len(n) + 2 for n in names))
    lines = [f"{'t':>6}{'T-t':>6}" + "".join(f"{n:>{width}}" for n in names)]
    for b in back:
        cells = []
        for n in names:
            curve = curves[n].relative() if relative else curves[n].last
            t = len(curve) - b
            cells.append(f"{curve[t - 1]:>{width}.3e}" if t >= 1 else f"{'':>{width}}")
        lines.append(f"{T - b:>6}{b:>6}" + "".join(cells))
    return "\n".join(lines)


def format_singular_values(models: Mapping[str, list[dict]]) -> str:
    """Plain-text table of recurrent_singular_values rows: one line per model, layer and direction."""
    lines = [f"{'model':<30}{'layer':>6}  {'direction':<9}  blocks (sigma_max)"]
    for name, rows in models.items():
        groups: dict[tuple[int, str], list[str]] = {}
        for r in rows:
            groups.setdefault((r["layer"], r["direction"]), []).append(f"{r['block']} {r['sigma_max']:.3f}")
        for (layer, direction), cells in groups.items():
            lines.append(f"{name:<30}{layer:>6}  {direction:<9}  " + "  ".join(cells))
    return "\n".join(lines)


def plot_grad_flow(
    curves: Mapping[str, Sequence[float] | GradFlow], path: str | Path, title: str | None = None
) -> Path:
    """Write a PNG: ‖∂loss_T/∂h_t‖ against steps back (T − t), log-scale y, one line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, curve in curves.items():
        values = curve.last if isinstance(curve, GradFlow) else list(curve)
        back = list(range(len(values)))
        # T - t on the x axis: 0 is the step the loss reads; zeros cannot sit on a log axis
        ys = [v if v > 0 else float("nan") for v in reversed(values)]
        ax.plot(back, ys, label=name, linewidth=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the loss (T − t)")
    ax.set_ylabel("‖∂loss_T / ∂h_t‖")
    ax.set_title(title or "How far back the gradient reaches")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def grad_flow_report(checkpoints: list[str], data: str | None, steps: int, batch: int, plot: str,
                     device: str = "auto") -> tuple[dict, str]:
    """`seqtool eval --grad-flow`: gradient flow and singular values of each checkpoint; writes the
    plot; returns (the JSON result, the text table)."""
    from seqtool.core.errors import UsageError

    if steps < 1 or batch < 1:
        raise UsageError("--flow-steps and --flow-batch must be at least 1")
    if data == "-" and len(checkpoints) > 1:
        raise UsageError("standard input can be read for one checkpoint only; pass DATA as a file")
    models = [checkpoint_grad_flow(c, data, steps, batch, device) for c in checkpoints]
    curves = {m.label: m.flow for m in models}
    plot_grad_flow(curves, plot, title=f"How far back the gradient reaches (T = {steps})")
    result = {"steps": steps, "batch": batch, "plot": plot, "models": [m.to_dict() for m in models]}
    text = "\n".join([
        f"|d loss_T / d h_t| (last layer, mean over {batch} sequences of {steps} steps; loss at step T only)",
        format_grad_flow_table(curves), "", "largest singular value of the recurrent weights",
        format_singular_values({m.label: m.singular_values for m in models}), f"wrote {plot}",
    ])
    return result, text
