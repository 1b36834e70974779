"""Run specs: every option of a run, declared once.

Each option is one dataclass field whose metadata (an `Opt`) says its help, its choices and range,
the tasks that read it, its defaults for particular tasks and whether `--resume` may change it.
Everything else is derived from that one place: the YAML keys (a section's key is the option's
flag, `--max-seconds` <-> `train: {max_seconds: ...}`), the Typer options of `train` and `forecast`
(seqtool/cli/options.py), validation, the refusal of options a task does not use, and the option
table in the README (`options_markdown`).

Precedence: defaults (the field's, then the task's) < spec file < flags. The resolved spec is saved
in every run directory and checkpoint, so a run can always be rebuilt from it.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.logs import check_sinks

RECURRENT_CELLS = ("rnn", "gru", "lstm")
#: upper bounds that keep a typo from crashing torch (thread creation) or overflowing a seed
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1
MAX_SIZE = 2**31 - 1  # tensor dimensions beyond this overflow inside torch


def check_encoding(where: str, encoding: str) -> None:
    """A text encoding Python knows (refused up front, not after the corpus is read)."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        raise UsageError(f"{where}: unknown encoding {encoding!r} (e.g. utf-8, latin-1, utf-16, cp1252)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"{where}: {encoding!r} is not a text encoding")


def parse_int_list(text: str, flag: str = "--k") -> list[int]:
    """'1,4,16,64' -> [1, 4, 16, 64] (how a list option is written on the command line)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{flag}: expected comma-separated positive integers such as 1,4,16,64, got {text!r}")
    return values


def _check_task(where: str, value: str) -> None:
    from seqtool.core.family import family_names

    if value not in family_names():
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(family_names())}")


def _check_levels(where: str, values: list) -> None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100 for v in values):
        raise UsageError(f"{where} must be percentages between 1 and 99, got {values!r}")


def _check_positive_ints(where: str, values: list) -> None:
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise UsageError(f"{where} must be a non-empty list of positive integers, got {values!r}")


@dataclass(frozen=True)
class Opt:
    """What the code needs to know about one option besides its name, type and default."""

    help: str
    tasks: tuple[str, ...] | None = None  # the tasks that read it (None: every registered one); the others refuse it
    choices: tuple[str, ...] = ()
    only_for: dict = field(default_factory=dict)  # a choice -> the only tasks that may take it ('mlp': forecasting)
    low: float | None = None  # range checks: value >= low (> low when low_open), value <= high (< high when high_open)
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    zero_means_none: bool = False  # on the command line 0 means "none" (no clipping, no time limit)
    resumable: bool = False  # --resume may change it (budgets, where it runs); the rest would change the run
    by_task: dict = field(default_factory=dict)  # task (or 'forecast:recurrent') -> its default there
    aliases: tuple[str, ...] = ()  # more names for the flag: '-o', '--model'
    off_flag: str | None = None  # a bool's negative flag (default --no-NAME)
    argument: bool = False  # given as the command's positional argument, not a flag
    check: Callable[[str, Any], None] | None = None  # a check the fields above cannot express
    parse: Callable[[str], Any] | None = None  # command-line text -> value (lists)


def opt(default: Any, help: str, **meta) -> Any:
    """A run-spec field: its default and its Opt."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"opt": Opt(help, **meta)})
    return field(default=default, metadata={"opt": Opt(help, **meta)})


LM, TR, FC, PN, CL, TG = ("lm",), ("translate",), ("forecast",), ("panel",), ("classify",), ("tag",)
FP, LB = FC + PN, CL + TG


