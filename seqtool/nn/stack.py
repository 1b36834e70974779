"""One recurrent-stack interface for every task: cell type, depth, direction, dropout, state.

`impl="fused"` wraps torch's nn.RNN/GRU/LSTM (cuDNN on GPU, oneDNN on CPU). The parameters live in
the submodule `rnn` under torch's names (weight_ih_l0, weight_hh_l0_reverse, ...), so a state_dict
moves between implementations unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = ("rnn", "gru", "lstm")
IMPLS = ("fused",)

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a carried state (truncated BPTT) without copying it."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _fused_class(cell: str) -> type[nn.RNNBase]:
    return {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]


class RecurrentStack(nn.Module):
    """Deep, optionally bidirectional RNN/GRU/LSTM with torch's calling convention.

    forward(x, state=None) -> (output, state)
      x: (steps, batch, input) or (batch, steps, input) with batch_first
      output: last layer at every step, hidden * directions wide
      state: (layers * directions, batch, hidden); a pair (h, c) for LSTM
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell: str = "gru",
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        batch_first: bool = False,
        impl: str = "fused",
        nonlinearity: str = "tanh",
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        if impl not in IMPLS:
            raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
        self.cell, self.impl = cell, impl
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.batch_first = batch_first
        kwargs = dict(
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=batch_first,
        )
        if cell == "rnn":
            kwargs["nonlinearity"] = nonlinearity
        self.rnn = _fused_class(cell)(input_size, hidden_size, **kwargs)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def reset_parameters(self, orthogonal: bool = False, forget_bias: float | None = None) -> None:
        """RNN-specific initialisation: orthogonal recurrent blocks, a chosen LSTM forget-gate bias."""
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[self.cell]
        h = self.hidden_size
        for name, p in self.rnn.named_parameters():
            if orthogonal and name.startswith("weight_hh"):
                with torch.no_grad():
                    for g in range(gates):
                        nn.init.orthogonal_(p[g * h : (g + 1) * h])
            if forget_bias is not None and self.cell == "lstm" and name.startswith("bias_"):
                # gate order i, f, g, o; the two biases add up, so the ih bias carries all of it
                with torch.no_grad():
                    p[h : 2 * h].fill_(forget_bias if name.startswith("bias_ih") else 0.0)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self.rnn(x, state)

    def flatten_parameters(self) -> None:
        if hasattr(self.rnn, "flatten_parameters"):
            self.rnn.flatten_parameters()
