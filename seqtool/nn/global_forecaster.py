"""One network for many series: it reads the last `window` values of any series and forecasts the
next `horizon` at once (multi-step decoding, no feedback of its own predictions).

Each window is normalised on its own: minus its last value, divided by its mean absolute step, so
series of any level and scale share one model (the forecast is mapped back the same way). The
network is an ensemble of `members` independently initialised networks trained side by side; the
forecast is their median, which is steadier than any one of them.

  mlp:          the normalised window -> hidden layers (ReLU) -> horizon values; the members' layers
                are batched into one matrix product each
  rnn/gru/lstm: a recurrent stack reads the normalised window one value per step; a linear head
                maps its last output to the horizon values
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqtool.nn.stack import RecurrentStack


class MemberLinear(nn.Module):
    """`members` independent linear layers applied to (members, batch, in) in one batched product."""

    def __init__(self, members: int, inputs: int, outputs: int):
        super().__init__()
        bound = 1 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(members, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, outputs).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class GlobalForecaster(nn.Module):
    def __init__(self, window: int, horizon: int, cell: str = "mlp", hidden: int = 256, layers: int = 3,
                 dropout: float = 0.0, members: int = 5, impl: str = "fused"):
        super().__init__()
        self.window, self.horizon, self.members, self.cell = window, horizon, members, cell
        if cell == "mlp":
            sizes = [window] + [hidden] * layers
            blocks: list[nn.Module] = []
            for a, b in zip(sizes, sizes[1:]):
                blocks += [MemberLinear(members, a, b), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            self.mlp = nn.Sequential(*blocks, MemberLinear(members, sizes[-1], horizon))
        else:
            self.stacks = nn.ModuleList(RecurrentStack(1, hidden, cell, layers, dropout, batch_first=True, impl=impl) for _ in range(members))
            self.heads = nn.ModuleList(nn.Linear(hidden, horizon) for _ in range(members))

    @staticmethod
    def normaliser(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(level, scale) of each window (batch, length) -> two (batch, 1): its last value and its mean
        absolute step (1% of |level|, or 1, for a flat window)."""
        level = window[:, -1:]
        scale = (window[:, 1:] - window[:, :-1]).abs().mean(dim=1, keepdim=True)
        fallback = torch.where(level != 0, level.abs() * 0.01, torch.ones_like(level))
        return level, torch.where(scale > 0, scale, fallback)

    def members_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised windows (batch, window) -> every member's normalised forecast (members, batch, horizon)."""
        if self.cell == "mlp":
            return self.mlp(x.unsqueeze(0).expand(self.members, -1, -1))
        outs = []
        for stack, head in zip(self.stacks, self.heads):
            out, _ = stack(x[..., None])
            outs.append(head(out[:, -1]))
        return torch.stack(outs)

    def forward(self, window: torch.Tensor, members: bool = False) -> torch.Tensor:
        """Raw windows (batch, window) -> the median forecast (batch, horizon), in the series' units;
        with `members`, normalised windows -> members_scaled (training goes through forward, for DDP)."""
        if members:
            return self.members_scaled(window)
        level, scale = self.normaliser(window)
        ranked = self.members_scaled((window - level) / scale).sort(dim=0).values  # the median as sort + pick (exports to ONNX)
        return ranked[(self.members - 1) // 2] * scale + level
