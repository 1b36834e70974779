"""The two labelling networks: embedding (+ a character encoding of each word) -> the recurrent
stack (bidirectional by default) -> a label per sequence (pooled) or per token.

Inputs are right-padded batches: ids (n, steps) with id 0 as padding, their lengths (n,), and for
the character encoding the characters of each word (n, steps, letters), 0 as padding. With
`masked=True` the stack runs with masked steps instead of packing (same result): the form the ONNX
export traces.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtool.nn.stack import RecurrentStack

POOLS = ("last", "mean", "max", "attention")


class CharEncoder(nn.Module):
    """A word from its characters: embeddings, a width-3 convolution, the maximum over the word
    (padding never wins), so words never seen in training still get a representation."""

    def __init__(self, chars: int, width: int, char_embed: int = 24):
        super().__init__()
        self.embed = nn.Embedding(chars, char_embed, padding_idx=0)
        self.conv = nn.Conv1d(char_embed, width, kernel_size=3, padding=1)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        n, steps, letters = chars.shape
        flat = chars.reshape(n * steps, letters)
        feats = self.conv(self.embed(flat).transpose(1, 2))  # (words, width, letters)
        feats = feats.masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(dim=2)
        return torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats)).reshape(n, steps, -1)  # padding words: 0


class Labeler(nn.Module):
    """What both networks share: the token encoding and the recurrent stack."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, cell: str, dropout: float, bidirectional: bool,
                 impl: str = "fused", chars: int = 0, char_embed: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.chars = CharEncoder(chars, char_embed) if char_embed else None
        self.dropout = nn.Dropout(dropout)
        self.rnn = RecurrentStack(embed + char_embed, hidden, cell, layers, dropout, bidirectional, batch_first=True, impl=impl)
        self.masked = False  # the export's form: masked steps instead of packing

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None):
        """-> (outputs (n, steps, width), state, mask (n, steps))."""
        x = self.embed(ids)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars)], dim=2)
        x = self.dropout(x)
        out, state = (self.rnn.forward_masked if self.masked else self.rnn.forward_padded)(x, lengths)
        mask = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) < lengths.to(ids.device).unsqueeze(1)
        return self.dropout(out), state, mask


class SequenceClassifier(Labeler):
    """One label per sequence: the stack's outputs pooled into one vector, then a linear layer."""

    def __init__(self, vocab: int, classes: int, embed: int, hidden: int, layers: int, cell: str, dropout: float,
                 bidirectional: bool, pool: str = "max", impl: str = "fused", chars: int = 0, char_embed: int = 0):
        super().__init__(vocab, embed, hidden, layers, cell, dropout, bidirectional, impl, chars, char_embed)
        if pool not in POOLS:
            raise ValueError(f"unknown pooling {pool!r}; choose one of {', '.join(POOLS)}")
        self.pool = pool
        width = self.rnn.output_size
        self.attention = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False)) if pool == "attention" else None
        self.head = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None) -> torch.Tensor:
        out, state, mask = self.encode(ids, lengths, chars)
        return self.head(self.pooled(out, state, mask))

    def pooled(self, out: torch.Tensor, state, mask: torch.Tensor) -> torch.Tensor:
        if self.pool == "last":  # the last layer's final state of each direction (the backward one read the whole sequence too)
            h = state[0] if isinstance(state, tuple) else state
            return torch.cat(list(h[-self.rnn.num_directions :]), dim=1)
        keep = mask.unsqueeze(2)
        if self.pool == "mean":
            return (out * keep).sum(1) / keep.sum(1).clamp(min=1)
        if self.pool == "max":
            return out.masked_fill(~keep, float("-inf")).amax(dim=1)
        scores = self.attention(out).squeeze(2).masked_fill(~mask, float("-inf"))
        return (scores.softmax(dim=1).unsqueeze(2) * out).sum(1)


class SequenceTagger(Labeler):
    """One label per token: a linear layer on the stack's output at every step."""

    def __init__(self, vocab: int, tags: int, embed: int, hidden: int, layers: int, cell: str, dropout: float,
                 bidirectional: bool, impl: str = "fused", chars: int = 0, char_embed: int = 0):
        super().__init__(vocab, embed, hidden, layers, cell, dropout, bidirectional, impl, chars, char_embed)
        self.head = nn.Linear(self.rnn.output_size, tags)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encode(ids, lengths, chars)[0])