@dataclass
class DataSpec:
    corpus: str | None = opt(None, "Text file, prepared dataset, CSV, '-' for stdin, or a catalog name.", argument=True)
    level: str = opt("char", "Tokens: characters, words, or subwords learnt on the training text (bpe | unigram, "
                     "sentencepiece); translation, classify and tag: words or subwords (tag: each word's first piece "
                     "carries its tag).", tasks=LM + TR + LB,
                     choices=("char", "word", "bpe", "unigram"), by_task={"translate": "word", "classify": "word", "tag": "word"})
    vocab_size: int = opt(4000, "Subword pieces per vocabulary (specials included) for --level bpe | unigram: one per side in "
                          "translation, one for both with --joint-vocab.", tasks=LM + TR + LB, low=0, low_open=True, high=MAX_SIZE,
                          by_task={"translate": 1000})
    clean: str = opt("letters", "letters (lowercase letters, other runs -> one space), lower, or none.", tasks=LM,
                     choices=("letters", "lower", "none"))
    min_freq: int = opt(0, "Rarer tokens become <unk>.", tasks=LM + TR + LB, low=0, high=MAX_SIZE)
    val_fraction: float = opt(0.1, "Held-out part: the corpus's tail (lm) or a share of the source sentences (translate) or of "
                              "the examples (classify, tag; a train/valid/test directory brings its own); "
                              "its first half chooses the checkpoint (validation), the second is reported (test).",
                              tasks=LM + TR + LB, low=0, high=1, high_open=True)
    val_tokens: int | None = opt(131072, "Language model: validation scores this many held-out tokens, a fixed seeded sample of "
                                 "contiguous chunks, the same every epoch (0 = the whole validation part).", tasks=LM, low=0,
                                 low_open=True, high=MAX_SIZE, zero_means_none=True)
    test_tokens: int | None = opt(None, "Language model: the final test scoring reads at most this many tokens (a seeded sample; "
                                  "0 = the whole test part). Unset: the whole part, or with --max-seconds and a sampled validation what "
                                  "fits a quarter of the budget.",
                                  tasks=LM, low=0, high=MAX_SIZE, resumable=True)
    max_len: int | None = opt(None, "Translation: drop pairs with more tokens than this on either side; classify and tag: "
                              "cut longer sequences to this many tokens for training (how many were cut is in the report) "
                              "(0 = no limit).", tasks=TR + LB, low=0, low_open=True, zero_means_none=True,
                              by_task={"classify": 200, "tag": 200})
    steps: int = opt(64, "Tokens per training sequence (num_steps); translation: longest sentence kept.", tasks=LM + TR,
                     low=0, low_open=True, high=MAX_SIZE, by_task={"translate": 16})
    sampling: str = opt("sequential", "sequential (state carried, detached) or random windows.", tasks=LM,
                        choices=("random", "sequential"))
    encoding: str = opt("utf-8", "Text encoding of the input files.", check=check_encoding)
    encoding_errors: str = opt("strict", "Undecodable bytes: strict (an error), replace or ignore.",
                               choices=("strict", "replace", "ignore"))


@dataclass
class ModelSpec:
    cell: str = opt("gru", "rnn | gru | lstm; forecasting also mlp (autoregressive on a window; panel: the whole horizon at once) "
                    "and, for one series, auto: the latent gru where the training part is long enough to train it, else mlp.",
                    choices=(*RECURRENT_CELLS, "mlp", "auto"), only_for={"mlp": FP, "auto": ("forecast",)}, aliases=("--model",),
                    by_task={"forecast": "auto", "panel": "mlp"})
    hidden: int = opt(256, "Hidden units per layer.", low=0, low_open=True, high=MAX_SIZE,
                      by_task={"forecast": 10, "forecast:recurrent": 32, "panel": 256, "panel:recurrent": 64, "classify": 128, "tag": 128})
    layers: int = opt(2, "Recurrent layers (panel mlp: hidden layers).", low=0, low_open=True, high=MAX_SIZE,
                      by_task={"forecast": 1, "panel": 3, "panel:recurrent": 1, "classify": 1, "tag": 1})
    dropout: float = opt(0.1, "Dropout on embeddings, between layers and before the output layer.", low=0, high=1,
                         high_open=True, by_task={"forecast": 0.0, "translate": 0.3, "panel": 0.0, "classify": 0.2, "tag": 0.3})
    embed: int = opt(32, "Embedding size; 0 = one-hot inputs.", tasks=LM + TR + LB, low=0, high=MAX_SIZE,
                     by_task={"translate": 256, "classify": 128, "tag": 100})
    tie_weights: bool = opt(False, "Share embedding and output weights. Language model: needs --embed = --hidden (adaptive: the "
                            "head's words). Translation: the output layer scores a projection of the decoder's output against "
                            "the target embedding; with --joint-vocab the source reads that same embedding.", tasks=LM + TR)
    softmax: str = opt("full", "Language model output: full, or adaptive (torch's adaptive log-softmax; clusters by frequency: "
                       "the words of 80% of the text, then of 95%, then the rest) for large vocabularies.", tasks=LM,
                       choices=("full", "adaptive"))
    bidirectional: bool = opt(False, "Bidirectional encoder (translation, classify, tag; refused where it would see the future).",
                              off_flag="--unidirectional", by_task={"translate": True, "classify": True, "tag": True})
    impl: str = opt("fused", "fused (torch/cuDNN/oneDNN) or scratch (cells from their equations, same parameters).",
                    choices=("fused", "scratch"))
    init: str = opt("default", "Recurrent weight initialisation: default or orthogonal.", choices=("default", "orthogonal"))
    forget_bias: float = opt(1.0, "LSTM forget-gate bias at initialisation.")
    members: int = opt(1, "Networks trained side by side from different initialisations, answering with the mean of their "
                       "probabilities (an ensemble in one run and one checkpoint; training and prediction take members x as long).",
                       tasks=TR + LB, low=0, low_open=True, high=16, by_task={"tag": 2})


