"""Language modeling: predict the next character or word of a text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from seqtool.data.batching import make_batches, num_batches
from seqtool.data.dataset import SUBWORD_LEVELS, PreparedText, SubwordRequest, load_corpus
from seqtool.data.subword import Subwords
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.nn.lm import RNNLM, adaptive_cutoffs
from seqtool.core.task import Task
from seqtool.data.text import EOS, Vocab


#: held-out scoring reads the text as this many parallel streams, each warmed up on the WARMUP
#: tokens before its part, so training-time evaluation and `seqtool eval` agree and stay fast
EVAL_STREAMS, EVAL_WARMUP = 16, 256


#: share of a --max-seconds budget the final test scoring may take before it is sampled (unless --test-tokens says otherwise)
TEST_SHARE = 0.25


def stream_spans(n_pred: int, streams: int, warmup: int = EVAL_WARMUP) -> list[tuple[int, int, int]]:
    """All n_pred predictions as `streams` contiguous parts (begin, first, stop): part s predicts
    [first, stop) and starts reading `warmup` tokens early (at begin)."""
    streams = max(1, min(streams, n_pred // 64))  # parts of at least 64 predictions
    bounds = [round(i * n_pred / streams) for i in range(streams + 1)]
    return [(bounds[i] if i == 0 else max(0, bounds[i] - warmup), bounds[i], bounds[i + 1]) for i in range(streams)]


def sample_spans(n_pred: int, tokens: int | None, seed: int, parts: int = EVAL_STREAMS, warmup: int = EVAL_WARMUP) -> list[tuple[int, int, int]]:
    """About `tokens` of n_pred predictions as `parts` contiguous chunks, one at a seeded offset in
    each of `parts` equal strata: spread over the whole part, and the same sample every time it is
    asked for with the same seed (so validation numbers stay comparable across epochs). None, or
    at least n_pred: every prediction (stream_spans)."""
    if tokens is None or tokens >= n_pred:
        return stream_spans(n_pred, parts, warmup)
    parts = max(1, min(parts, tokens))
    length, stratum = tokens // parts, n_pred // parts
    generator = torch.Generator().manual_seed(seed)
    offsets = [i * stratum + int(torch.randint(0, stratum - length + 1, (1,), generator=generator)) for i in range(parts)]
    return [(max(0, first - warmup), first, first + length) for first in offsets]


def span_reads(spans: list[tuple[int, int, int]]) -> int:
    """Tokens a scoring pass over the spans reads (warm-ups included): what its time is proportional to."""
    return sum(stop - begin for begin, _, stop in spans)


def span_targets(ids: torch.Tensor, spans: list[tuple[int, int, int]]) -> torch.Tensor:
    """The tokens the spans' predictions are scored on, in score_spans' order."""
    return torch.cat([ids[first + 1 : stop + 1] for _, first, stop in spans]) if spans else ids[:0]


def spelled_sizes(vocab: Vocab, level: str, counts: list[int], targets: torch.Tensor) -> tuple[int, int]:
    """(characters, UTF-8 bytes) of the text the target tokens spell: the scale bits per character
    are measured on, whatever the level. Characters: one per token. Words: the word and the space
    or line end after it; an <eos> right after another is an empty line's own line end. An <unk>
    stands for a word the vocabulary lacks: it counts as long as the training words seen once, on
    average."""
    t = targets.long()
    if level == "char":
        widths = torch.tensor([len(token.encode("utf-8")) for token in vocab.itos])
        return t.numel(), int(widths[t].sum())
    eos = vocab.index(EOS) if EOS in vocab else -1
    if level in SUBWORD_LEVELS:  # a piece spells its characters, '▁' the space before a word (the line end instead at a line's start)
        sizes = torch.tensor([len(p) for p in vocab.itos], dtype=torch.float64)
        widths = torch.tensor([len(p.replace("\u2581", " ").encode("utf-8")) for p in vocab.itos], dtype=torch.float64)
        sizes[0] = widths[0] = 1.0  # <unk>: a character the training text never had
        if eos >= 0:
            sizes[eos] = widths[eos] = 0.0  # the '▁' of the next line's first piece stands for it...
        empty = (t == eos) & (torch.cat([torch.tensor([eos]), t[:-1]]) == eos)  # ...except after an empty line
        return round(float(sizes[t].sum() + empty.sum())), round(float(widths[t].sum() + empty.sum()))
    rare = [len(w) for w, c in zip(vocab.itos, counts) if c == 1 and w != EOS] or [len(w) for w in vocab.itos[1:] if w != EOS] or [1]
    unk = sum(rare) / len(rare)
    sizes = torch.tensor([unk] + [len(w) + 1.0 for w in vocab.itos[1:]], dtype=torch.float64)  # + the separator after it
    widths = torch.tensor([unk] + [len(w.encode("utf-8")) + 1.0 for w in vocab.itos[1:]], dtype=torch.float64)
    sizes[0] += 1.0
    widths[0] += 1.0
    if eos >= 0:
        sizes[eos] = widths[eos] = 0.0  # the line end is the separator of the word before it...
    empty = (t == eos) & (torch.cat([torch.tensor([eos]), t[:-1]]) == eos)  # ...except on an empty line
    return round(float(sizes[t].sum() + empty.sum())), round(float(widths[t].sum() + empty.sum()))


def per_character(report: dict[str, float], chars: int, bytes_: int) -> dict[str, float]:
    """Bits per character and per byte: the total surprisal over the text's size, comparable across levels."""
    bits = report["cross_entropy_nats"] * report["tokens"] / math.log(2)
    return {"characters": chars, "bits_per_char": bits / chars if chars else math.nan, "bits_per_byte": bits / bytes_ if bytes_ else math.nan}


