"""RNN, GRU and LSTM cells written from their equations (SEED-NOTES §2), for teaching and checking.

The weights use torch's fused layout so they can be copied both ways: `weight_ih` is (G*H, input),
`weight_hh` is (G*H, H), biases are (G*H,), with the G gate blocks stacked in torch's order
(RNN: one block; GRU: r, z, n; LSTM: i, f, g, o). Stacking the gates lets one matmul compute all of
them. `run_layer` goes further: the input projection X W_ih^T for every step is one matmul before
the time loop, so the Python loop only does the recurrent matmul and the elementwise gate math.
"""

from __future__ import annotations

import torch

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}

CellState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def input_projection(x: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """X W_ih^T + b for all steps at once: (steps, batch, input) -> (steps, batch, G*H)."""
    steps, batch, _ = x.shape
    flat = x.reshape(steps * batch, -1)
    out = flat @ weight_ih.t() if bias is None else torch.addmm(bias, flat, weight_ih.t())
    return out.view(steps, batch, -1)


def _recurrent(xp_t: torch.Tensor, h: torch.Tensor, weight_hh_t: torch.Tensor) -> torch.Tensor:
    return torch.addmm(xp_t, h, weight_hh_t)


def rnn_step(xp_t: torch.Tensor, h: torch.Tensor, weight_hh_t: torch.Tensor, nonlinearity: str = "tanh") -> torch.Tensor:
    """H_t = act(X_t W_xh + b_ih + H_{t-1} W_hh + b_hh); `xp_t` already holds X_t W_xh + both biases."""
    return NONLINEARITIES[nonlinearity](_recurrent(xp_t, h, weight_hh_t))


def lstm_step(
    xp_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], weight_hh_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step; `xp_t` holds the input projection plus both biases for the gates i, f, g, o."""
    h, c = state
    i, f, g, o = _recurrent(xp_t, h, weight_hh_t).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # additive cell path
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(
    xp_t: torch.Tensor, h: torch.Tensor, weight_hh_t: torch.Tensor, bias_hh: torch.Tensor | None
) -> torch.Tensor:
    """One GRU step; `xp_t` holds X_t W_x* + b_i* for the gates r, z, n.

    The recurrent bias of the candidate sits inside the reset product, R ⊙ (H W_hn + b_hn), as in
    torch (and cuDNN); that is why this bias cannot be folded into the input projection.
    """
    hp = h @ weight_hh_t if bias_hh is None else torch.addmm(bias_hh, h, weight_hh_t)
    x_r, x_z, x_n = xp_t.chunk(3, dim=1)
    h_r, h_z, h_n = hp.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)  # = Z ⊙ H_{t-1} + (1 − Z) ⊙ H̃_t


def _folded_bias(bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None) -> torch.Tensor | None:
    if bias_ih is None:
        return bias_hh
    return bias_ih if bias_hh is None else bias_ih + bias_hh


def run_layer(
    cell: str,
    x: torch.Tensor,
    state: CellState,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, CellState, list[torch.Tensor]]:
    """Unroll one layer in one direction over x (steps, batch, input).

    Returns (output (steps, batch, H), final state, per-step hidden states in time order). The
    per-step states are the very tensors the next step reads, so gradients taken with respect to
    them measure how far back the gradient reaches (see seqtool.lm.diagnostics). With `mask`
    (steps, batch; True at real tokens) a padded step keeps the state and outputs zeros, so a padded
    batch runs as if each sequence had its own length (what packing does, in a graph of fixed size).
    """
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(GATES)}")
    if cell == "gru":
        xp = input_projection(x, weight_ih, bias_ih)
    else:  # both biases sit outside any product, so they fold into one
        xp = input_projection(x, weight_ih, _folded_bias(bias_ih, bias_hh))
    # unbind, not xp[t]: each select's backward would zero-fill a full (steps, batch, G*H) gradient,
    # making the backward quadratic in the number of steps; unbind's backward stacks once
    xs = xp.unbind(0)
    w_t = weight_hh.t()
    order = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    hs: list[torch.Tensor] = []
    if cell == "rnn" and nonlinearity not in NONLINEARITIES:
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose tanh or relu")
    outs = []
    for t in order:
        if cell == "lstm":
            new = lstm_step(xs[t], state, w_t)
        elif cell == "gru":
            new = gru_step(xs[t], state, w_t, bias_hh)
        else:
            new = rnn_step(xs[t], state, w_t, nonlinearity)
        if mask is not None:
            keep = mask[t].unsqueeze(1)
            new = tuple(torch.where(keep, a, b) for a, b in zip(new, state)) if cell == "lstm" else torch.where(keep, new, state)
        state = new
        hs.append(state[0] if cell == "lstm" else state)
        if mask is not None:
            outs.append(hs[-1] * mask[t].unsqueeze(1))
    if reverse:
        hs.reverse()
        outs.reverse()
    return torch.stack(outs if mask is not None else hs), state, hs