@dataclass
class TrainSpec:
    batch: int = opt(64, "Sequences (windows, sentence pairs) per batch; the global batch under DDP.", low=0, low_open=True,
                     high=MAX_SIZE, by_task={"forecast": 16, "panel": 1024, "classify": 32, "tag": 32})
    epochs: int = opt(1000, "Epoch budget.", low=0, low_open=True, resumable=True,
                      by_task={"forecast": 5, "forecast:recurrent": 30, "translate": 15, "panel": 20, "classify": 30, "tag": 100})
    max_seconds: float | None = opt(120.0, "Time budget in seconds (0 = none).", low=0, low_open=True, zero_means_none=True,
                                    resumable=True, by_task={"forecast": None, "panel": None, "tag": 240.0})
    max_tokens: int | None = opt(None, "Token budget (0 = none).", low=0, low_open=True, zero_means_none=True, resumable=True)
    optimizer: str = opt("adam", "sgd | adam | adamw", choices=("sgd", "adam", "adamw"))
    lr: float = opt(4e-3, "Learning rate.", low=0, low_open=True,
                    by_task={"forecast": 0.01, "forecast:recurrent": 0.005, "translate": 0.003, "panel": 0.001, "classify": 0.002, "tag": 0.006})
    weight_decay: float = opt(0.0, "Weight decay.", low=0)
    schedule: str = opt("cosine", "none | cosine (over the budget) | step (x0.1 at 50% and 75%) | plateau (halve when held-out stalls).",
                        choices=("none", "cosine", "step", "plateau"), by_task={"forecast": "none", "forecast:recurrent": "cosine", "panel": "cosine"})
    warmup: int = opt(0, "Linear warm-up steps.", low=0)
    clip: float | None = opt(1.0, "Max gradient L2 norm, direction kept (0 = no clipping).", low=0, low_open=True,
                             zero_means_none=True, by_task={"forecast": None, "forecast:recurrent": 1.0, "panel": None, "panel:recurrent": 1.0})
    truncation: str = opt("fixed", "fixed (truncated BPTT) | random (unbiased random cuts) | full (exact gradient per stream).",
                          tasks=LM, choices=("fixed", "random", "full"))
    unk_rate: float = opt(0.0, "Language model, classify, tag: each occurrence of a word seen once in training reads as <unk> with this "
                          "probability, so the model learns how likely an unseen word is (the vocabulary is unchanged).", tasks=LM + LB,
                          low=0, high=1, by_task={"classify": 0.5, "tag": 0.5})
    patience: int | None = opt(None, "Stop after this many epochs without improvement (0 = never).", low=0, low_open=True,
                               zero_means_none=True, resumable=True)
    seed: int = opt(0, "Seed of initialisation, batches, splits and synthetic data.", low=0, high=MAX_SEED)
    device: str = opt("auto", "auto (CUDA when present) | cpu | cuda", choices=("auto", "cpu", "cuda"), resumable=True)
    threads: int | None = opt(None, "CPU threads for torch, per process (0 = torch's choice).", low=0, low_open=True,
                              high=MAX_THREADS, zero_means_none=True, resumable=True)
    on_nan: str = opt("stop", "Non-finite loss or gradients: stop | skip (the batch) | rollback (last checkpoint, lr halved).",
                      choices=("stop", "skip", "rollback"), resumable=True)
    precision: str = opt("fp32", "fp32 | bf16 | fp16 (autocast; fp16 adds loss scaling).", choices=("fp32", "bf16", "fp16"),
                         resumable=True)
    compile: bool = opt(False, "torch.compile the model for training.", resumable=True)


@dataclass
class OutputSpec:
    out: str | None = opt(None, "Run directory (default: a new one under --runs-root).", aliases=("-o",))
    runs_root: str = opt("runs", "Where new run directories go.")
    overwrite: bool = opt(False, "Replace a non-empty --out directory.")
    log: list = opt([], "Also log each epoch's metrics as tensorboard (event files in RUN/tensorboard) and/or csv "
                    "(RUN/metrics.csv), comma-separated; metrics.jsonl is always written.", resumable=True,
                    check=lambda where, v: check_sinks(where, v), parse=lambda text: [p.strip() for p in text.split(",") if p.strip()])


