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

from seqtool.nn.members import log_mean_probability
from seqtool.nn.stack import RecurrentStack

POOLS = ("last", "mean", "max", "attention")


CHAR_ENCODERS = ("conv", "lstm")


class CharEncoder(nn.Module):
    """A word from its characters, so words never seen in training still get a representation:
    character embeddings, then either a width-3 convolution and the maximum over the word (padding
    never wins), or a bidirectional LSTM whose two final states are joined (it reads the whole
    word, affixes included, in order)."""

    def __init__(self, chars: int, width: int, char_embed: int = 24, kind: str = "conv", impl: str = "fused"):
        super().__init__()
        if kind not in CHAR_ENCODERS:
            raise ValueError(f"unknown character encoder {kind!r}; choose one of {', '.join(CHAR_ENCODERS)}")
        self.kind = kind
        self.embed = nn.Embedding(chars, char_embed, padding_idx=0)
        if kind == "conv":
            self.conv, self.width = nn.Conv1d(char_embed, width, kernel_size=3, padding=1), width
        else:
            self.rnn = RecurrentStack(char_embed, max(width // 2, 1), "lstm", 1, 0.0, True, batch_first=True, impl=impl)
            self.width = self.rnn.output_size

    def forward(self, chars: torch.Tensor, masked: bool = False) -> torch.Tensor:
        n, steps, letters = chars.shape
        flat = chars.reshape(n * steps, letters)
        if self.kind == "conv":
            feats = self.conv(self.embed(flat).transpose(1, 2))  # (words, width, letters)
            feats = feats.masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(dim=2)
            return torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats)).reshape(n, steps, -1)  # padding words: 0
        lengths = (flat > 0).sum(1)
        _, (h, _) = (self.rnn.forward_masked if masked else self.rnn.forward_padded)(self.embed(flat), lengths.clamp(min=1))
        feats = torch.cat([h[-2], h[-1]], dim=1) * (lengths > 0).unsqueeze(1)  # padding words: 0
        return feats.reshape(n, steps, -1)


class Perturbable(nn.Module):
    """The point adversarial training reaches: the token encodings. The identity, unless asked to
    keep its input (so the loss's gradient with respect to it can be taken) or given a perturbation
    to add (training only; the export never sets one)."""

    def __init__(self):
        super().__init__()
        self.keep, self.kept, self.delta = False, None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep:
            self.kept = x
        return x if self.delta is None else x + self.delta


class Labeler(nn.Module):
    """What both networks share: the token encoding and the recurrent stack."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, cell: str, dropout: float, bidirectional: bool,
                 impl: str = "fused", chars: int = 0, char_embed: int = 0, char_encoder: str = "conv"):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.chars = CharEncoder(chars, char_embed, kind=char_encoder, impl=impl) if char_embed else None
        self.inputs = Perturbable()
        self.dropout = nn.Dropout(dropout)
        self.rnn = RecurrentStack(embed + (self.chars.width if self.chars else 0), hidden, cell, layers, dropout, bidirectional, batch_first=True, impl=impl)
        self.masked = False  # the export's form: masked steps instead of packing

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None):
        """-> (outputs (n, steps, width), state, mask (n, steps))."""
        x = self.embed(ids)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars, self.masked)], dim=2)
        x = self.dropout(self.inputs(x))
        out, state = (self.rnn.forward_masked if self.masked else self.rnn.forward_padded)(x, lengths)
        mask = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) < lengths.to(ids.device).unsqueeze(1)
        return self.dropout(out), state, mask


class SequenceClassifier(Labeler):
    """One label per sequence: the stack's outputs pooled into one vector, then a linear layer."""

    def __init__(self, vocab: int, classes: int, embed: int, hidden: int, layers: int, cell: str, dropout: float,
                 bidirectional: bool, pool: str = "max", impl: str = "fused", chars: int = 0, char_embed: int = 0,
                 char_encoder: str = "conv"):
        super().__init__(vocab, embed, hidden, layers, cell, dropout, bidirectional, impl, chars, char_embed, char_encoder)
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
                 bidirectional: bool, impl: str = "fused", chars: int = 0, char_embed: int = 0, char_encoder: str = "conv"):
        super().__init__(vocab, embed, hidden, layers, cell, dropout, bidirectional, impl, chars, char_embed, char_encoder)
        self.head = nn.Linear(self.rnn.output_size, tags)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encode(ids, lengths, chars)[0])


class Ensemble(nn.Module):
    """Several labelling networks, initialised apart and trained side by side on the same batches,
    each on its own loss (so they stay different); they answer together with the mean of their
    probabilities, returned as log-probabilities so that a softmax of the output is that mean. On a
    few thousand sentences one network's accuracy swings with its seed by a point or more; the
    mean of a few is steadier and better than a typical one."""

    def __init__(self, members: list[Labeler]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def masked(self) -> bool:
        return self.members[0].masked

    @masked.setter
    def masked(self, value: bool) -> None:
        for member in self.members:
            member.masked = value

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None,
                per_member: bool = False) -> torch.Tensor:
        """-> log of the mean probability (n, [steps,] classes); with per_member, each member's logits (members, n, ...)."""
        logits = torch.stack([member(ids, lengths, chars) for member in self.members])
        if per_member:
            return logits
        return log_mean_probability(logits)
