"""A panel run's global model as one ONNX graph: `window` (batch, tau) raw values in, `forecast`
(batch, horizon) out (normalisation and the ensemble's median inside). The combination with Theta
and the interval half-widths (per step, in each series' MASE scale) stay in the sidecar JSON
(task_state and combination.json's widths), applied as seqtool applies them. `OnnxForecaster` runs
the graph behind the model's call signature, so `seqtool forecast --checkpoint RUN --engine
onnxruntime` shares every other step with the torch engine."""

from __future__ import annotations

import torch

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