@dataclass
class ForecastSpec:
    """Forecasting only. The model is model.cell: mlp (autoregressive) or rnn/gru/lstm (latent autoregressive)."""

    synthetic: str | None = opt(None, "sine: x_t = sin(0.01 t) + N(0, noise^2), t = 1..length (instead of a file).", tasks=FC,
                                choices=("sine",))
    length: int = opt(1000, "Length of the synthetic series.", tasks=FC, low=0, low_open=True, high=MAX_SIZE)
    noise: float = opt(0.2, "Noise standard deviation of the synthetic series.", tasks=FC, low=0)
    column: str | None = opt(None, "Value column (name or 1-based position); default: the last numeric one (panel: y).", tasks=FP)
    time_column: str | None = opt(None, "Time column (integer positions or ISO dates); default: the first column when it is not "
                                  "the value column (panel: ds).", tasks=FP)
    id_column: str = opt("unique_id", "Panel: the column naming each row's series (long layout; with --wide, default the first column).",
                         tasks=PN)
    wide: bool = opt(False, "Panel: one row per series, an id then its values (the M4 files' layout).", tasks=PN)
    fill: str = opt("none", "Missing values and missing time steps (a month, week, hour... absent from the time column): none "
                    "(an error; for a single day-spaced series, skipped days are counted in the report and the rows taken "
                    "as consecutive) | ffill | interpolate (either fills them, and the report counts them).", tasks=FP,
                    choices=("none", "ffill", "interpolate"))
    transform: str = opt("auto", "auto (chosen on the training part: none, log or Box-Cox by how the spread grows with the level) "
                         "| none | log | box-cox.", tasks=FC, choices=("auto", "none", "log", "box-cox"))
    difference: str | int = opt("auto", "Model differences: auto (seasonal by STL strength, first by KPSS), 0, or lags such as 12 or 12,1.",
                                tasks=FC)
    tau: int | None = opt(None, "Values the model reads: the AR window (mlp; default season + 1, at least 4) or the latent "
                          "model's context (recurrent; default 64); panel: the window, default max(4 x horizon, 2 x season).",
                          tasks=FP, low=0, low_open=True, high=MAX_SIZE)
    n_train: int | None = opt(None, "Values in the training part (default: 600 for --synthetic, else the first 80%).", tasks=FC,
                              low=0, low_open=True)
    train_horizon: int = opt(1, "Train on own rolled-out predictions this many steps ahead (1 = teacher forcing).", tasks=FC,
                             low=0, low_open=True, by_task={"forecast:recurrent": 16})
    k: list = opt([1, 4, 16, 64], "k-step-ahead evaluations, comma-separated.", tasks=FC, check=_check_positive_ints,
                  parse=parse_int_list)
    season: int | None = opt(None, "Seasonal period (default: from the time column's spacing, kept when the autocorrelation confirms it; "
                             "panel: the M4 frequency of the spacing, 12 monthly, 4 quarterly, 24 hourly, else 1).", tasks=FP,
                             low=0, low_open=True)
    horizon: int = opt(0, "Forecast this many values past the end of the series (panel: required; the model's output length).",
                       tasks=FP, low=0)
    intervals: list = opt([], "Prediction intervals at these levels (%), e.g. 80,95: lo-L/hi-L columns in the forecast CSV "
                          "(seqtool forecast also takes --level).", tasks=FP, aliases=("--level",),
                          check=lambda where, v: _check_levels(where, v), parse=lambda text: parse_int_list(text, "--level"))
    combine: str = opt("auto", "auto: the reported forecast is the network combined with AutoETS, AutoARIMA and AutoTheta, weighted "
                       "per step ahead on validation windows and shrunk toward equal weights (panel: the network or its mean with Theta, "
                       "whichever validates best); none: the network alone.", tasks=FP, choices=("auto", "none"))
    ensemble: int = opt(5, "Networks trained side by side from different initialisations, each on its own errors (forecast with "
                        "--train-horizon > 1: their mean's rolled-out errors): the forecast is their mean (forecast, --model mlp) "
                        "or median (panel).", tasks=FP, low=0, low_open=True, high=MAX_SIZE,
                        by_task={"forecast:recurrent": 1})
    history: int = opt(60, "Panel: training windows end within the last HISTORY x horizon values of each series (0 = anywhere).",
                       tasks=PN, low=0, high=MAX_SIZE)


@dataclass
class TranslateSpec:
    """Translation only."""

    tgt: str | None = opt(None, "Aligned target-side file (line i translates line i of the corpus).", tasks=TR)
    reverse: bool = opt(False, "Swap source and target (French -> English from fra-eng).", tasks=TR)
    attention: str = opt("none", "none (the classic fixed context) | additive (Bahdanau).", tasks=TR, choices=("none", "additive"),
                         by_task={"translate": "additive"})
    joint_vocab: bool = opt(False, "One subword vocabulary learnt on both sides (--level bpe | unigram) instead of one per side.",
                            tasks=TR)
    label_smoothing: float = opt(0.0, "Label smoothing of the training loss.", tasks=TR, low=0, high=1, high_open=True,
                                 by_task={"translate": 0.1})
    beam: int = opt(1, "Beam width of translate/eval and the report; 1 = greedy.", tasks=TR, low=0, low_open=True,
                    by_task={"translate": 5})
    length_penalty: float = opt(0.0, "Beam hypotheses rank by score / length**ALPHA.", tasks=TR, low=0,
                                by_task={"translate": 0.6})


