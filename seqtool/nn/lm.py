"""RNN language model: embedding (or one-hot) -> recurrent stack -> token scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.nn.stack import RecurrentStack, State


class RNNLM(nn.Module):
    """Predicts token t+1 from tokens <= t. Inputs are time-major (steps, batch) token ids.

    embed=0 feeds one-hot vectors (the classic recipe); tie_weights shares the embedding with the
    output layer (needs embed == hidden).
    """

    def __init__(
        self,
        vocab_size: int,
        embed: int = 32,
        hidden: int = 256,
        layers: int = 2,
        cell: str = "gru",
        dropout: float = 0.0,
        tie_weights: bool = False,
        impl: str = "fused",
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed) if embed > 0 else None
        self.drop = nn.Dropout(dropout)
        self.rnn = RecurrentStack(embed or vocab_size, hidden, cell=cell, num_layers=layers, dropout=dropout, impl=impl)
        self.head = nn.Linear(hidden, vocab_size)
        if tie_weights:
            if embed != hidden:
                raise ValueError(f"tie_weights needs embed == hidden (got {embed} and {hidden})")
            self.head.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if self.embedding is None:
            x = F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)
        else:
            x = self.drop(self.embedding(tokens))
        output, state = self.rnn(x, state)
        return self.head(self.drop(output)), state
