"""One recurrent-stack interface for every task: cell type, depth, direction, dropout, state.

`impl="fused"` wraps torch's nn.RNN/GRU/LSTM (cuDNN on GPU, oneDNN on CPU); `impl="scratch"` unrolls
the cells of seqtool.nn.cells in Python, for teaching and for checking the fused kernels. Either way
the parameters live in the submodule `rnn` under torch's names and in torch's order (weight_ih_l0,
weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse), so a state_dict, and an optimizer state, move
between implementations unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from seqtool.nn.cells import GATES, NONLINEARITIES, run_layer

CELLS = ("rnn", "gru", "lstm")
IMPLS = ("fused", "scratch")

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


class ScratchRNN(nn.Module):
    """Drop-in for nn.RNN/GRU/LSTM built from seqtool.nn.cells: same arguments, parameters, init, I/O.

    Parameters are registered in torch's order and initialised like torch (uniform ±1/sqrt(H) over
    `parameters()`), so the same seed gives the same weights under either implementation.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        batch_first: bool = False,
        nonlinearity: str = "tanh",
    ):
        super().__init__()
        if cell == "rnn" and nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose one of {', '.join(NONLINEARITIES)}")
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.num_layers, self.dropout, self.bidirectional = num_layers, dropout, bidirectional
        self.batch_first, self.nonlinearity = batch_first, nonlinearity
        self.num_directions = 2 if bidirectional else 1
        gh = GATES[cell] * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(gh, width)))
                self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(gh, hidden_size)))
                self.register_parameter(f"bias_ih{suffix}", nn.Parameter(torch.empty(gh)))
                self.register_parameter(f"bias_hh{suffix}", nn.Parameter(torch.empty(gh)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self, suffix: str) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f"{n}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, x: torch.Tensor, hx: State | None = None) -> tuple[torch.Tensor, State]:
        output, state, _ = self.forward_steps(x, hx)
        return output, state

    def forward_steps(
        self, x: torch.Tensor, hx: State | None = None
    ) -> tuple[torch.Tensor, State, list[list[list[torch.Tensor]]]]:
        """forward() plus steps[layer][direction] = that layer's hidden state at every step, in time order."""
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
            hx = None if hx is None else _map_state(hx, lambda s: s.unsqueeze(1))
        elif self.batch_first:
            x = x.transpose(0, 1)
        h0, c0 = self._initial_state(x, hx)
        lstm = self.cell == "lstm"
        layer_in, h_n, c_n, steps = x, [], [], []
        for layer in range(self.num_layers):
            outs, layer_steps = [], []
            for d, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.num_directions + d
                init = (h0[k], c0[k]) if lstm else h0[k]
                out, last, hs = run_layer(
                    self.cell, layer_in, init, *self._weights(suffix), reverse=d == 1, nonlinearity=self.nonlinearity
                )
                outs.append(out)
                layer_steps.append(hs)
                h_n.append(last[0] if lstm else last)
                if lstm:
                    c_n.append(last[1])
            steps.append(layer_steps)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if layer < self.num_layers - 1 and self.dropout > 0:
                layer_in = F.dropout(layer_in, self.dropout, self.training)
        output = layer_in
        state: State = (torch.stack(h_n), torch.stack(c_n)) if lstm else torch.stack(h_n)
        if unbatched:
            output, state = output.squeeze(1), _map_state(state, lambda s: s.squeeze(1))
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, state, steps

    def _initial_state(self, x: torch.Tensor, hx: State | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        shape = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        if hx is None:
            zeros = x.new_zeros(shape)
            return zeros, (zeros if self.cell == "lstm" else None)
        if (self.cell == "lstm") != isinstance(hx, tuple):
            raise ValueError("LSTM state must be a pair (h, c); RNN/GRU state a single tensor")
        for s in hx if isinstance(hx, tuple) else (hx,):
            if tuple(s.shape) != shape:
                raise ValueError(f"expected state of shape {shape}, got {tuple(s.shape)}")
        return hx if isinstance(hx, tuple) else (hx, None)


def _map_state(state: State, fn) -> State:
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


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
        self.dropout, self.nonlinearity = dropout, nonlinearity
        kwargs = dict(
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=batch_first,
        )
        if impl == "scratch":
            self.rnn = ScratchRNN(cell, input_size, hidden_size, nonlinearity=nonlinearity, **kwargs)
            return
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

    def forward_padded(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """A right-padded batch (batch, steps, input), batch_first, each row read to its own length
        (lengths (batch,)): outputs are zeros at padding and the state is each row's last real step,
        both directions. Fused: packed sequences; scratch: rows of one length at a time."""
        if not self.batch_first:
            raise ValueError("forward_padded reads batch-first input")
        if self.impl == "fused":
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0], state
        memory = x.new_zeros(x.size(0), x.size(1), self.output_size)
        lstm = self.cell == "lstm"
        shape = (self.num_layers * self.num_directions, x.size(0), self.hidden_size)
        h, c = x.new_zeros(shape), x.new_zeros(shape) if lstm else None
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero().squeeze(1).to(x.device)
            out, state = self.rnn(x[rows, :length])
            memory = memory.index_copy(0, rows, F.pad(out, (0, 0, 0, x.size(1) - length)))
            h = h.index_copy(1, rows, state[0] if lstm else state)
            if lstm:
                c = c.index_copy(1, rows, state[1])
        return memory, ((h, c) if lstm else h)

    def forward_masked(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """forward_padded's result (in eval mode) computed over the whole width with masked steps: a
        padded step keeps the state and outputs zeros. No packing and no data-dependent shapes, so
        a graph exporter can unroll it."""
        x = x if self.batch_first else x.transpose(0, 1)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(1) < lengths.to(x.device).unsqueeze(0)  # (steps, batch)
        layer_in, lstm, h_n, c_n = x.transpose(0, 1), self.cell == "lstm", [], []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate([f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]):
                zeros = layer_in.new_zeros(x.shape[0], self.hidden_size)
                weights = [getattr(self.rnn, f"{w}{suffix}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                out, last, _ = run_layer(self.cell, layer_in, (zeros, zeros) if lstm else zeros, *weights, reverse=d == 1,
                                         nonlinearity=self.nonlinearity, mask=mask)
                outs.append(out)
                h_n.append(last[0] if lstm else last)
                if lstm:
                    c_n.append(last[1])
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        out = layer_in.transpose(0, 1) if self.batch_first else layer_in
        return out, ((torch.stack(h_n), torch.stack(c_n)) if lstm else torch.stack(h_n))

    def as_scratch(self) -> "RecurrentStack":
        """The same stack with the same weights, computed by the scratch cells (plain tensor ops:
        what graph exporters can lower where a fused kernel has no translation)."""
        twin = RecurrentStack(self.input_size, self.hidden_size, self.cell, self.num_layers, self.dropout, self.bidirectional,
                              self.batch_first, "scratch", self.nonlinearity)
        twin.rnn.load_state_dict(self.rnn.state_dict())
        return twin.train(self.training)

    def forward_steps(self, x: torch.Tensor, state: State | None = None):
        """Scratch only: forward() plus each layer's per-step hidden states, steps[layer][direction][t]."""
        if self.impl != "scratch":
            raise ValueError("per-step states need impl='scratch'; the fused kernels do not expose them")
        return self.rnn.forward_steps(x, state)


def compact_recurrent_weights(model: nn.Module) -> nn.Module:
    """Lay every fused recurrent layer's weights out in cuDNN's one contiguous block again. A copy
    of a model on the GPU (copy.deepcopy) gives each weight its own memory, and cuDNN then
    re-packs them at every call, with a warning; a no-op on the CPU."""
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()
    return model
