"""The two forecasting model families, behind one stepping interface.

Both read a window of the most recent values and predict the next one, and both can be rolled
forward on their own predictions:

  encode(x)           x: (batch, length) -> (predictions for positions min_context..length, carry)
  advance(carry, v)   consume the next value v: (batch,) -> (prediction for the step after, carry)

`ARForecaster` (autoregressive) sees exactly the last `tau` raw values. `LatentForecaster`
(latent autoregressive) runs a recurrent stack from a zero state over up to `context` values; its
hidden state is the summary of that history, so it is not limited to a fixed number of lags.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqtool.nn.global_forecaster import MemberLinear
from seqtool.nn.stack import RecurrentStack

MODELS = ("mlp", "rnn", "gru", "lstm")


class Forecaster(nn.Module):
    #: values read before a prediction (the training and inference window)
    context: int
    #: fewest values it can predict from
    min_context: int

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def advance(self, carry: Any, value: torch.Tensor) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def segment_predictions(self, seg: torch.Tensor, horizon: int = 1) -> torch.Tensor:
        """Training view of a segment (batch, L): predictions for positions min_context..L-1, read
        from the true values up to L - horizon, then rolled out on the model's own predictions for
        the last `horizon` positions (horizon 1 = plain teacher forcing). Aligned with seg[:, min_context:]."""
        preds, carry = self.encode(seg[:, : seg.shape[1] - horizon])
        out, p = [preds], preds[:, -1]
        for _ in range(horizon - 1):
            p, carry = self.advance(carry, p)
            out.append(p[:, None])
        return torch.cat(out, dim=1)

    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Recursive forecast: read x (batch, length), then predict `steps` values, each fed back
        in as the input of the next step. Returns (batch, steps)."""
        preds, carry = self.encode(x)
        out = [preds[:, -1]]
        for _ in range(steps - 1):
            p, carry = self.advance(carry, out[-1])
            out.append(p)
        return torch.stack(out, dim=1)


class MemberMLP(nn.Module):
    """`members` independently initialised tau -> hidden -> 1 MLPs side by side, one batched matrix
    product per layer: (..., tau) -> (..., members), every member's prediction."""

    def __init__(self, members: int, tau: int, hidden: int):
        super().__init__()
        self.members = members
        self.hidden, self.out = MemberLinear(members, tau, hidden), MemberLinear(members, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(1, -1, x.shape[-1]).expand(self.members, -1, -1)
        y = self.out(torch.relu(self.hidden(flat)))  # (members, N, 1)
        return y.squeeze(-1).transpose(0, 1).reshape(*x.shape[:-1], self.members)


class ARForecaster(Forecaster):
    """x̂_t = net(x_{t-tau}, ..., x_{t-1}); the classic net is tau -> 10 -> 1 with a ReLU.

    With `members` > 1 it is that many such nets side by side (MemberMLP) and x̂_t is their mean:
    a small net fitted on a short series lands somewhere different from every initialisation, and
    the mean of several is steadier than any one of them."""

    def __init__(self, tau: int, hidden: int = 10, net: nn.Module | None = None, members: int = 1):
        super().__init__()
        self.tau = self.context = self.min_context = tau
        self.members = members
        if net is None:
            net = MemberMLP(members, tau, hidden) if members > 1 else nn.Sequential(nn.Linear(tau, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.net = net

    def member_predictions(self, windows: torch.Tensor) -> torch.Tensor:
        """windows (..., tau) -> every member's prediction (..., members) (one column for a single net)."""
        return self.net(windows)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (batch, tau) -> next value (batch,): the members' mean."""
        return self.net(features).mean(-1)

    def encode(self, x):
        if x.shape[1] < self.tau:
            raise ValueError(f"need at least tau={self.tau} values, got {x.shape[1]}")
        wins = x.unfold(1, self.tau, 1)  # (batch, length - tau + 1, tau)
        return self(wins), x[:, -self.tau :]

    def advance(self, carry, value):
        window = torch.cat([carry[:, 1:], value[:, None]], dim=1)
        return self(window), window


class LatentForecaster(Forecaster):
    """h_t = cell(h_{t-1}, x_t), x̂_{t+1} = head(h_t): a recurrent stack plus a linear head."""

    def __init__(
        self,
        cell: str = "gru",
        hidden: int = 32,
        layers: int = 1,
        dropout: float = 0.0,
        context: int = 64,
        impl: str = "fused",
        stack: RecurrentStack | None = None,
    ):
        super().__init__()
        self.stack = stack if stack is not None else RecurrentStack(1, hidden, cell, layers, dropout, batch_first=True, impl=impl)
        if self.stack.bidirectional:
            raise ValueError("a forecaster cannot be bidirectional: it would read the values it predicts")
        self.head = nn.Linear(self.stack.output_size, 1)
        self.context, self.min_context = context, 1

    def encode(self, x):
        out, state = self.stack(x[..., None])
        return self.head(out).squeeze(-1), state

    def advance(self, carry, value):
        out, state = self.stack(value[:, None, None], carry)
        return self.head(out[:, -1]).squeeze(-1), state


def build_forecaster(model: str, tau: int, hidden: int, layers: int = 1, dropout: float = 0.0, impl: str = "fused",
                     members: int = 1) -> Forecaster:
    if model == "mlp":
        return ARForecaster(tau, hidden, members=members)
    if members > 1:
        raise ValueError(f"{model}: side-by-side members are for the mlp forecaster")
    if model in ("rnn", "gru", "lstm"):
        return LatentForecaster(model, hidden, layers, dropout, context=tau, impl=impl)
    raise ValueError(f"unknown forecasting model {model!r}; choose one of {', '.join(MODELS)}")
