"""A translator as two ONNX graphs: the encoder (a padded batch of source ids and their lengths in;
the decoder's initial state out) and one decoder step (the previous target tokens and that state
in; logits, the new state and the attention weights out), so greedy or beam search can run outside
Python with the vocabularies in the sidecar JSON.

The exporter unrolls recurrences, so the encoder graph has a fixed source width, `width(spec)`
(twice the longest sentence kept in training); padding is handled by masking each step (a padded
step keeps the state and outputs zeros), which is what packing does in torch. Its parity is
checked against the model's own packed encoder, not against the masked one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from seqtool.core.errors import SeqtoolError
from seqtool.core.export import Graph
from seqtool.nn.members import members_of
from seqtool.nn.seq2seq import DecoderState, MeanOfMembers, Seq2Seq


def width(spec) -> int:
    return 2 * spec.data.steps


class EncoderGraph(nn.Module):
    """src (n, width), src_len (n,) -> memory, keys (or the memory when there is no attention),
    h (and c), context: Seq2Seq.start's DecoderState as tensors, the encoder run with masked steps."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_len: torch.Tensor):
        m = self.model
        memory, state = m.encoder.forward_masked(m.src_embed(src), src_len)
        lstm = m.cell == "lstm"
        h = m._merge(state[0] if lstm else state, m.bridge, True)
        keys = m.attention.project_keys(memory) if m.attention is not None else memory
        states = (h, m._merge(state[1], m.bridge_c, False)) if lstm else (h,)
        return (memory, keys, *states, h[-1])


class EncoderReference(nn.Module):
    """The same outputs from the model's own (packed) encoder: what the parity check compares with."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src, src_len):
        s = self.model.start(src, src_len)
        keys = s.keys if s.keys is not None else s.memory
        return (s.memory, keys, *(s.rnn if isinstance(s.rnn, tuple) else (s.rnn,)), s.context)


class DecoderStepGraph(nn.Module):
    """With attention: tokens (n,), memory, keys, mask (n, width), context, h (and c) -> logits, h
    (and c), attention weights (n, width)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model, self.lstm = model, model.cell == "lstm"

    def forward(self, tokens, memory, keys, mask, context, h, c=None):
        state = DecoderState((h, c) if self.lstm else h, memory, keys, mask, context)
        logits, new, weights = self.model.step(tokens, state)
        return (logits, *(new.rnn if self.lstm else (new.rnn,)), weights)


class ContextDecoderStepGraph(DecoderStepGraph):
    """Without attention (the classic fixed context): tokens (n,), context, h (and c) -> logits, h (and c).
    (The memory is not an input: the exporter refuses inputs a graph never reads.)"""

    def forward(self, tokens, context, h, c=None):
        state = DecoderState((h, c) if self.lstm else h, context, None, context, context)
        logits, new, _ = self.model.step(tokens, state)
        return (logits, *(new.rnn if self.lstm else (new.rnn,)))


def scratch_twin(model: Seq2Seq) -> Seq2Seq:
    """A copy whose recurrent stacks compute with the scratch cells (same weights): torch's ONNX
    exporter has no lowering for a fused GRU step whose state shape is symbolic."""
    twin = copy.deepcopy(model)
    twin.encoder, twin.decoder = model.encoder.as_scratch(), model.decoder.as_scratch()
    return twin.eval()


def graphs(r) -> list[Graph]:
    """The encoder and decoder-step graphs; an ensemble's members each get their pair (encoder.0,
    decoder.0, encoder.1, ...), which onnx_translator averages (MeanOfMembers) as torch does."""
    members = members_of(r.model)
    if len(members) == 1:
        return member_graphs(r.spec, members[0])
    return [g for i, member in enumerate(members) for g in member_graphs(r.spec, member, f".{i}")]