@dataclass
class LabelSpec:
    """Sequence classification (a label per sequence) and tagging (a label per token) only."""

    text_column: str | None = opt(None, "classify: the text column of a CSV with a header (name or 1-based position); "
                                  "default: 'text', else the first.", tasks=CL)
    label_column: str | None = opt(None, "classify: the label column of a CSV (name or 1-based position); default: 'label', "
                                   "else the last. A TSV's label is its last field.", tasks=CL)
    tag_column: str = opt("upos", "tag: the CoNLL-U column holding the tags: upos, xpos, deprel or a 1-based number "
                          "(a two-column CoNLL file's tags are its last column).", tasks=TG)
    pool: str = opt("mean", "classify: how the recurrent outputs become one vector: the last states, their mean, their "
                    "maximum, or attention.", tasks=CL, choices=("last", "mean", "max", "attention"))
    class_weights: str = opt("none", "classify: none, or balanced (each class's loss weighted by n / (classes x its count)).",
                             tasks=CL, choices=("none", "balanced"))
    char_embed: int = opt(0, "A character-level encoding of each word (see --char-encoder) this wide, beside the word's "
                          "embedding, so unseen words still get one (0 = none).", tasks=LB, low=0, high=MAX_SIZE,
                          by_task={"tag": 100})
    char_encoder: str = opt("conv", "The character encoding: conv (a width-3 convolution, maximum over the word) or lstm (a "
                            "bidirectional LSTM over the word's characters).", tasks=LB, choices=("conv", "lstm"), by_task={"tag": "lstm"})
    adversarial: float = opt(0.0, "Adversarial training (Miyato et al. 2017): each batch is also fitted with its token encodings "
                             "moved this far (L2 norm per sequence) in the direction that raises the loss most; a regulariser "
                             "against memorising a small training set (0 = off; a step costs about twice as long).",
                             tasks=LB, low=0, by_task={"classify": 5.0})


@dataclass
class RunSpec:
    task: str = opt("lm", "lm | translate | forecast | panel (many series, one model) | classify (a label per sequence) | tag "
                    "(a label per token) (default: translate for a tab-separated corpus or --tgt, panel for a CSV with an id "
                    "column, tag for CoNLL files, else lm).",
                    check=lambda where, v: _check_task(where, v))
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    forecast: ForecastSpec = field(default_factory=ForecastSpec)
    translate: TranslateSpec = field(default_factory=TranslateSpec)
    label: LabelSpec = field(default_factory=LabelSpec)

    def to_dict(self, only_used: bool = False) -> dict:
        """Nested dicts; `only_used` keeps the options this spec's task reads (what a run saves, so
        that its spec.yaml can be passed to --spec again)."""
        raw = asdict(self)
        if only_used:
            for option in OPTIONS.values():
                if option.section and not option.reads(self.task):
                    raw[option.section].pop(option.name)
            raw = {k: v for k, v in raw.items() if v != {}}
        return raw

    def to_yaml(self, only_used: bool = False) -> str:
        return yaml.safe_dump(self.to_dict(only_used), sort_keys=False)

    def with_absolute_paths(self) -> "RunSpec":
        """A copy whose file and folder paths are absolute, so that a saved spec means the same run
        from any working directory (a catalog name stays a name, '-' stays stdin)."""
        out = copy.deepcopy(self)
        for dotted in ("data.corpus", "translate.tgt", "output.out", "output.runs_root"):
            value = get(out, dotted)
            if value and value != "-" and (dotted.startswith("output.") or Path(value).exists()):
                put(out, dotted, str(Path(value).resolve()))
        return out


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(RunSpec) if f.name != "task"}
#: keys renamed so that every YAML key is its flag; old checkpoints and spec files still use these
LEGACY_KEYS = {"output.dir": "output.out", "translate.target": "translate.tgt", "translate.max_len": "data.max_len",
               "label.members": "model.members"}


@dataclass(frozen=True)
class Option:
    """One option as the rest of the code sees it."""

    dotted: str  # 'train.max_seconds' ('task' for the top-level one)
    section: str | None
    name: str  # also the YAML key
    annotation: Any  # the field's type (str | None, int, list, ...)
    default: Any
    opt: Opt

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def off_flag(self) -> str:
        """A bool's negative flag: --no-NAME unless declared."""
        return self.opt.off_flag or "--no-" + self.flag[2:]

    def reads(self, task: str) -> bool:
        """Whether a run of this task reads the option."""
        return self.opt.tasks is None or task in self.opt.tasks

    @property
    def users(self) -> tuple[str, ...]:
        """The tasks that read it."""
        from seqtool.core.family import family_names

        return family_names() if self.opt.tasks is None else self.opt.tasks

    @property
    def kind(self) -> type:
        """Its value's type without None: str, int, float, bool or list."""
        types_ = [t for t in typing.get_args(self.annotation) or (self.annotation,) if t is not type(None)]
        return typing.get_origin(types_[0]) or types_[0]

    def default_for(self, task: str, cell: str | None) -> Any:
        """The default in a task (and, for forecasting, a model family: 'TASK:recurrent' entries)."""
        table = self.opt.by_task
        value = table.get(task, self.default)
        if cell in RECURRENT_CELLS and f"{task}:recurrent" in table:
            value = table[f"{task}:recurrent"]
        return list(value) if isinstance(value, list) else value


