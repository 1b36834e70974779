"""A panel run's global model as one ONNX graph: `window` (batch, tau) raw values in, `forecast`
(batch, horizon) out (normalisation and the ensemble's median inside). The combination with Theta
and the interval half-widths (per step, in each series' MASE scale) stay in the sidecar JSON
(task_state and combination.json's widths), applied as seqtool applies them. `OnnxForecaster` runs
the graph behind the model's call signature, so `seqtool forecast --checkpoint RUN --engine
onnxruntime` shares every other step with the torch engine."""

from __future__ import annotations

import copy

import torch
from torch import nn

from seqtool.core.export import Graph


def graphs(r) -> list[Graph]:
    generator = torch.Generator().manual_seed(0)

    def windows(batch: int) -> dict[str, torch.Tensor]:
        walk = torch.randn(batch, r.task.window, generator=generator).cumsum(1)
        return {"window": 100.0 + 10.0 * walk}

    return [Graph("model", r.model, windows(3), windows(17), ["forecast"], {"window": {0: "batch"}})]


class OnnxForecaster:
    def __init__(self, sessions: dict, spec=None):
        self.session = sessions["model"]

    def eval(self):
        return self

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"window": window.cpu().float().numpy()})[0])


class SeriesRollout(nn.Module):
    """A single-series forecaster's recursive forecast as a graph: `window` (batch, context) in the
    model's units -> `forecast` (batch, steps), each step fed back as the next input."""

    def __init__(self, model, steps: int):
        super().__init__()
        self.model, self.steps = model, steps

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.model.rollout(window, self.steps)


def export_steps(spec) -> int:
    """How far the exported graph forecasts: the run's --horizon or its largest k, whichever is larger."""
    return max(spec.forecast.horizon or 0, *spec.forecast.k)


def series_graphs(r) -> list[Graph]:
    """The network of a single-series run. Its fitted transform (Box-Cox, differences, scaling) and
    the ETS/Theta combination and interval widths (combination.json) stay outside the graph, as
    data in the sidecar: the onnxruntime engine applies them as seqtool does."""
    model = r.model
    if getattr(model, "stack", None) is not None:  # a latent (recurrent) model: the scratch cells, which the exporter lowers
        model = copy.deepcopy(model)
        model.stack = model.stack.as_scratch()
    generator = torch.Generator().manual_seed(0)
    context = r.model.context

    def windows(batch: int) -> dict[str, torch.Tensor]:
        return {"window": torch.randn(batch, context, generator=generator).cumsum(1) * 0.3}

    return [Graph("model", SeriesRollout(model.eval(), export_steps(r.spec)), windows(3), windows(7), ["forecast"],
                  {"window": {0: "batch"}}, reference=SeriesRollout(r.model, export_steps(r.spec)))]


class OnnxSeriesForecaster:
    """The Forecaster interface forecast_from needs (context, min_context, rollout, parameters) on
    the exported roll-out: windows of exactly `context` values, at most the exported number of steps."""

    def __init__(self, sessions: dict, spec):
        self.session = sessions["model"]
        self.steps = export_steps(spec)
        self.context, self.min_context = int(self.session.get_inputs()[0].shape[1]), 1

    def eval(self):
        return self

    def parameters(self):
        return iter([torch.zeros(())])

    def rollout(self, window: torch.Tensor, steps: int) -> torch.Tensor:
        from seqtool.core.errors import SeqtoolError

        if window.shape[1] != self.context:
            raise SeqtoolError(f"the exported graph reads exactly {self.context} values; this series has {window.shape[1]} before its end")
        if steps > self.steps:
            raise SeqtoolError(f"the exported graph forecasts {self.steps} steps; this asks for {steps} (export a run trained with --horizon {steps})")
        return torch.from_numpy(self.session.run(None, {"window": window.cpu().float().numpy()})[0][:, :steps])
