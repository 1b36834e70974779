"""A family that lives outside seqtool, for test_registry.py: does the first token of a bit string
equal its last? One package-like module and one register() call, nothing in core or cli."""

from __future__ import annotations

import json

import torch
from torch import nn

from seqtool.core.export import Graph
from seqtool.core.family import EvalFlag, Family
from seqtool.core.task import Task

TOY = Family(
    name="toy",
    title="toy run",
    task="toyfamily:ToyTask",
    evaluate="toyfamily:evaluate",
    eval_flags=(EvalFlag("--out", str, "toy: also write the result as JSON into this file."),),
    eval_help="accuracy on fresh bit strings",
    graphs="toyfamily:graphs",
    engine="toyfamily:OnnxToy",
)


def bit_strings(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 2, (count, 5), generator=torch.Generator().manual_seed(seed))
    return x, (x[:, 0] == x[:, -1]).long()


class ToyModel(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.embed, self.rnn, self.head = nn.Embedding(2, 8), nn.GRU(8, hidden, batch_first=True), nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0][:, -1])


class ToyTask(Task):
    name, monitor, monitor_lower_is_better, unit = "toy", "val_accuracy", False, "strings"

    @classmethod
    def from_spec(cls, spec) -> "ToyTask":
        return cls(spec)

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "ToyTask":
        return cls(spec)

    def task_state(self) -> dict:
        return {}

    def build_model(self) -> nn.Module:
        return ToyModel(self.spec.model.hidden)

    def train_batches(self, epoch, generator):
        x, y = bit_strings(512, self.spec.train.seed)
        order = torch.randperm(512, generator=generator)
        return [(x[i], y[i]) for i in order.split(self.spec.train.batch)]

    def train_loss(self, model, batch, state, device):
        x, y = batch
        return nn.functional.cross_entropy(model(x.to(device)), y.to(device)), y.numel(), None

    def evaluate(self, model, device) -> dict[str, float]:
        return {"val_accuracy": accuracy(model, 1_000_003, device)}


@torch.no_grad()
def accuracy(model, seed: int, device="cpu") -> float:
    x, y = bit_strings(256, seed)
    return float((model(x.to(device)).argmax(-1).cpu() == y).float().mean())


def evaluate(checkpoint, data, *, device="auto", as_json=False, out=None) -> str:
    from seqtool.core.restore import restore

    r = restore(checkpoint, task=TOY.name, device=device)
    result = {"accuracy": accuracy(r.model, 7, r.device)}
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    return (json.dumps(result) if as_json else f"accuracy {result['accuracy']:.3f}") + "\n"


def graphs(r) -> list[Graph]:
    example, check = bit_strings(3, 0)[0], bit_strings(7, 1)[0]
    return [Graph("model", r.model, {"x": example}, {"x": check}, ["logits"], {"x": {0: "batch"}})]


class OnnxToy:
    """The export behind ToyModel's interface."""

    def __init__(self, sessions: dict, spec):
        self.session = sessions["model"]

    def eval(self):
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.numpy()})[0])