def member_graphs(spec, original: Seq2Seq, suffix: str = "") -> list[Graph]:
    model: Seq2Seq = scratch_twin(original)
    lstm, S = model.cell == "lstm", width(spec)
    generator = torch.Generator().manual_seed(0)
    src_vocab = model.src_embed.num_embeddings

    def sources(n: int) -> dict[str, torch.Tensor]:
        lengths = torch.randint(1, S + 1, (n,), generator=generator)
        lengths[0] = S  # the reference encoder pads to the longest; make that the graph's width
        src = torch.randint(4, src_vocab, (n, S), generator=generator)
        src = torch.where(torch.arange(S)[None, :] < lengths[:, None], src, torch.full_like(src, 1))
        return {"src": src, "src_len": lengths}

    states = ("h", "c") if lstm else ("h",)
    encoder = Graph(f"encoder{suffix}", EncoderGraph(model), sources(3), sources(6), ["memory", "keys", *states, "context"],
                    {"src": {0: "batch"}, "src_len": {0: "batch"}}, reference=EncoderReference(original))

    def step_inputs(n: int) -> dict[str, torch.Tensor]:
        src = sources(n)
        with torch.no_grad():
            memory, keys, *rest = EncoderReference(original)(src["src"], src["src_len"])
        context = rest[-1]
        mask = torch.arange(S)[None, :] < src["src_len"][:, None]
        tokens = torch.randint(4, model.out.out_features, (n,), generator=generator)
        return {"tokens": tokens, "memory": memory, "keys": keys, "mask": mask, "context": context,
                **{name: value for name, value in zip(states, rest[:-1])}}

    attention = model.attention is not None
    step_graph = DecoderStepGraph if attention else ContextDecoderStepGraph
    kept = ("tokens", "memory", "keys", "mask", "context", *states) if attention else ("tokens", "context", *states)

    def step_feed(n: int) -> dict[str, torch.Tensor]:
        inputs = step_inputs(n)
        return {name: inputs[name] for name in kept}

    dynamic = {name: {1 if name in states else 0: "batch"} for name in kept}
    outputs = ["logits", *(f"{s}_out" for s in states), *(["attention"] if attention else [])]
    decoder = Graph(f"decoder{suffix}", step_graph(model), step_feed(3), step_feed(6), outputs, dynamic, reference=step_graph(original))
    return [encoder, decoder]


def onnx_translator(sessions: dict, spec):
    """The exported translator as search drives it: one graph pair, or an ensemble's pairs averaged."""
    suffixes = [""] if spec.model.members == 1 else [f".{i}" for i in range(spec.model.members)]
    missing = [f"{part}{suffix}" for suffix in suffixes for part in ("encoder", "decoder") if f"{part}{suffix}" not in sessions]
    if missing:
        raise SeqtoolError(f"the ONNX export has no {missing[0]} graph for this {spec.model.members}-member translator; export again")
    members = [OnnxTranslator(sessions[f"encoder{suffix}"], sessions[f"decoder{suffix}"], spec) for suffix in suffixes]
    return members[0] if len(members) == 1 else MeanOfMembers(members)


class OnnxTranslator:
    """Seq2Seq's decoding interface (start, step; train/eval) on the two exported graphs, so the
    one greedy and beam search decode with onnxruntime."""

    training = False

    def __init__(self, encoder, decoder, spec):
        self.encoder, self.decoder, self.spec = encoder, decoder, spec
        self.lstm, self.width, self.attention = spec.model.cell == "lstm", width(spec), spec.translate.attention != "none"

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        n, steps = src.shape
        if steps > self.width:
            raise SeqtoolError(f"a sentence has {steps} tokens; the exported encoder reads at most {self.width}")
        self.steps = steps
        padded = torch.nn.functional.pad(src.cpu(), (0, self.width - steps), value=1)
        memory, keys, *states, context = (torch.from_numpy(a) for a in self.encoder.run(None, {"src": padded.numpy(), "src_len": src_len.cpu().numpy()}))
        mask = torch.arange(self.width)[None, :] < src_len.cpu()[:, None]
        return DecoderState(tuple(states) if self.lstm else states[0], memory, keys, mask, context)

    def step(self, tokens: torch.Tensor, state: DecoderState):
        rnn = state.rnn if self.lstm else (state.rnn,)
        available = {"tokens": tokens.cpu(), "memory": state.memory, "keys": state.keys, "mask": state.mask, "context": state.context,
                     **dict(zip(("h", "c"), rnn))}
        feed = {i.name: available[i.name].numpy() for i in self.decoder.get_inputs()}
        logits, *new = (torch.from_numpy(a) for a in self.decoder.run(None, feed))
        weights = new.pop()[:, : self.steps] if self.attention else None
        new_state = DecoderState(tuple(new) if self.lstm else new[0], state.memory, state.keys, state.mask, state.context)
        return logits, new_state, weights
