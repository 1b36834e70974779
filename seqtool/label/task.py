"""Classification (a label per sequence) and tagging (a label per token) as Tasks: the data, its
vocabularies, batches of similar lengths, the loss, validation, the test split and the report."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterator

import torch
from torch import nn

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.task import Task
from seqtool.data.subword import KINDS, Subwords
from seqtool.label import data as D
from seqtool.label.metrics import classification_scores, tagging_scores
from seqtool.label.model import Ensemble, SequenceClassifier, SequenceTagger
from seqtool.nn.members import members_of

PAD, UNK = "<pad>", "<unk>"
MAX_LETTERS = 20  # characters of a word the character encoding reads
BUCKET = 50  # batches drawn together and sorted by length, so a batch's sequences are of similar length


_DIGITS = str.maketrans("0123456789", "0000000000")


def word_key(word: str) -> str:
    """How a word is looked up: lowercase, digits as 0 (its characters, case included, go to the
    character encoding), so 'The'/'the' and '1998'/'2001' share what the few examples teach."""
    return word.lower().translate(_DIGITS)


class Index:
    """Strings <-> ids with <pad> = 0 and <unk> = 1 (words, characters)."""

    def __init__(self, itos: list[str]):
        if itos[:2] != [PAD, UNK] or len(set(itos)) != len(itos):
            raise ValueError("an index starts with <pad>, <unk> and has no duplicates")
        self.itos, self.stoi = itos, {s: i for i, s in enumerate(itos)}

    @classmethod
    def build(cls, counts: Counter, min_freq: int = 1) -> "Index":
        return cls([PAD, UNK] + [s for s, c in counts.most_common() if c >= max(min_freq, 1) and s not in (PAD, UNK)])

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, items) -> list[int]:
        return [self.stoi.get(s, 1) for s in items]


class WordPieces:
    """A subword model's pieces of each word on its own, and where each word starts among them.

    A tagger labels words but reads pieces, so it must know which piece stands for which word: the
    first piece of a word carries the word's tag (the leading-space marker alone, '▁', does not: a
    word split as '▁' + '(' is tagged at '('). Pieces never cross a space, so a sentence's pieces
    are its words' pieces in order. A word's pieces are kept once worked out (up to CACHE words):
    a corpus repeats its words."""

    CACHE = 200_000

    def __init__(self, subwords: Subwords):
        self.subwords, self.known = subwords, {}

    def of_word(self, word: str) -> tuple[list[str], int]:
        """-> (the word's pieces, the index of the one that carries its tag)."""
        found = self.known.get(word)
        if found is None:
            pieces = self.subwords.pieces(word) or [UNK]  # a word sentencepiece normalises away reads as <unk>
            found = pieces, 1 if len(pieces) > 1 and pieces[0] == "▁" else 0
            if len(self.known) >= self.CACHE:
                self.known.clear()
            self.known[word] = found
        return found

    def of_words(self, tokens: list[str]) -> tuple[list[str], list[int]]:
        """-> (the pieces of every word in order, each word's tagged piece's position among them)."""
        pieces, starts = [], []
        for word in tokens:
            own, first = self.of_word(word)
            starts.append(len(pieces) + first)
            pieces += own
        return pieces, starts


def split_units(tokens: list[str], subwords: Subwords | None, word_pieces: WordPieces | None) -> list[str]:
    """What the network reads for a sequence of words: the words, or their subword pieces (a tagger's
    split word by word, so it knows where each word starts)."""
    if not subwords or not tokens:
        return tokens
    return word_pieces.of_words(tokens)[0] if word_pieces else subwords.pieces(" ".join(tokens))


class LabelTask(Task):
    """What classification and tagging share; `per_token` says which one this is."""

    per_token = False
    what = "classification"
    suffixes: tuple[str, ...] = ()
    cuts_scored = True  # sequences past --max-len are cut for scoring too (tagging scores every token)

    def __init__(self, spec, parts: dict[str, list[D.Sequence]] | None, words: Index, chars: Index, labels: list[str],
                 subwords: Subwords | None = None, word_pieces: WordPieces | None = None):
        super().__init__(spec)
        self.words, self.chars, self.labels, self.subwords = words, chars, labels, subwords
        self.label_id = {label: i for i, label in enumerate(labels)}
        self.word_pieces = word_pieces or (WordPieces(subwords) if subwords and self.per_token else None)
        self.seen: set[str] | None = None  # tagging on subwords: the training part's words, for accuracy on unseen ones
        self.parts = parts or {}
        self.truncated: dict[str, int] = {}
        if parts:
            cut = parts if self.cuts_scored else {"train": parts["train"]}  # the parts whose sequences are cut
            self.truncated = {name: sum(len(self.units(s.tokens)) > spec.data.max_len for s in part) for name, part in cut.items()} \
                if spec.data.max_len else {}
            counts = Counter(word_key(w) for s in parts["train"] for w in self.units(s.tokens))
            self.once = torch.tensor([counts.get(w, 0) == 1 for w in words.itos])  # words --unk-rate may hide

    # ---- building ----------------------------------------------------------------------------------
    @classmethod
    def read(cls, spec, arg: str) -> list[D.Sequence]:
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec) -> "LabelTask":
        d = spec.data
        if not d.corpus:
            raise UsageError(f"no data given: pass DATA (a file, a directory with {'/'.join(p + cls.suffixes[0] for p in D.PARTS)}, "
                             "'-' for stdin, or a catalog name)")
        layout = D.layout_files(d.corpus, cls.suffixes)
        if layout:
            parts = {name: cls.read(spec, str(path)) for name, path in layout.items()}
        else:
            parts = split_examples(cls.read(spec, d.corpus), d.val_fraction, spec.train.seed)
        train = parts["train"]
        subwords = cls.learn_subwords(spec, train)
        counts = Counter(label for s in train for label in s.labels)
        labels = [label for label, _ in counts.most_common()]
        cls.check_labels(labels, d.corpus)
        word_pieces = WordPieces(subwords) if subwords and cls.per_token else None
        units = [split_units(s.tokens, subwords, word_pieces) for s in train]
        words = Index.build(Counter(word_key(w) for tokens in units for w in tokens), d.min_freq)
        chars = Index.build(Counter(c for tokens in units for w in tokens for c in w))
        task = cls(spec, parts, words, chars, labels, subwords, word_pieces)
        if task.word_pieces:
            task.seen = {word_key(w) for s in train for w in s.tokens}
        task.label_counts = [counts[label] for label in labels]
        task.longest = min(max(len(tokens) for tokens in units), d.max_len or 1 << 30)
        return task

    @classmethod
    def learn_subwords(cls, spec, train: list[D.Sequence]) -> Subwords | None:
        """--level bpe | unigram: pieces learnt on the training part's sentences (never valid or test)."""
        d = spec.data
        if d.level not in ("word", *KINDS):
            raise UsageError(f"--level {d.level}: {cls.what} reads word or subword ({' or '.join(KINDS)}) tokens")
        if d.level == "word":
            return None
        if d.min_freq > 1:
            raise UsageError(f"--level {d.level}: every piece of the subword vocabulary is kept; --min-freq does not apply")
        return Subwords.learn((" ".join(s.tokens) for s in train), d.level, d.vocab_size)

    def units(self, tokens: list[str]) -> list[str]:
        return split_units(tokens, self.subwords, self.word_pieces)

    def known_word(self, word: str) -> bool:
        """Whether training saw this word (tagging reports the accuracy on the words it did not)."""
        return word_key(word) in (self.seen if self.seen is not None else self.words.stoi)

    @classmethod
    def check_labels(cls, labels: list[str], where: str) -> None:
        pass

    @classmethod
    def from_checkpoint(cls, spec, task_state: dict) -> "LabelTask":
        # runs saved before --char-encoder existed used the convolution, whatever today's default is
        spec.label.char_encoder = str(task_state.get("char_encoder", "conv"))
        subwords = Subwords.from_state(task_state["subwords"]) if task_state.get("subwords") else None
        task = cls(spec, None, Index(list(task_state["words"])), Index(list(task_state["chars"])), list(task_state["labels"]), subwords)
        task.label_counts, task.longest = list(task_state["label_counts"]), int(task_state["longest"])
        if "seen_words" in task_state:
            task.seen = set(task_state["seen_words"])
        return task

    def task_state(self) -> dict:
        return {"words": self.words.itos, "chars": self.chars.itos, "labels": self.labels, "label_counts": self.label_counts,
                "longest": self.longest, "char_encoder": self.spec.label.char_encoder,
                **({"subwords": self.subwords.state()} if self.subwords else {}),
                **({"seen_words": sorted(self.seen)} if self.seen is not None else {})}

    # ---- batches -----------------------------------------------------------------------------------
    def encode(self, sequences: list[list[str]], limit: int | None = None) -> dict[str, torch.Tensor]:
        """Token lists -> padded ids (n, steps), lengths (n,) and, with a character encoding, chars (n, steps, letters);
        each sequence cut to `limit` tokens."""
        cut = [self.units(tokens)[:limit] if limit else self.units(tokens) for tokens in sequences]
        lengths = torch.tensor([max(len(t), 1) for t in cut])
        steps = int(lengths.max()) if cut else 1
        ids = torch.zeros(len(cut), steps, dtype=torch.long)
        for row, tokens in enumerate(cut):
            ids[row, : len(tokens)] = torch.tensor(self.words.ids(map(word_key, tokens)), dtype=torch.long)
        batch = {"ids": ids, "lengths": lengths}
        if self.spec.label.char_embed:
            letters = max((min(len(w), MAX_LETTERS) for t in cut for w in t), default=1)
            chars = torch.zeros(len(cut), steps, letters, dtype=torch.long)
            for row, tokens in enumerate(cut):
                for col, word in enumerate(tokens):
                    chars[row, col, : min(len(word), MAX_LETTERS)] = torch.tensor(self.chars.ids(word[:MAX_LETTERS]), dtype=torch.long)
            batch["chars"] = chars
        return batch

    def targets(self, sequences: list[D.Sequence], steps: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def batch_of(self, sequences: list[D.Sequence]) -> dict[str, torch.Tensor]:
        batch = self.encode([s.tokens for s in sequences], self.spec.data.max_len)
        batch["y"] = self.targets(sequences, batch["ids"].shape[1])
        return batch

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.parts["train"]) / self.spec.train.batch)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict]:
        """Shuffled, then sorted by length within buckets of BUCKET batches (little padding), in shuffled order."""
        train, size = self.parts["train"], self.spec.train.batch
        order = torch.randperm(len(train), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), size * BUCKET):
            bucket = sorted(order[start : start + size * BUCKET], key=lambda i: len(train[i].tokens))
            batches += [bucket[i : i + size] for i in range(0, len(bucket), size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            batch = self.batch_of([train[i] for i in batches[b]])
            if self.spec.train.unk_rate:  # words seen once read as <unk> with probability --unk-rate
                hide = self.once[batch["ids"]] & (torch.rand(batch["ids"].shape, generator=generator) < self.spec.train.unk_rate)
                batch["ids"] = batch["ids"].masked_fill(hide, 1)
            yield batch

    def forward(self, model, batch: dict, device) -> torch.Tensor:
        chars = batch.get("chars")
        return model(batch["ids"].to(device, non_blocking=True), batch["lengths"], None if chars is None else chars.to(device, non_blocking=True))

    def member_logits(self, model, batch: dict, device) -> torch.Tensor:
        """Each member's logits, stacked (members, n, ...): what training fits, every member on its own loss."""
        if self.spec.model.members == 1:
            return self.forward(model, batch, device).unsqueeze(0)
        chars = batch.get("chars")
        return model(batch["ids"].to(device, non_blocking=True), batch["lengths"],
                     None if chars is None else chars.to(device, non_blocking=True), per_member=True)

    def fit_loss(self, logits: torch.Tensor, y: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor | int]:
        """Every member's logits (members, n, ...) and the targets -> (mean loss, items counted)."""
        raise NotImplementedError

    def losses(self, model, batch, device):
        """-> (the batch's loss, what training fits, items counted). Training fits the loss, plus with
        --adversarial the loss of the same batch with its token encodings moved eps (L2 norm per
        sequence) along the gradient of the first: the direction that hurts most, to first order
        (Miyato et al. 2017)."""
        y = batch["y"].to(device)
        eps = self.spec.label.adversarial
        inputs = [member.inputs for member in members_of(model)] if eps else []
        for layer in inputs:
            layer.keep = True
        try:
            clean, count = self.fit_loss(self.member_logits(model, batch, device), y, device)
        finally:
            kept = [layer.kept for layer in inputs]
            for layer in inputs:
                layer.keep, layer.kept = False, None
        if not eps:
            return clean, clean, count
        grads = torch.autograd.grad(clean, kept, retain_graph=True)
        for layer, g in zip(inputs, grads):
            norm = g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *[1] * (g.dim() - 1))
            layer.delta = (eps * g / norm).detach()
        try:
            adversarial, _ = self.fit_loss(self.member_logits(model, batch, device), y, device)
        finally:
            for layer in inputs:
                layer.delta = None
        return clean, clean + adversarial, count

    def train_loss(self, model, batch, state, device):
        _, fitted, count = self.losses(model, batch, device)
        return fitted, count, None

    def train_backward(self, model, batch, state, device, backward) -> tuple:
        """Backpropagates what training fits but reports the batch's own loss, comparable with or without --adversarial."""
        clean, fitted, count = self.losses(model, batch, device)
        backward(fitted)
        return clean.detach(), count, state

    @torch.no_grad()
    def predict(self, model, sequences: list[list[str]], device, limit: int | None = None, size: int = 256) -> list[torch.Tensor]:
        """Class (or tag) probabilities of each sequence, in input order; read in batches of similar lengths."""
        was_training = model.training
        model.eval()
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out: list[torch.Tensor | None] = [None] * len(sequences)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            batch = self.encode([sequences[i] for i in rows], limit)
            probs = self.forward(model, batch, device).softmax(-1).cpu()
            for k, i in enumerate(rows):
                out[i] = self.per_word(probs[k, : int(batch["lengths"][k])], sequences[i]) if self.per_token else probs[k]
        model.train(was_training)
        return out

    def per_word(self, per_unit: torch.Tensor, tokens: list[str]) -> torch.Tensor:
        """A tagger's rows for what it read -> one row per word (on subwords: each word's tagged piece)."""
        if not self.word_pieces:
            return per_unit
        starts = torch.tensor([j for j in self.word_pieces.of_words(tokens)[1] if j < len(per_unit)], dtype=torch.long)
        return per_unit[starts]

    def build_kwargs(self) -> dict:
        m = self.spec.model
        return dict(embed=m.embed, hidden=m.hidden, layers=m.layers, cell=m.cell, dropout=m.dropout, bidirectional=m.bidirectional,
                    impl=m.impl, chars=len(self.chars), char_embed=self.spec.label.char_embed,
                    char_encoder=self.spec.label.char_encoder)

    def network(self) -> nn.Module:
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """One network, or --members of them initialised one after another (so differently) as an Ensemble."""
        m = self.spec.model
        members = []
        for _ in range(self.spec.model.members):
            member = self.network()
            member.rnn.reset_parameters(orthogonal=m.init == "orthogonal", forget_bias=m.forget_bias if m.cell == "lstm" else None)
            members.append(member)
        return members[0] if len(members) == 1 else Ensemble(members)

    def report(self, model, device, run_dir):
        entries = {"truncated": self.truncated, "max_len": self.spec.data.max_len} if self.truncated else {}
        lines = [f"- sequences cut to --max-len {self.spec.data.max_len} tokens{'' if self.cuts_scored else ' for training'}: "
                 + ", ".join(f"{name} {count}" for name, count in self.truncated.items())] if any(self.truncated.values()) else []
        return entries, lines


def split_examples(examples: list[D.Sequence], fraction: float, seed: int) -> dict[str, list[D.Sequence]]:
    """train / valid / test from one file: a seeded shuffle; the held-out `fraction` is halved into
    validation (chooses the checkpoint) and test (reported once)."""
    if fraction <= 0:
        raise UsageError("one file needs a held-out part: --val-fraction must be > 0 (or give a train/valid/test directory)")
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(2, round(len(examples) * fraction))
    if len(examples) - held < 1:
        raise SeqtoolError(f"{len(examples)} examples are too few to hold out validation and test parts")
    valid = held - held // 2
    pick = lambda idx: [examples[i] for i in sorted(idx)]  # noqa: E731 - file order inside each part
    return {"train": pick(order[held:]), "valid": pick(order[:valid]), "test": pick(order[valid:held])}


class ClassifyTask(LabelTask):
    name, monitor, monitor_lower_is_better, unit = "classify", "val_accuracy", False, "sentences"
    suffixes = (".tsv", ".csv")

    @classmethod
    def read(cls, spec, arg: str) -> list[D.Sequence]:
        return D.read_labelled(arg, spec.label.text_column, spec.label.label_column, spec.data.encoding, spec.data.encoding_errors)

    @classmethod
    def check_labels(cls, labels: list[str], where: str) -> None:
        if len(labels) < 2:
            raise SeqtoolError(f"{where}: every training example has the label {labels[0]!r}; a classifier needs at least two classes")

    def network(self) -> nn.Module:
        return SequenceClassifier(len(self.words), len(self.labels), pool=self.spec.label.pool, **self.build_kwargs())

    def targets(self, sequences, steps=None) -> torch.Tensor:
        return torch.tensor([self.label_id.get(s.labels[0], -100) for s in sequences])

    def class_weights(self, device) -> torch.Tensor | None:
        if self.spec.label.class_weights != "balanced":
            return None
        counts = torch.tensor(self.label_counts, dtype=torch.float)
        return (counts.sum() / (len(counts) * counts)).to(device)

    def fit_loss(self, logits, y, device):
        members = logits.shape[0]  # (members, n, classes)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(members), weight=self.class_weights(device))
        return loss, y.numel()  # the members' mean loss: with Adam each member steps as it would alone

    def scores(self, model, part: list[D.Sequence], device) -> dict:
        probs = self.predict(model, [s.tokens for s in part], device, self.spec.data.max_len)
        predicted = [self.labels[int(p.argmax())] for p in probs]
        return classification_scores([s.labels[0] for s in part], predicted, self.labels)

    def evaluate(self, model, device) -> dict[str, float]:
        s = self.scores(model, self.parts["valid"], device)
        return {"val_accuracy": s["accuracy"], "val_macro_f1": s["macro_f1"]}

    def test(self, model, device) -> dict:
        s = self.scores(model, self.parts["test"], device)
        return {"test_accuracy": s["accuracy"], "test_macro_f1": s["macro_f1"], "test_examples": s["examples"],
                **({"test_unseen_labels": s["unseen_labels"]} if s["unseen_labels"] else {})}


class TagTask(LabelTask):
    name, monitor, monitor_lower_is_better, unit = "tag", "val_accuracy", False, "tokens"
    per_token, cuts_scored, what = True, False, "tagging"
    suffixes = (".conllu", ".conll")

    @classmethod
    def read(cls, spec, arg: str) -> list[D.Sequence]:
        return D.read_tagged(arg, spec.label.tag_column, spec.data.encoding, spec.data.encoding_errors)

    def network(self) -> nn.Module:
        return SequenceTagger(len(self.words), len(self.labels), **self.build_kwargs())

    def targets(self, sequences, steps=None) -> torch.Tensor:
        y = torch.full((len(sequences), steps), -100, dtype=torch.long)
        for row, s in enumerate(sequences):
            at = self.word_pieces.of_words(s.tokens)[1] if self.word_pieces else range(len(s.labels))
            kept = [(j, self.label_id.get(t, -100)) for j, t in zip(at, s.labels) if j < steps]
            if kept:
                where, tags = zip(*kept)
                y[row, list(where)] = torch.tensor(tags, dtype=torch.long)
        return y

    def fit_loss(self, logits, y, device):
        members = logits.shape[0]  # (members, n, steps, tags)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).repeat(members), ignore_index=-100)
        return loss, (y >= 0).sum()  # the members' mean loss

    def scores(self, model, part: list[D.Sequence], device) -> dict:
        probs = self.predict(model, [s.tokens for s in part], device)
        predicted = [[self.labels[int(i)] for i in p.argmax(-1)] for p in probs]
        known = [[self.known_word(w) for w in s.tokens] for s in part]
        return tagging_scores([s.labels for s in part], predicted, known, self.labels)

    def evaluate(self, model, device) -> dict[str, float]:
        return {"val_accuracy": self.scores(model, self.parts["valid"], device)["accuracy"]}

    def test(self, model, device) -> dict:
        s = self.scores(model, self.parts["test"], device)
        out = {"test_accuracy": s["accuracy"], "test_tokens": s["tokens"]}
        if s["unseen_accuracy"] is not None:
            out["test_unseen_accuracy"] = s["unseen_accuracy"]
        if "span_f1" in s:
            out["test_span_f1"] = s["span_f1"]
        return out
