"""RNN language model: embedding (or one-hot) -> recurrent stack -> token scores.

The output layer is a full softmax or torch's adaptive log-softmax (Grave et al., 2017): frequent
tokens in a small head, rarer ones in clusters whose projections shrink, so a large vocabulary costs
a fraction of the full layer's time and memory. Training and scoring ask for the negative
log-likelihood of given targets (`forward(tokens, state, targets)`): the adaptive layer then only
computes the clusters the targets fall in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.nn.stack import RecurrentStack, State

#: the adaptive softmax's clusters: the head holds the tokens that make up this share of the text,
#: the first cluster those up to the next share, the last cluster the rest
ADAPTIVE_COVERAGE = (0.8, 0.95)


def adaptive_cutoffs(counts: list[int], coverage: tuple[float, ...] = ADAPTIVE_COVERAGE) -> list[int]:
    """Cluster boundaries by frequency: ids are in descending frequency (specials first), so the
    head is ids [0, c0), and so on. Empty when the vocabulary is too small to split."""
    vocab = len(counts)
    total = float(sum(counts)) or 1.0
    cutoffs, running, shares = [], 0.0, list(coverage)
    for i, c in enumerate(counts):
        running += c
        while shares and running / total >= shares[0]:
            shares.pop(0)
            cut = i + 1
            if (not cutoffs or cut > cutoffs[-1]) and 1 < cut < vocab - 1:
                cutoffs.append(cut)
    return cutoffs


class TiedHead(nn.Module):
    """The adaptive softmax's head with its shortlist rows shared with the embedding (tied weights
    for the frequent tokens); the cluster rows are its own."""

    def __init__(self, embedding: nn.Embedding, shortlist: int, clusters: int):
        super().__init__()
        self.embedding, self.shortlist = embedding, shortlist
        self.cluster_weight = nn.Parameter(torch.empty(clusters, embedding.embedding_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.cluster_weight, std=self.embedding.embedding_dim ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, torch.cat([self.embedding.weight[: self.shortlist], self.cluster_weight]))


class RNNLM(nn.Module):
    """Predicts token t+1 from tokens <= t. Inputs are time-major (steps, batch) token ids.

    embed=0 feeds one-hot vectors (the classic recipe); tie_weights shares the embedding with the
    output layer (needs embed == hidden; with the adaptive softmax, the head's shortlist).
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
        cutoffs: list[int] | None = None,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed) if embed > 0 else None
        self.drop = nn.Dropout(dropout)
        self.rnn = RecurrentStack(embed or vocab_size, hidden, cell=cell, num_layers=layers, dropout=dropout, impl=impl)
        if tie_weights and embed != hidden:
            raise ValueError(f"tie_weights needs embed == hidden (got {embed} and {hidden})")
        self.head = self.adaptive = None
        if cutoffs:
            div = 4.0  # each cluster's projection is 4x narrower than the last, down to at least one unit
            while div > 1 and hidden // div ** len(cutoffs) < 1:
                div /= 2
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, list(cutoffs), div_value=div, head_bias=True)
            if tie_weights:
                self.adaptive.head = TiedHead(self.embedding, self.adaptive.shortlist_size, self.adaptive.n_clusters)
        else:
            self.head = nn.Linear(hidden, vocab_size)
            if tie_weights:
                self.head.weight = self.embedding.weight

    @property
    def output_width(self) -> int:
        """Scores per position the output layer computes for every token (the adaptive head's, not the vocabulary's)."""
        return self.adaptive.head_size if self.adaptive is not None else self.vocab_size

    @property
    def out_dtype(self) -> torch.dtype:
        return self.rnn.parameters().__next__().dtype

    def forward(self, tokens: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None):
        """-> (scores (steps, batch, vocab), state), or with targets (steps, batch) their negative
        log-likelihoods (steps, batch) in nats. Scores are logits (full softmax) or log-probabilities
        (adaptive): the same distribution under softmax. Ids may be any integer type (a token store's)."""
        tokens = tokens if tokens.dtype == torch.long else tokens.long()
        if self.embedding is None:
            x = F.one_hot(tokens, self.vocab_size).to(self.out_dtype)
        else:
            x = self.drop(self.embedding(tokens))
        output, state = self.rnn(x, state)
        output = self.drop(output)
        if targets is None:
            if self.adaptive is not None:
                return self.adaptive.log_prob(output.flatten(0, 1)).view(*output.shape[:2], -1), state
            return self.head(output), state
        return self.output_nll(output, targets), state

    def output_nll(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of targets (any shape) given the recurrent outputs (same shape + hidden)."""
        targets = targets if targets.dtype == torch.long else targets.long()
        if self.adaptive is not None:
            return -self.adaptive(output.reshape(-1, output.shape[-1]), targets.flatten()).output.view(targets.shape)
        logits = self.head(output)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.flatten(), reduction="none").view(targets.shape)