def _options() -> dict[str, Option]:
    hints = typing.get_type_hints(RunSpec)
    out = {"task": Option("task", None, "task", hints["task"], "lm", dataclasses.fields(RunSpec)[0].metadata["opt"])}
    for section, cls in SECTIONS.items():
        section_hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out[f"{section}.{f.name}"] = Option(f"{section}.{f.name}", section, f.name, section_hints[f.name], default, f.metadata["opt"])
    return out


#: every option, by dotted name, in declaration order
OPTIONS: dict[str, Option] = _options()


def options_for(task: str | None = None) -> Iterator[Option]:
    """The options a task reads (all of them for None)."""
    return (o for o in OPTIONS.values() if task is None or o.reads(task))


def get(spec: RunSpec, dotted: str) -> Any:
    option = OPTIONS[dotted]
    return getattr(getattr(spec, option.section), option.name) if option.section else spec.task


def put(spec: RunSpec, dotted: str, value: Any) -> None:
    option = OPTIONS[dotted]
    setattr(getattr(spec, option.section) if option.section else spec, option.name, value)


def spec_defaults(task: str = "lm", cell: str | None = None) -> RunSpec:
    """A RunSpec holding the defaults for a task and, for forecasting, its model family."""
    spec = RunSpec(task=task)
    cell = cell or OPTIONS["model.cell"].default_for(task, None)
    for option in OPTIONS.values():
        if option.section:
            put(spec, option.dotted, option.default_for(task, cell))
    if cell is not None:
        spec.model.cell = cell
    return spec


# ---- types -------------------------------------------------------------------------------------
def _allowed(types_: tuple) -> str:
    return " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in types_}))


def coerce(where: str, value: Any, annotation: Any) -> Any:
    """Check a value against a field's type (str | int | float | bool | None | list)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise UsageError(f"{where}: null is not allowed (expected {_allowed(options)})")
    for t in options:
        origin = typing.get_origin(t) or t
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, list):
            return list(value)
    raise UsageError(f"{where}: expected {_allowed(tuple(typing.get_origin(t) or t for t in options))}, got {value!r}")


# ---- from YAML ---------------------------------------------------------------------------------
def _renamed(raw: dict) -> dict:
    """Old key names (output.dir, translate.target) read as their new ones; the old forecast.log
    switch becomes forecast.transform (log or none)."""
    raw = dict(raw)
    if isinstance(raw.get("forecast"), dict) and isinstance(raw["forecast"].get("log"), bool):
        raw["forecast"] = {("transform" if k == "log" else k): (("log" if v else "none") if k == "log" else v) for k, v in raw["forecast"].items()}
    for old, new in LEGACY_KEYS.items():
        section, key = old.split(".")
        to_section, to_key = new.split(".")
        if isinstance(raw.get(section), dict) and key in raw[section]:
            if to_section == section:
                raw[section] = {(to_key if k == key else k): v for k, v in raw[section].items()}
            elif raw.get(to_section) is None or isinstance(raw[to_section], dict):  # moved to another section
                value = raw[section][key]
                raw[section] = {k: v for k, v in raw[section].items() if k != key}
                raw[to_section] = {**(raw.get(to_section) or {}), to_key: value}
    return raw


def given_keys(raw: Any) -> set[str]:
    """The dotted options a raw spec mapping sets."""
    if not isinstance(raw, dict):
        return set()
    raw = _renamed(raw)
    keys = {"task"} if "task" in raw else set()
    for section in SECTIONS:
        if isinstance(raw.get(section), dict):
            keys |= {f"{section}.{key}" for key in raw[section]}
    return keys


def from_dict(raw: Any, source: str = "spec", task: str | None = None, cell: str | None = None) -> RunSpec:
    """Build a RunSpec from nested dicts, rejecting unknown keys and wrong types by name.

    `task`/`cell` (from flags) pick the defaults when given; else the spec's own task and model.cell do.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: a run spec must be a mapping with sections {', '.join(['task', *SECTIONS])}")
    unknown = set(raw) - {"task", *SECTIONS}
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise UsageError(f"{source}: unknown key '{key}'; allowed: task, {', '.join(SECTIONS)}")
    raw = _renamed(raw)
    raw_task = coerce(f"{source}: task", raw["task"], str) if "task" in raw else None
    raw_model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    raw_cell = raw_model.get("cell") if isinstance(raw_model.get("cell"), str) else None
    spec = spec_defaults(task or raw_task or "lm", cell or raw_cell)
    if raw_task is not None:
        spec.task = raw_task
    for name in SECTIONS:
        section = raw.get(name)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise UsageError(f"{source}: section '{name}' must be a mapping")
        for key, value in section.items():
            option = OPTIONS.get(f"{name}.{key}")
            if option is None:
                allowed = ", ".join(o.name for o in OPTIONS.values() if o.section == name)
                raise UsageError(f"{source}: unknown key '{name}.{key}'; allowed: {allowed}")
            put(spec, option.dotted, coerce(f"{source}: {option.dotted}", value, option.annotation))
    try:
        validate(spec)
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return spec


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 reads `2e-3` (no dot) as a string; a spec means the number, as YAML 1.2 does."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_spec_file(path: str | Path) -> Any:
    """The parsed YAML of a spec file (not yet checked against the options)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UsageError(f"spec file {path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read spec file {path}: {exc}") from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise UsageError(f"{path}: bad YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{path}: bad YAML{where}: {problem}") from None


def load_spec(path: str | Path, task: str | None = None, cell: str | None = None, raw: Any = None) -> RunSpec:
    """Read a YAML spec. Relative corpus/output paths are resolved against the spec's folder.
    `task`/`cell` (from flags) pick the defaults, as in from_dict."""
    path = Path(path)
    raw = read_spec_file(path) if raw is None else raw
    spec = from_dict(raw, source=str(path), task=task, cell=cell)
    _resolve_relative(spec, _renamed(raw) if isinstance(raw, dict) else {}, path.parent)
    return spec


def _resolve_relative(spec: RunSpec, raw: dict, base: Path) -> None:
    """Paths written in a spec are relative to the spec file, not to the working directory."""
    for dotted in ("data.corpus", "translate.tgt"):
        value = get(spec, dotted)
        if value and value != "-" and not Path(value).is_absolute():
            if "/" in value or (base / value).exists():  # otherwise a catalog name
                put(spec, dotted, str((base / value).resolve()))
    written = (raw.get("output") or {}) if isinstance(raw.get("output"), dict) else {}
    for key in ("out", "runs_root"):
        value = getattr(spec.output, key)
        if key in written and value and not Path(value).is_absolute():
            setattr(spec.output, key, str((base / value).resolve()))


# ---- from flags --------------------------------------------------------------------------------
def split_flags(flags: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Flag values by dotted option -> (overrides, options to clear); None means 'not given' and 0
    means 'none' for the optional limits; command-line text of list options is parsed."""
    overrides, clear = {}, set()
    for dotted, value in flags.items():
        if value is None:
            continue
        option = OPTIONS[dotted]
        if option.opt.parse and isinstance(value, str):
            value = option.opt.parse(value)
        if option.opt.zero_means_none and value == 0:
            clear.add(dotted)
        else:
            overrides[dotted] = value
    return overrides, clear


