"""A classifier or tagger as one ONNX graph: padded ids (n, width), their lengths (n,) and, with the
character encoding, the characters of each word (n, width, letters) in; logits out (n, classes) or
(n, width, tags). The exporter unrolls the recurrence, so the width is fixed: the longest training
sequence, at most MAX_WIDTH. Padding is handled by masking each step (what packing does in torch);
parity is checked against the model's own packed form. `OnnxLabeler` runs the graph behind the
model's call signature: longer inputs are cut to the width (classification, as training cut them)
or tagged `width` tokens at a time (tagging)."""

from __future__ import annotations

import copy

import torch

from seqtool.core.export import Graph
from seqtool.label.task import MAX_LETTERS

MAX_WIDTH = 128


def width_of(task) -> int:
    return max(1, min(int(task.longest), MAX_WIDTH))


def graphs(r) -> list[Graph]:
    task, width = r.task, width_of(r.task)
    twin = copy.deepcopy(r.model).eval()
    twin.masked = True
    generator = torch.Generator().manual_seed(0)

    def inputs(n: int) -> dict[str, torch.Tensor]:
        lengths = torch.randint(1, width + 1, (n,), generator=generator)
        lengths[0] = width
        ids = torch.randint(2, len(task.words), (n, width), generator=generator) * (torch.arange(width) < lengths[:, None])
        batch = {"ids": ids, "lengths": lengths}
        if task.spec.label.char_embed:
            chars = torch.randint(2, len(task.chars), (n, width, MAX_LETTERS), generator=generator)
            batch["chars"] = chars * (torch.arange(MAX_LETTERS) < 4) * (ids > 0).unsqueeze(2)
        return batch

    example = inputs(2)
    return [Graph("model", twin, example, inputs(5), ["logits"], {name: {0: "batch"} for name in example}, reference=r.model.eval())]


class OnnxLabeler:
    """Callable like the torch model: (ids (n, steps), lengths (n,), chars) -> logits."""

    training = False

    def __init__(self, sessions: dict, spec):
        self.session, self.spec = sessions["model"], spec
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.width, self.chars = int(shapes["ids"][1]), "chars" in shapes
        self.per_token = len(self.session.get_outputs()[0].shape) == 3

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None) -> torch.Tensor:
        steps = ids.shape[1]
        starts = range(0, steps, self.width) if self.per_token else [0]
        pieces = [self._run(ids[:, s : s + self.width], (lengths - s).clamp(0, self.width), None if chars is None else chars[:, s : s + self.width])
                  for s in starts]
        return torch.cat(pieces, dim=1)[:, :steps] if self.per_token else pieces[0]

    def _run(self, ids, lengths, chars) -> torch.Tensor:
        n, w = ids.shape
        feed = {"ids": torch.nn.functional.pad(ids, (0, self.width - w)).numpy(), "lengths": lengths.clamp(min=1).numpy()}
        if self.chars:
            chars = chars[:, :, :MAX_LETTERS]
            feed["chars"] = torch.nn.functional.pad(chars, (0, MAX_LETTERS - chars.shape[2], 0, self.width - w)).numpy()
        return torch.from_numpy(self.session.run(None, feed)[0])
