"""Encoder–decoder translator built on RecurrentStack, and its masked loss.

Encoder: embedding + (deep, optionally bidirectional) RNN over the source; padding never enters a
state (fused stacks read a packed batch, scratch ones each length group unpadded); a bidirectional encoder's forward and backward final states are merged by a learned
bridge into the decoder's initial state.

Decoder, two designs:
  attention="none"      the classic one: every step's input is the previous token's embedding
                        concatenated with a fixed context, the encoder's top-layer final state.
  attention="additive"  Bahdanau: the context is recomputed every step as an attention-weighted sum
                        of the encoder outputs, queried by the decoder's previous top-layer state,
                        with padded source positions masked out; the output layer reads the
                        context too (Bahdanau's readout), not only the decoder state.

Search (seqtool.translate.search) drives the decoder through `start` and `step`; training uses `forward`
(teacher forcing), which computes exactly what repeated `step` calls would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.nn.members import log_mean_probability
from seqtool.nn.stack import RecurrentStack, State

ATTENTIONS = ("none", "additive")


@dataclass
class DecoderState:
    """Everything a decoding step needs, one row per hypothesis; `select` reorders/repeats rows
    (beam search) along the batch dimension."""

    rnn: State  # (layers, n, hidden), or (h, c) for LSTM
    memory: torch.Tensor  # encoder outputs (n, src_steps, enc_dim)
    keys: torch.Tensor | None  # memory projected for additive attention (n, src_steps, hidden)
    mask: torch.Tensor  # (n, src_steps) bool, True at real source tokens
    context: torch.Tensor  # (n, context_dim): the classic fixed context (unused with attention)

    def select(self, index: torch.Tensor) -> "DecoderState":
        rnn = tuple(s.index_select(1, index) for s in self.rnn) if isinstance(self.rnn, tuple) else self.rnn.index_select(1, index)
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return DecoderState(rnn, self.memory.index_select(0, index), keys, self.mask.index_select(0, index), self.context.index_select(0, index))


class AdditiveAttention(nn.Module):
    """score(q, k) = v · tanh(W_q q + W_k k); padded keys get -inf before the softmax."""

    def __init__(self, query_size: int, key_size: int, hidden: int):
        super().__init__()
        self.w_q = nn.Linear(query_size, hidden, bias=False)
        self.w_k = nn.Linear(key_size, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.w_k(keys)  # once per source, not once per step

    def forward(self, query, projected_keys, values, mask):
        """query (n, q), projected_keys (n, s, h), values (n, s, d), mask (n, s) -> context (n, d), weights (n, s)."""
        scores = self.v(torch.tanh(self.w_q(query).unsqueeze(1) + projected_keys)).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(weights.unsqueeze(1), values).squeeze(1), weights


class TiedReadout(nn.Module):
    """The output layer made of the target embedding (Press & Wolf 2017): the decoder's output is
    projected to the embedding width and scored against every target token's embedding, so a
    token's input and output vectors are one matrix (fewer weights; a rare token learns from both
    uses)."""

    def __init__(self, width: int, embedding: nn.Embedding):
        super().__init__()
        self.project = nn.Linear(width, embedding.embedding_dim)
        self.embedding = embedding  # the decoder's own input embedding, shared
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    @property
    def out_features(self) -> int:
        return self.embedding.num_embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.project(x), self.embedding.weight, self.bias)


class Seq2Seq(nn.Module):
    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        embed: int = 256,
        hidden: int = 256,
        layers: int = 2,
        cell: str = "gru",
        dropout: float = 0.0,
        bidirectional: bool = False,
        attention: str = "none",
        pad_id: int = 1,
        impl: str = "fused",
        tie_weights: bool = False,
        share_embeddings: bool = False,
    ):
        """tie_weights: the output layer reads the target embedding (TiedReadout); share_embeddings:
        source and target are one vocabulary (a joint subword model) with one embedding."""
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTIONS)}")
        self.cell, self.attention_kind, self.bidirectional = cell, attention, bidirectional
        self.src_embed = nn.Embedding(src_vocab, embed, padding_idx=pad_id)
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"shared embeddings need one vocabulary (got {src_vocab} and {tgt_vocab} tokens)")
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab, embed, padding_idx=pad_id)
        self.encoder = RecurrentStack(embed, hidden, cell, layers, dropout, bidirectional, batch_first=True, impl=impl)
        enc_dim = self.encoder.output_size
        # bridge: forward and backward final states of each layer -> one decoder state
        self.bridge = nn.Linear(2 * hidden, hidden) if bidirectional else None
        self.bridge_c = nn.Linear(2 * hidden, hidden) if bidirectional and cell == "lstm" else None
        context_dim = enc_dim if attention == "additive" else hidden
        self.attention = AdditiveAttention(hidden, enc_dim, hidden) if attention == "additive" else None
        self.decoder = RecurrentStack(embed + context_dim, hidden, cell, layers, dropout, batch_first=True, impl=impl)
        self.dropout = nn.Dropout(dropout)
        width = hidden + (context_dim if attention == "additive" else 0)
        self.out = TiedReadout(width, self.tgt_embed) if tie_weights else nn.Linear(width, tgt_vocab)

    # ------------------------------------------------------------------ encoder

    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        """Encode a padded batch (n, steps) with valid lengths (n,) -> the decoder's initial state."""
        memory, state = self._encode(self.dropout(self.src_embed(src)), src_len)
        if isinstance(state, tuple):
            h, c = self._merge(state[0], self.bridge, True), self._merge(state[1], self.bridge_c, False)
            rnn, top = (h, c), h[-1]
        else:
            rnn = self._merge(state, self.bridge, True)
            top = rnn[-1]
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)
        keys = self.attention.project_keys(memory) if self.attention is not None else None
        return DecoderState(rnn, memory, keys, mask, top)

    def _encode(self, emb: torch.Tensor, src_len: torch.Tensor):
        return self.encoder.forward_padded(emb, src_len)

    def _merge(self, state: torch.Tensor, bridge: nn.Linear | None, squash: bool) -> torch.Tensor:
        if not self.bidirectional:
            return state
        layers2, n, h = state.shape
        both = state.view(layers2 // 2, 2, n, h).permute(0, 2, 1, 3).reshape(layers2 // 2, n, 2 * h)
        merged = bridge(both)
        return torch.tanh(merged) if squash else merged

    # ------------------------------------------------------------------ decoder

    def _top(self, rnn: State) -> torch.Tensor:
        return (rnn[0] if isinstance(rnn, tuple) else rnn)[-1]

    def step(self, tokens: torch.Tensor, state: DecoderState):
        """One decoding step for tokens (n,) -> (logits (n, vocab), next state, attention (n, src) or None)."""
        emb = self.dropout(self.tgt_embed(tokens))
        weights = None
        if self.attention is not None:
            context, weights = self.attention(self._top(state.rnn), state.keys, state.memory, state.mask)
        else:
            context = state.context
        out, rnn = self.decoder(torch.cat([emb, context], dim=-1).unsqueeze(1), state.rnn)
        out = out.squeeze(1)
        if weights is not None:
            out = torch.cat([out, context], dim=-1)
        return self.out(self.dropout(out)), replace(state, rnn=rnn), weights

    def forward(self, src, src_len, tgt_in) -> torch.Tensor:
        """Teacher forcing: logits (n, tgt_steps, vocab) for decoder inputs tgt_in (n, tgt_steps)."""
        state = self.start(src, src_len)
        if self.attention is None:  # fixed context: one fused pass over all steps
            emb = self.dropout(self.tgt_embed(tgt_in))
            context = state.context.unsqueeze(1).expand(-1, tgt_in.size(1), -1)
            out, _ = self.decoder(torch.cat([emb, context], dim=-1), state.rnn)
            return self.out(self.dropout(out))
        logits = []
        for t in range(tgt_in.size(1)):
            step_logits, state, _ = self.step(tgt_in[:, t], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


@dataclass
class MembersState:
    """Each member's decoder state; `select` reorders/repeats the rows of all of them alike."""

    states: list

    def select(self, index: torch.Tensor) -> "MembersState":
        return MembersState([state.select(index) for state in self.states])


class MeanOfMembers:
    """Several decoders (anything with start and step: Seq2Seq, an exported graph pair) searched as
    one: each step's answer is the log of the members' mean next-token probability, and the
    attention the members' mean. Search takes a log-softmax of what step returns; of these
    log-probabilities it is the identity, so greedy and beam search need no change."""

    def __init__(self, members: list):
        self.members = list(members)

    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> MembersState:
        return MembersState([member.start(src, src_len) for member in self.members])

    def step(self, tokens: torch.Tensor, state: MembersState):
        answers = [member.step(tokens, s) for member, s in zip(self.members, state.states)]
        weights = [w for _, _, w in answers if w is not None]
        attention = torch.stack(weights).mean(0) if weights else None
        logp = log_mean_probability(torch.stack([logits for logits, _, _ in answers]))
        return logp, MembersState([new for _, new, _ in answers]), attention

    @property
    def training(self) -> bool:
        return any(getattr(member, "training", False) for member in self.members)

    def eval(self):
        return self.train(False)

    def train(self, mode: bool = True):
        for member in self.members:
            member.train(mode)
        return self


class Seq2SeqEnsemble(nn.Module):
    """Translators initialised apart and trained side by side on the same batches, each on its own
    loss (so they stay different), that translate together: every decoding step uses the mean of
    their next-token probabilities (MeanOfMembers). On a few thousand sentence pairs one network's
    BLEU swings with its initialisation; the mean of a few is steadier and better than a typical one."""

    def __init__(self, members: list[Seq2Seq]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, src, src_len, tgt_in, per_member: bool = False) -> torch.Tensor:
        """Teacher forcing: the log of the mean probability (n, tgt_steps, vocab), which any cross
        entropy reads as logits; with per_member each member's logits (members, n, tgt_steps, vocab)."""
        logits = torch.stack([member(src, src_len, tgt_in) for member in self.members])
        if per_member:
            return logits
        return log_mean_probability(logits)

    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> MembersState:
        return MeanOfMembers(self.members).start(src, src_len)

    def step(self, tokens: torch.Tensor, state: MembersState):
        return MeanOfMembers(self.members).step(tokens, state)


def masked_cross_entropy(logits, target, valid_len, label_smoothing: float = 0.0):
    """Mean token cross-entropy over the first valid_len positions of each row -> (loss, tokens).

    Positions past valid_len (padding) contribute nothing, whatever they contain."""
    steps = target.size(1)
    mask = torch.arange(steps, device=target.device).unsqueeze(0) < valid_len.to(target.device).unsqueeze(1)
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none", label_smoothing=label_smoothing)
    count = mask.sum()
    return (losses * mask.reshape(-1)).sum() / count.clamp(min=1), count