@torch.no_grad()
def token_surprisals(model: nn.Module, ids: torch.Tensor, device: torch.device, chunk: int = 512,
                     streams: int = 1, warmup: int = EVAL_WARMUP) -> torch.Tensor:
    """-log P(x_t | x_<t) in nats for t = 2..N.

    streams=1 reads the text as one stream in chunks with the state carried: every token is scored
    with its whole history. streams=S splits the predictions into S contiguous parts read in
    parallel (S times fewer sequential steps); part s starts reading `warmup` tokens early, so its
    first predictions have that much history instead of all of it.
    """
    return score_spans(model, ids, device, stream_spans(ids.numel() - 1, streams, warmup), chunk)


@torch.no_grad()
def score_spans(model: nn.Module, ids: torch.Tensor, device: torch.device, spans: list[tuple[int, int, int]],
                chunk: int = 512) -> torch.Tensor:
    """-log P(ids[p + 1] | ids[begin..p]) for the predictions p in [first, stop) of every span
    (begin, first, stop), the spans read side by side as the columns of a batch; in span order."""
    was_training = model.training
    model.eval()
    if not spans or ids.numel() < 2:
        model.train(was_training)
        return torch.zeros(0)
    streams = len(spans)
    length = max(stop - begin for begin, _, stop in spans)
    width = getattr(model, "output_width", 0)
    if width:  # a large vocabulary reads shorter chunks: each chunk's scores stay within ~16 MB
        chunk = max(8, min(chunk, (1 << 22) // (streams * width)))
    scores, state = [], None
    for start in range(0, length, chunk):  # a chunk's inputs are gathered when it is read: a long text is never copied whole
        steps = min(chunk, length - start)
        x = torch.zeros(steps + 1, streams, dtype=torch.long)  # right-padded: padding never feeds a real step
        for i, (begin, _, stop) in enumerate(spans):
            piece = ids[begin + start : min(stop + 1, begin + start + steps + 1)]
            x[: piece.numel(), i] = piece
        x = x.to(device)
        nll, state = model(x[:-1], state, x[1:])
        scores.append(nll.cpu())
    model.train(was_training)
    table = torch.cat(scores)
    return torch.cat([table[first - begin : stop - begin, i] for i, (begin, first, stop) in enumerate(spans)])


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

    def __init__(self, spec, data: PreparedText | None, vocab: Vocab, counts: list[int], subwords: Subwords | None = None):
        super().__init__(spec)
        self.vocab, self.counts, self.subwords = vocab, counts, subwords
        self.level, self.clean = spec.data.level, spec.data.clean
        self.train_ids = self.val_ids = self.test_ids = None
        if data is not None:
            if data.splits:  # a train/valid/test layout: its parts, not the tail
                self.train_ids, self.val_ids, self.test_ids = (data.part(name) for name in ("train", "valid", "test"))
            else:
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
        if spec.train.unk_rate and spec.train.truncation != "fixed":
            raise UsageError(f"--unk-rate needs --truncation fixed (got {spec.train.truncation})")
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
                fix = "give it at least 2 tokens" if self.spec.data.corpus and Path(self.spec.data.corpus).is_dir() else \
                    "raise --val-fraction or use a longer corpus"
                raise SeqtoolError(f"the held-out {name} split has {ids.numel()} token(s); {fix}")

    @classmethod
    def from_spec(cls, spec) -> "LanguageModelTask":
        cls.check_spec(spec)
        if not spec.data.corpus:
            raise UsageError("no corpus given: pass CORPUS (a file, '-' for stdin, or a catalog name)")
        d = spec.data
        subword = SubwordRequest(d.vocab_size, 1 - d.val_fraction) if d.level in SUBWORD_LEVELS else None
        data = load_corpus(d.corpus, d.level, d.clean, d.min_freq, d.encoding, d.encoding_errors, subword=subword)
        d.level, d.clean = data.level, data.clean  # a prepared dataset carries its own settings
        return cls(spec, data, data.vocab, data.counts, data.subwords)

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "LanguageModelTask":
        subwords = Subwords.from_state(task_state["subwords"]) if task_state.get("subwords") else None
        return cls(spec, None, Vocab(list(task_state["vocab"])), list(task_state["counts"]), subwords)

    def task_state(self) -> dict:
        state = {"vocab": self.vocab.to_list(), "counts": list(self.counts), "level": self.level, "clean": self.clean}
        if self.subwords is not None:  # the model itself, inside the checkpoint
            state["subwords"] = self.subwords.state()
        return state

    def build_model(self) -> nn.Module:
        m = self.spec.model
        model = RNNLM(len(self.vocab), m.embed, m.hidden, m.layers, m.cell, m.dropout, m.tie_weights, m.impl, self.cutoffs())
        model.rnn.reset_parameters(orthogonal=m.init == "orthogonal", forget_bias=m.forget_bias if m.cell == "lstm" else None)
        return model

    def cutoffs(self) -> list[int] | None:
        """The adaptive softmax's cluster boundaries (by the training counts), None for the full softmax."""
        if self.spec.model.softmax != "adaptive":
            return None
        cutoffs = adaptive_cutoffs(self.counts)
        if not cutoffs:
            raise UsageError(f"--softmax adaptive needs a vocabulary it can split by frequency; this one has {len(self.vocab)} "
                             "tokens: use --softmax full")
        return cutoffs

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
            batches = make_batches(self.train_ids, batch, d.steps, d.sampling, generator)
            return self._unk_noised(batches, generator) if self.spec.train.unk_rate else batches
        self._cuts = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        usable = ((self.train_ids.numel() - 1) // batch) * batch
        rows = self.train_ids[: usable + 1].long()
        return iter([(rows[:-1].view(batch, -1).t(), rows[1:].view(batch, -1).t())])

    def _unk_noised(self, batches: Iterator, generator: torch.Generator) -> Iterator:
        """Each occurrence of a word seen once in training reads as <unk> with probability
        --unk-rate, in the inputs and the targets alike (an input is the target one step before):
        the model learns how likely an unseen word is, as Good-Turing estimates it from the words
        seen once, so a held-out word outside the vocabulary is not a near-impossible event."""
        rare, rate = torch.tensor([c == 1 for c in self.counts]), self.spec.train.unk_rate
        sequential, carry = self.spec.data.sampling == "sequential", None
        for x, y in batches:
            hit = rare[y] & (torch.rand(y.shape, generator=generator) < rate)
            first = carry if sequential and carry is not None else rare[x[:1]] & (torch.rand(x[:1].shape, generator=generator) < rate)
            carry = hit[-1:]
            yield x.masked_fill(torch.cat([first, hit[:-1]]), self.vocab.unk), y.masked_fill(hit, self.vocab.unk)

    def train_backward(self, model, batch, state, device, backward):
        strategy = self.spec.train.truncation
        if strategy == "fixed":
            return super().train_backward(model, batch, state, device, backward)
        from seqtool.lm.truncation import truncated_backward

        x, y = (t.to(device, non_blocking=True) for t in batch)

        def run_chunk(start, stop, h):
            nll, h = model(x[start:stop], h, y[start:stop])
            return nll.sum() / y.shape[1], h

        result = truncated_backward(run_chunk, x.shape[0], None, strategy, self.spec.data.steps, self._cuts, backward=backward)
        return result.loss, y.numel(), None

    def train_loss(self, model, batch, state, device):
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if self.spec.data.sampling == "random":
            state = None  # random windows do not continue each other
        nll, state = model(x, state, y)
        return nll.mean(), y.numel(), state

    # ---- held-out scoring: a bounded validation sample, the test split in full (or what the budget allows)
    def _val_spans(self) -> list[tuple[int, int, int]]:
        return sample_spans(self.val_ids.numel() - 1, self.spec.data.val_tokens, self.spec.train.seed)

    def _test_spans(self) -> list[tuple[int, int, int]]:
        given = self.spec.data.test_tokens  # None: the whole split unless the budget says otherwise; 0: the whole split
        cap = self._test_cap if given is None else (given or None)
        return sample_spans(self.test_ids.numel() - 1, cap, self.spec.train.seed + 1)

    _test_cap: int | None = None  # set by held_out_seconds when the whole test split would not fit the time budget

    def held_out_seconds(self, model, device, budget: float) -> tuple[float, float]:
        """Time a scoring pass over a small slice, then predict validation's and the test's seconds
        from the tokens each reads. Unless --test-tokens says otherwise (or --val-tokens 0 asks for
        every held-out token), a test split that would take more than TEST_SHARE of the budget is
        sampled down to what fits (test() reports both sizes)."""
        import time

        probe = sample_spans(self.val_ids.numel() - 1, EVAL_STREAMS * 512, self.spec.train.seed)
        started = time.perf_counter()
        score_spans(model, self.val_ids, device, probe)
        per_token = (time.perf_counter() - started) / max(span_reads(probe), 1)
        self._test_cap = None
        test_seconds = span_reads(self._test_spans()) * per_token
        sampling = self.spec.data.test_tokens is None and self.spec.data.val_tokens is not None  # --val-tokens 0: score everything
        if sampling and test_seconds > TEST_SHARE * budget:
            self._test_cap = max(EVAL_STREAMS * 64, int(TEST_SHARE * budget / per_token))
            test_seconds = span_reads(self._test_spans()) * per_token
        return span_reads(self._val_spans()) * per_token, test_seconds

    def validation_label(self) -> str:
        scored, total = sum(stop - first for _, first, stop in self._val_spans()), self.val_ids.numel() - 1
        return f"{scored:,} tokens" + (f" of {total:,}" if scored < total else "")

    def evaluate(self, model, device) -> dict[str, float]:
        report = perplexity_report(score_spans(model, self.val_ids, device, self._val_spans()))
        return {"val_loss": report["cross_entropy_nats"], "val_ppl": report["perplexity"], "val_tokens": report["tokens"]}

    def test(self, model, device) -> dict[str, float]:
        spans = self._test_spans()
        report = perplexity_report(score_spans(model, self.test_ids, device, spans))
        targets = span_targets(self.test_ids, spans)
        spelled = per_character(report, *spelled_sizes(self.vocab, self.level, self.counts, targets))
        result = {"test_loss": report["cross_entropy_nats"], "test_ppl": report["perplexity"], "test_tokens": report["tokens"],
                  "test_unk_tokens": int((targets == self.vocab.unk).sum()), "test_bits_per_char": spelled["bits_per_char"],
                  "test_bits_per_byte": spelled["bits_per_byte"], "test_characters": spelled["characters"]}
        if report["tokens"] < self.test_ids.numel() - 1:  # a sample: say of how much, and why
            result["test_split_tokens"] = self.test_ids.numel() - 1
            result["test_sampled_by"] = "--test-tokens" if self.spec.data.test_tokens else "--max-seconds"
        return result

    # ---- generation --------------------------------------------------------------------------
    def encode_prefix(self, prefix: str) -> tuple[list[int], list[str]]:
        """Normalise a prefix like the training text; returns its ids and any unknown tokens."""
        from seqtool.data.text import EOS, normalize, tokenize

        lines = self.level != "char"
        text = normalize(prefix, self.clean, keep_lines=lines)
        if self.clean == "letters" and prefix[-1:].isspace() and text:
            text += " "  # keep a trailing space: "time " continues with a new word
        if self.subwords is not None:
            rows = text.split("\n")
            tokens = [t for i, row in enumerate(rows) for t in (*self.subwords.pieces(row), *([EOS] if i < len(rows) - 1 else []))]
        else:
            tokens = tokenize(text, self.level)
        if lines and tokens[-1:] == [EOS] and not prefix.endswith(("\n", "\r")):
            tokens.pop()  # the prefix's last line goes on: no line end yet
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
        from seqtool.data.text import EOS

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
            sep = "" if self.level == "char" else " "
            # a space goes between words, not next to a line end (detokenize's <eos> rule)
            after_word = [bool(ids) and self.vocab.itos[ids[-1]] != EOS]
            if ids:
                on_text(self.text_of(self.vocab.decode(ids)))

            def on_step(token):
                text = self.vocab.itos[int(token[0])]
                if self.level != "char" and text == EOS:
                    on_text("\n")
                    after_word[0] = False
                    return
                if self.subwords is not None:  # a piece carries its own space ('▁'), none at a line's start
                    text = text.replace("\u2581", " ")
                    on_text(text if after_word[0] else text.lstrip(" "))
                else:
                    on_text((sep if after_word[0] else "") + text)
                after_word[0] = True

        out = sample(model, ids, length, num=num, banned=[self.vocab.unk], first_token_probs=counts / counts.sum(),
                     generator=generator, device=device, on_step=on_step, **choice)
        return [self.text_of(self.vocab.decode(ids + row if ids else row)) for row in out]

    def text_of(self, tokens: list[str]) -> str:
        """Tokens back to text: characters joined, words spaced, pieces decoded; <eos> a line end."""
        from seqtool.data.text import EOS, detokenize

        if self.subwords is None:
            return detokenize(tokens, self.level)
        lines, line = [], []
        for token in tokens:
            if token == EOS:
                lines.append(self.subwords.text(line))
                line = []
            else:
                line.append(token)
        return "\n".join([*lines, self.subwords.text(line)])

    def report_sections(self, model, device) -> list[str]:
        prefix = "the " if self.clean != "none" else "The "
        texts = self.generate(model, prefix, 200, num=2, seed=0, device=device, temperature=0.8)
        return ["## Samples (temperature 0.8)", "", *[f"> {t.replace(chr(10), ' ')}" for t in texts]]