def apply_overrides(spec: RunSpec, overrides: dict[str, Any], clear: set[str] = frozenset()) -> RunSpec:
    """Apply dotted-path overrides ('model.cell': 'lstm'); None values mean 'flag not given'.
    Options in `clear` become None ('--clip 0': no clipping)."""
    for dotted, value in overrides.items():
        if value is not None:
            option = OPTIONS[dotted]
            put(spec, dotted, coerce(option.flag, value, option.annotation))
    for dotted in clear:
        put(spec, dotted, None)
    validate(spec)
    return spec


def refuse_unused(task: str, given: set[str], where: Callable[[str], str]) -> None:
    """An option the task does not read is an error, not a silent no-op."""
    for option in OPTIONS.values():
        if option.dotted in given and not option.reads(task):
            raise UsageError(f"{where(option.dotted)} does not apply to task {task} (it is used by {and_list(option.users)})")


def and_list(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def infer_task(corpus: str | None, target: str | None) -> str:
    """The task a run means when none is named: the first family that claims the data (panels by
    their id column, translation by its tab-separated pairs, ...), else the task option's default."""
    from seqtool.core.family import claimed_task

    return claimed_task(corpus, target) or OPTIONS["task"].default


def resolve_spec(spec_path: str | Path | None, corpus: str | None, flags: dict[str, Any], task: str | None = None,
                 src: str | None = None) -> RunSpec:
    """The spec a command means: defaults (of its task and model) < spec file < flags.

    `flags` maps dotted options to flag values (None: not given). The task is the flag's, else the
    spec file's, else `task`, else inferred from the data. Options the task does not read are refused,
    in the file and on the command line alike. `src` is the source side of a translation (with --tgt).
    """
    if src is not None:
        if corpus is not None:
            raise UsageError("give the corpus either as CORPUS or as --src/--tgt, not both")
        if flags.get("translate.tgt") is None:
            raise UsageError("--src needs --tgt (the aligned target-side file)")
        corpus = src
    overrides, clear = split_flags(flags)
    raw = read_spec_file(spec_path) if spec_path else {}
    raw_task = raw.get("task") if isinstance(raw, dict) else None
    cell = overrides.get("model.cell")
    if corpus is not None:
        overrides["data.corpus"] = corpus
    chosen = overrides.get("task") or (raw_task if isinstance(raw_task, str) else None) or task
    if chosen is None:  # peek at the data the flags or the file name
        probe = load_spec(spec_path, "lm", cell, raw) if spec_path else spec_defaults("lm", cell)
        corpus_of = overrides.get("data.corpus", probe.data.corpus)
        chosen = infer_task(corpus_of, overrides.get("translate.tgt", probe.translate.tgt))
    spec = load_spec(spec_path, chosen, cell, raw) if spec_path else spec_defaults(chosen, cell)
    spec.task = chosen
    apply_overrides(spec, overrides, clear)
    if spec.model.cell == "auto":
        spec = _auto_cell(spec_path, raw, chosen, overrides, clear)
    if spec_path:
        refuse_unused(spec.task, given_keys(raw), lambda dotted: f"{spec_path}: {dotted}")
    refuse_unused(spec.task, set(overrides) | clear, lambda dotted: OPTIONS[dotted].flag)
    return spec


def _auto_cell(spec_path, raw, task: str, overrides: dict[str, Any], clear: set[str]) -> RunSpec:
    """--model auto: the spec as if the first of the family's auto cells whose task builds on this
    data had been named (its defaults, then the file, then the flags); else the last one's."""
    from seqtool.core.family import family

    declared = family(task)
    *preferred, fallback = declared.auto_cells or (OPTIONS["model.cell"].default,)

    def named(cell: str) -> RunSpec:
        spec = load_spec(spec_path, task, cell, raw) if spec_path else spec_defaults(task, cell)
        spec.task = task
        return apply_overrides(spec, {**overrides, "model.cell": cell}, clear)

    for cell in preferred:
        spec = named(cell)
        try:
            declared.hook("task").from_spec(spec)
            return spec
        except SeqtoolError:
            continue  # this cell does not fit the data or the flags: the next one is tried
    return named(fallback)


# ---- values ------------------------------------------------------------------------------------
def _choice(where: str, value: str, options: tuple) -> None:
    if value not in options:
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(options)}")


