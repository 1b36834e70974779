"""Language modeling: predict the next character or word of a text."""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.data.batching import make_batches, num_batches
from seqtool.data.dataset import PreparedText, load_corpus
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.nn.lm import RNNLM
from seqtool.core.task import Task
from seqtool.data.text import Vocab


#: held-out scoring reads the text as this many parallel streams, each warmed up on the WARMUP
#: tokens before its part, so training-time evaluation and `seqtool eval` agree and stay fast
EVAL_STREAMS, EVAL_WARMUP = 16, 256


@torch.no_grad()
def token_surprisals(model: nn.Module, ids: torch.Tensor, device: torch.device, chunk: int = 512,
                     streams: int = 1, warmup: int = EVAL_WARMUP) -> torch.Tensor:
    """-log P(x_t | x_<t) in nats for t = 2..N.

    streams=1 reads the text as one stream in chunks with the state carried: every token is scored
    with its whole history. streams=S splits the predictions into S contiguous parts read in
    parallel (S times fewer sequential steps); part s starts reading `warmup` tokens early, so its
    first predictions have that much history instead of all of it.
    """
    was_training = model.training
    model.eval()
    ids = ids.to(device)
    n_pred = ids.numel() - 1
    streams = max(1, min(streams, n_pred // 64))  # parts of at least 64 predictions
    bounds = [round(i * n_pred / streams) for i in range(streams + 1)]
    begins = [bounds[0]] + [max(0, b - warmup) for b in bounds[1:-1]]
    length = max(bounds[i + 1] - begins[i] for i in range(streams))
    x = torch.zeros(length, streams, dtype=torch.long, device=device)  # right-padded: padding never feeds a real step
    y = torch.zeros_like(x)
    for i in range(streams):
        n = bounds[i + 1] - begins[i]
        x[:n, i] = ids[begins[i] : bounds[i + 1]]
        y[:n, i] = ids[begins[i] + 1 : bounds[i + 1] + 1]
    scores, state = [], None
    for start in range(0, length, chunk):
        logits, state = model(x[start : start + chunk], state)
        scores.append(F.cross_entropy(logits.flatten(0, 1), y[start : start + chunk].flatten(), reduction="none").view(-1, streams))
    model.train(was_training)
    if not scores:
        return torch.zeros(0, device=device)
    table = torch.cat(scores)
    return torch.cat([table[bounds[i] - begins[i] : bounds[i + 1] - begins[i], i] for i in range(streams)])


def perplexity_report(surprisal: torch.Tensor) -> dict[str, float]:
    n = surprisal.numel()
    if n == 0:
        raise SeqtoolError("nothing to score: the text has fewer than 2 tokens")
    nats = float(surprisal.double().mean())
    perplexity = math.exp(nats) if nats < 709 else math.inf  # beyond that a float overflows (a diverged model)
    return {"tokens": n, "cross_entropy_nats": nats, "bits_per_token": nats / math.log(2), "perplexity": perplexity}


def split_tail(ids: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """train, validation, test: the last `fraction` of the text is held out; its first half chooses
    the checkpoint (validation), its second half is reported (test), never seen by the choice."""
    n = ids.numel()
    held = int(round(n * fraction))
    n_val = held - held // 2
    return ids[: n - held], ids[n - held : n - held + n_val], ids[n - held + n_val :]


class LanguageModelTask(Task):
    name = "lm"
    monitor = "val_ppl"
    monitor_lower_is_better = True
    unit = "tokens"
    loss_is_nll = True
    batch_dim = 1  # batches are time-major (steps, batch): a process takes a block of whole streams

    def __init__(self, spec, data: PreparedText | None, vocab: Vocab, counts: list[int]):
        super().__init__(spec)
        self.vocab, self.counts = vocab, counts
        self.level, self.clean = spec.data.level, spec.data.clean
        self.train_ids = self.val_ids = self.test_ids = None
        if data is not None:
            self.train_ids, self.val_ids, self.test_ids = split_tail(data.ids, spec.data.val_fraction)
            self._check_sizes()

    @staticmethod
    def check_spec(spec) -> None:
        if spec.train.truncation != "fixed" and spec.data.sampling != "sequential":
            raise UsageError(f"--truncation {spec.train.truncation} needs --sampling sequential (random windows are independent)")
        if spec.model.bidirectional:
            raise UsageError("--bidirectional cannot be used for a language model: it would see the next token it must predict")
        if spec.model.tie_weights and spec.model.embed != spec.model.hidden:
            raise UsageError(f"--tie-weights needs --embed equal to --hidden (got {spec.model.embed} and {spec.model.hidden})")
        if spec.data.val_fraction <= 0:
            raise UsageError("a language model needs a held-out split: --val-fraction must be > 0")

    def _check_sizes(self) -> None:
        d, t = self.spec.data, self.spec.train
        need = t.batch * d.steps + d.steps
        if self.train_ids.numel() < need:
            raise SeqtoolError(
                f"the training split has {self.train_ids.numel()} tokens, fewer than one batch needs "
                f"(batch {t.batch} x steps {d.steps} + {d.steps}); lower --batch or --steps"
            )
        for name, ids in (("validation", self.val_ids), ("test", self.test_ids)):
            if ids.numel() < 2:
                raise SeqtoolError(f"the held-out {name} split has {ids.numel()} token(s); raise --val-fraction or use a longer corpus")

    @classmethod
    def from_spec(cls, spec) -> "LanguageModelTask":
        cls.check_spec(spec)
        if not spec.data.corpus:
            raise UsageError("no corpus given: pass CORPUS (a file, '-' for stdin, or a catalog name)")
        d = spec.data
        data = load_corpus(d.corpus, d.level, d.clean, d.min_freq, d.encoding, d.encoding_errors)
        d.level, d.clean = data.level, data.clean  # a prepared dataset carries its own settings
        return cls(spec, data, data.vocab, data.counts)

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "LanguageModelTask":
        return cls(spec, None, Vocab(list(task_state["vocab"])), list(task_state["counts"]))

    def task_state(self) -> dict:
        return {"vocab": self.vocab.to_list(), "counts": list(self.counts), "level": self.level, "clean": self.clean}

    def build_model(self) -> nn.Module:
        m = self.spec.model
        model = RNNLM(len(self.vocab), m.embed, m.hidden, m.layers, m.cell, m.dropout, m.tie_weights, m.impl)
        model.rnn.reset_parameters(orthogonal=m.init == "orthogonal", forget_bias=m.forget_bias if m.cell == "lstm" else None)
        return model

    def batches_per_epoch(self) -> int:
        d = self.spec.data
        if self.spec.train.truncation != "fixed":
            return 1
        return max(num_batches(self.train_ids.numel(), self.spec.train.batch, d.steps, d.sampling), 1)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator:
        """Batches of `steps` tokens (fixed truncation), or with truncation full|random each row's
        whole stream as one sequence: one update per epoch, cut by the strategy inside it."""
        d, batch = self.spec.data, self.spec.train.batch
        if self.spec.train.truncation == "fixed":
            return make_batches(self.train_ids, batch, d.steps, d.sampling, generator)
        self._cuts = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        usable = ((self.train_ids.numel() - 1) // batch) * batch
        rows = self.train_ids[: usable + 1]
        return iter([(rows[:-1].view(batch, -1).t(), rows[1:].view(batch, -1).t())])

    def train_backward(self, model, batch, state, device, backward):
        strategy = self.spec.train.truncation
        if strategy == "fixed":
            return super().train_backward(model, batch, state, device, backward)
        from seqtool.lm.truncation import truncated_backward

        x, y = (t.to(device, non_blocking=True) for t in batch)

        def run_chunk(start, stop, h):
            logits, h = model(x[start:stop], h)
            return F.cross_entropy(logits.flatten(0, 1), y[start:stop].flatten(), reduction="sum") / y.shape[1], h

        result = truncated_backward(run_chunk, x.shape[0], None, strategy, self.spec.data.steps, self._cuts, backward=backward)
        return result.loss, y.numel(), None

    def train_loss(self, model, batch, state, device):
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if self.spec.data.sampling == "random":
            state = None  # random windows do not continue each other
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        return loss, y.numel(), state

    def evaluate(self, model, device) -> dict[str, float]:
        report = perplexity_report(token_surprisals(model, self.val_ids, device, streams=EVAL_STREAMS))
        return {"val_loss": report["cross_entropy_nats"], "val_ppl": report["perplexity"]}

    def test(self, model, device) -> dict[str, float]:
        report = perplexity_report(token_surprisals(model, self.test_ids, device, streams=EVAL_STREAMS))
        return {"test_loss": report["cross_entropy_nats"], "test_ppl": report["perplexity"], "test_tokens": report["tokens"]}

    # ---- generation --------------------------------------------------------------------------
    def encode_prefix(self, prefix: str) -> tuple[list[int], list[str]]:
        """Normalise a prefix like the training text; returns its ids and any unknown tokens."""
        from seqtool.data.text import normalize, tokenize

        text = normalize(prefix, self.clean)
        if self.clean == "letters" and prefix[-1:].isspace() and text:
            text += " "  # keep a trailing space: "time " continues with a new word
        tokens = tokenize(text, self.level)
        unknown = sorted({t for t in tokens if t not in self.vocab})
        return self.vocab.encode(tokens), unknown

    def prefix_warnings(self, prefix: str) -> list[str]:
        """What a user should know about how the model reads a prefix."""
        ids, unknown = self.encode_prefix(prefix)
        warnings = [f"the prefix has tokens the model never saw ({', '.join(map(repr, unknown[:5]))}); they are read as <unk>"] if unknown else []
        if prefix and not ids:
            warnings.append("the prefix is empty after normalisation; starting from a random token")
        return warnings

    def generate(self, model, prefix: str, length: int, *, num: int = 1, seed: int | None = None,
                 device=torch.device("cpu"), on_text=None, **choice) -> list[str]:
        """`num` texts that start with the (normalised) prefix and continue for `length` tokens.

        With num=1, `on_text(piece)` receives the text as it is generated (prefix first), so a
        caller can stream it; the pieces join to exactly the returned text."""
        from seqtool.lm.sampling import sample
        from seqtool.data.text import detokenize

        ids, _ = self.encode_prefix(prefix)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        counts = torch.tensor(self.counts, dtype=torch.float)
        counts[0] = 0.0  # never start from <unk>
        if not float(counts.sum()) > 0:
            raise SeqtoolError("the model's vocabulary has no token besides <unk>: there is nothing to sample")
        if on_text is None:
            on_step = None
        else:
            if num != 1:
                raise ValueError("streaming (on_text) generates one text at a time")
            sep, started = ("" if self.level == "char" else " "), [bool(ids)]
            if ids:
                on_text(detokenize(self.vocab.decode(ids), self.level))

            def on_step(token):
                on_text((sep if started[0] else "") + self.vocab.itos[int(token[0])])
                started[0] = True

        out = sample(model, ids, length, num=num, banned=[self.vocab.unk], first_token_probs=counts / counts.sum(),
                     generator=generator, device=device, on_step=on_step, **choice)
        return [detokenize(self.vocab.decode(ids + row if ids else row), self.level) for row in out]

    def report_sections(self, model, device) -> list[str]:
        prefix = "the " if self.clean != "none" else "The "
        texts = self.generate(model, prefix, 200, num=2, seed=0, device=device, temperature=0.8)
        return ["## Samples (temperature 0.8)", "", *[f"> {t.replace(chr(10), ' ')}" for t in texts]]
