"""A language model as one ONNX step: token ids (1, batch) and the recurrent state in, next-token
logits (1, batch, vocab) and the new state out, so generation can loop outside Python. The state is
`h` (layers, batch, hidden), plus `c` for an LSTM. `OnnxLanguageModel` runs that graph behind the
torch model's call signature, so `seqtool sample --engine onnxruntime` uses the one sampler."""

from __future__ import annotations

import torch
from torch import nn

from seqtool.core.export import Graph


class LanguageModelStep(nn.Module):
    def __init__(self, lm: nn.Module, lstm: bool):
        super().__init__()
        self.lm, self.lstm = lm, lstm

    def forward(self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        logits, state = self.lm(tokens, (h, c) if self.lstm else h)
        return (logits, *state) if self.lstm else (logits, state)


def state_shape(spec, batch: int) -> tuple[int, int, int]:
    return (spec.model.layers, batch, spec.model.hidden)


def graphs(r) -> list[Graph]:
    lstm = r.spec.model.cell == "lstm"
    vocab = r.model.vocab_size
    generator = torch.Generator().manual_seed(0)

    def inputs(batch: int) -> dict[str, torch.Tensor]:
        tokens = torch.randint(0, vocab, (1, batch), generator=generator)
        states = {name: torch.randn(state_shape(r.spec, batch), generator=generator) * 0.5 for name in (("h", "c") if lstm else ("h",))}
        return {"tokens": tokens, **states}

    names = ("h", "c") if lstm else ("h",)
    return [Graph("model", LanguageModelStep(r.model, lstm), inputs(2), inputs(5), ["logits", *(f"{n}_out" for n in names)],
                  {"tokens": {1: "batch"}, **{n: {1: "batch"} for n in names}})]


class OnnxLanguageModel:
    """Callable like RNNLM (tokens (steps, batch), state) -> (logits (steps, batch, vocab), state),
    computed one step at a time by the exported graph."""

    def __init__(self, sessions: dict, spec):
        self.session, self.spec, self.lstm = sessions["model"], spec, spec.model.cell == "lstm"

    def eval(self):
        return self

    def __call__(self, tokens: torch.Tensor, state=None):
        batch = tokens.shape[1]
        if state is None:
            zeros = torch.zeros(state_shape(self.spec, batch))
            state = (zeros, zeros.clone()) if self.lstm else zeros
        states = [s.numpy() for s in (state if self.lstm else (state,))]
        names = ("h", "c") if self.lstm else ("h",)
        outputs = []
        for t in range(tokens.shape[0]):
            logits, *states = self.session.run(None, {"tokens": tokens[t : t + 1].cpu().numpy(), **dict(zip(names, states))})
            outputs.append(torch.from_numpy(logits))
        new = tuple(torch.from_numpy(s) for s in states)
        return torch.cat(outputs), (new if self.lstm else new[0])