def _in_range(where: str, value: float, o: Opt) -> None:
    too_low = o.low is not None and (value < o.low or (o.low_open and value == o.low))
    too_high = o.high is not None and (value > o.high or (o.high_open and value == o.high))
    if not (too_low or too_high):
        return
    num = lambda x: f"{x:g}" if isinstance(x, float) and not float(x).is_integer() else str(int(x))  # noqa: E731
    if o.low is not None and o.high is not None and o.high not in (MAX_SIZE, MAX_THREADS):  # a real interval
        raise UsageError(f"{where} must be in {'(' if o.low_open else '['}{num(o.low)}, {num(o.high)}{')' if o.high_open else ']'}, got {value}")
    if too_low:
        raise UsageError(f"{where} must be {'>' if o.low_open else '>='} {num(o.low)}, got {value}")
    raise UsageError(f"{where} must be <= {num(o.high)}, got {value}")


def validate(spec: RunSpec) -> None:
    """Every option's own checks (choices, range, finite, no NUL); tasks check their combinations."""
    for option in OPTIONS.values():
        value, where, o = get(spec, option.dotted), option.dotted, option.opt
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{where} must be a finite number, got {value}")
        if isinstance(value, str) and "\x00" in value:
            raise UsageError(f"{where} must not contain a NUL character")
        if o.choices:
            _choice(where, value, o.choices)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _in_range(where, value, o)
        if o.check is not None:
            o.check(where, value)
        if o.only_for and value in o.only_for and spec.task not in o.only_for[value]:
            others = [c for c in o.choices if c not in o.only_for or spec.task in o.only_for[c]]
            raise UsageError(f"{where} {value!r} is only for {' and '.join(o.only_for[value])}; task {spec.task} takes "
                             f"{', '.join(others[:-1])} or {others[-1]}")


# ---- documentation -----------------------------------------------------------------------------
def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def options_markdown() -> str:
    """The README's option table, made from the declarations (a test keeps the README equal to it)."""
    lines = ["| YAML key | flag | default | tasks | meaning |", "|---|---|---|---|---|"]
    for o in OPTIONS.values():
        flag = "CORPUS (argument)" if o.opt.argument else ", ".join(f"`{n}`" for n in (o.flag, *o.opt.aliases))
        default = f"`{_yaml_value(o.default)}`"
        others = [f"{t}: `{_yaml_value(v)}`" for t, v in o.opt.by_task.items()]
        if others:
            default += " (" + "; ".join(others) + ")"
        tasks = "all" if o.opt.tasks is None else ", ".join(o.opt.tasks)
        meaning = o.opt.help.replace("|", "\\|")
        if o.opt.resumable:
            meaning += " A resume may change it."
        lines.append(f"| `{o.dotted}` | {flag} | {default} | {tasks} | {meaning} |")
    return "\n".join(lines) + "\n"
