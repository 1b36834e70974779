"""Run specs: what a run is, as YAML sections (data, model, train, output) with strict keys.

Precedence: dataclass defaults < spec file < CLI flags. The resolved spec is saved in every run
directory and checkpoint, so a run can always be rebuilt from it.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqtool.core.errors import UsageError

TASKS = ("lm", "translate", "forecast")


@dataclass
class DataSpec:
    corpus: str | None = None  # path, '-' for stdin, or a catalog name
    level: str = "char"  # char | word
    clean: str = "letters"  # letters | lower | none
    min_freq: int = 0
    val_fraction: float = 0.1  # held-out tail of the corpus
    steps: int = 64  # num_steps: tokens per training sequence
    sampling: str = "sequential"  # random | sequential
    encoding: str = "utf-8"
    encoding_errors: str = "strict"  # strict | replace | ignore (undecodable bytes)


@dataclass
class ModelSpec:
    cell: str = "gru"  # rnn | gru | lstm
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    embed: int = 32  # 0 = one-hot inputs
    tie_weights: bool = False
    bidirectional: bool = False
    impl: str = "fused"  # fused | scratch
    init: str = "default"  # default | orthogonal
    forget_bias: float = 1.0  # LSTM forget-gate bias at initialisation


@dataclass
class TrainSpec:
    batch: int = 64
    epochs: int = 1000
    max_seconds: float | None = 120.0
    max_tokens: int | None = None
    optimizer: str = "adam"  # sgd | adam | adamw
    lr: float = 4e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # none | cosine | step | plateau
    warmup: int = 0  # warm-up steps (linear)
    clip: float | None = 1.0  # max gradient L2 norm; null = no clipping
    truncation: str = "fixed"  # fixed | random | full
    patience: int | None = None  # early stop after this many epochs without improvement
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch intra-op threads (default: torch's choice)
    on_nan: str = "stop"  # non-finite loss or gradients: stop | skip (the batch) | rollback (to the last checkpoint, lr halved)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds loss scaling)
    compile: bool = False  # torch.compile the model for training


@dataclass
class OutputSpec:
    dir: str | None = None  # run directory; default: a new one under runs_root
    runs_root: str = "runs"
    overwrite: bool = False


@dataclass
class ForecastSpec:
    """Forecasting only: which numbers to read, how to split them, what to evaluate.
    The model itself is model.cell = mlp (autoregressive) | rnn | gru | lstm (latent autoregressive)."""

    synthetic: str | None = None  # 'sine' instead of data.corpus
    length: int = 1000  # synthetic series length
    noise: float = 0.2  # synthetic noise standard deviation
    column: str | None = None  # value column (name or 1-based position); default: the last numeric one
    time_column: str | None = None  # default: the first column when it is not the value column
    fill: str = "none"  # missing values: none (an error) | ffill | interpolate
    log: bool = False  # model log(x): growing seasonal swings become constant ones (needs positive values)
    difference: int = 0  # model x_t - x_{t-d} (after log): lets the model follow a trend past the training range
    tau: int = 4  # values the model reads: the AR window, or the latent model's context
    n_train: int | None = None  # values in the training part; default 600 (synthetic) or the first 80%
    train_horizon: int = 1  # train on rolled-out predictions this many steps ahead (1 = teacher forcing only)
    k: list = field(default_factory=lambda: [1, 4, 16, 64])  # k-step-ahead evaluations
    season: int | None = None  # seasonal period for MASE and seasonal naive; default 12 for monthly data, else 1
    horizon: int = 0  # forecast this many values past the end of the series


@dataclass
class TranslateSpec:
    """Translation only (task: translate); the other tasks ignore this section."""

    target: str | None = None  # aligned target-side file; data.corpus then holds the source side
    reverse: bool = False  # swap the two sides (French -> English from fra-eng)
    max_len: int | None = None  # drop pairs with more tokens than this on either side
    attention: str = "none"  # none (the classic fixed context) | additive (Bahdanau)
    label_smoothing: float = 0.0
    beam: int = 1  # decoding default of translate/eval: 1 = greedy
    length_penalty: float = 0.0  # beam hypotheses rank by score / length**length_penalty


@dataclass
class RunSpec:
    task: str = "lm"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    forecast: ForecastSpec = field(default_factory=ForecastSpec)
    translate: TranslateSpec = field(default_factory=TranslateSpec)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = {f.name: f.type for f in dataclasses.fields(RunSpec) if f.name != "task"}
_SECTION_CLASSES = {"data": DataSpec, "model": ModelSpec, "train": TrainSpec, "output": OutputSpec, "forecast": ForecastSpec,
                    "translate": TranslateSpec}
RECURRENT_CELLS = ("rnn", "gru", "lstm")

#: Defaults that differ from the dataclass ones, by task and (for forecasting) by model family.
#: Precedence: dataclass defaults < these < spec file < flags.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # the classic autoregressive setting of the course notes: MLP tau 4 -> 10 -> 1, batch 16, Adam 0.01, 5 epochs
    "forecast": {
        "model.cell": "mlp", "model.hidden": 10, "model.layers": 1, "model.dropout": 0.0,
        "train.batch": 16, "train.epochs": 5, "train.lr": 0.01, "train.schedule": "none", "train.clip": None,
        "train.max_seconds": None,
    },
    # latent autoregressive (rnn/gru/lstm): a longer context, more steps, rollout training
    "forecast:recurrent": {
        "model.hidden": 32, "train.epochs": 30, "train.lr": 0.005, "train.schedule": "cosine", "train.clip": 1.0,
        "forecast.tau": 64, "forecast.train_horizon": 16,
    },
    # translation: the design of specs/fra-eng.yaml (word embeddings, bidirectional encoder, additive
    # attention, label smoothing, beam search); specs/fra-eng-classic.yaml spells out the classic one
    "translate": {
        "model.embed": 256, "model.bidirectional": True, "model.dropout": 0.3, "data.steps": 16, "train.epochs": 15, "train.lr": 0.003,
        "translate.attention": "additive", "translate.label_smoothing": 0.1, "translate.beam": 5,
        "translate.length_penalty": 0.6,
    },
}


def spec_defaults(task: str = "lm", cell: str | None = None) -> RunSpec:
    """A RunSpec holding the defaults for a task and, for forecasting, its model family."""
    spec = RunSpec(task=task)
    table = dict(TASK_DEFAULTS.get(task, {}))
    cell = cell or table.get("model.cell")
    if cell in RECURRENT_CELLS:
        table.update(TASK_DEFAULTS.get(f"{task}:recurrent", {}))
    if cell is not None:
        table["model.cell"] = cell
    for dotted, value in table.items():
        section, key = dotted.split(".", 1)
        setattr(getattr(spec, section), key, value)
    return spec


def _allowed(types_: tuple) -> str:
    return " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in types_}))


def _coerce(where: str, value: Any, annotation: str | type) -> Any:
    """Check a value against a field's annotation (str | int | float | bool | None | list)."""
    hint = eval(annotation, {"list": list}) if isinstance(annotation, str) else annotation  # noqa: S307 (our own annotations)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
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
    raw_task = _coerce(f"{source}: task", raw["task"], "str") if "task" in raw else None
    raw_model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    raw_cell = raw_model.get("cell") if isinstance(raw_model.get("cell"), str) else None
    spec = spec_defaults(task or raw_task or "lm", cell or raw_cell)
    if raw_task is not None:
        spec.task = raw_task
    for name, cls in _SECTION_CLASSES.items():
        section = raw.get(name)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise UsageError(f"{source}: section '{name}' must be a mapping")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in section.items():
            if key not in fields:
                raise UsageError(f"{source}: unknown key '{name}.{key}'; allowed: {', '.join(fields)}")
            setattr(getattr(spec, name), key, _coerce(f"{source}: {name}.{key}", value, fields[key].type))
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


def load_spec(path: str | Path, task: str | None = None, cell: str | None = None) -> RunSpec:
    """Read a YAML spec. Relative corpus/output paths are resolved against the spec's folder.
    `task`/`cell` (from flags) pick the defaults, as in from_dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read spec file {path}: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise UsageError(f"{path}: bad YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{path}: bad YAML{where}: {problem}") from None
    spec = from_dict(raw, source=str(path), task=task, cell=cell)
    _resolve_relative(spec, raw or {}, path.parent)
    return spec


def _resolve_relative(spec: RunSpec, raw: dict, base: Path) -> None:
    """Paths written in a spec are relative to the spec file, not to the working directory."""
    corpus = spec.data.corpus
    if corpus and corpus != "-" and not Path(corpus).is_absolute():
        if "/" in corpus or (base / corpus).exists():  # otherwise a catalog name
            spec.data.corpus = str((base / corpus).resolve())
    target = spec.translate.target
    if target and target != "-" and not Path(target).is_absolute() and ("/" in target or (base / target).exists()):
        spec.translate.target = str((base / target).resolve())
    written = (raw.get("output") or {}) if isinstance(raw.get("output"), dict) else {}
    for key in ("dir", "runs_root"):
        value = getattr(spec.output, key)
        if key in written and value and not Path(value).is_absolute():
            setattr(spec.output, key, str((base / value).resolve()))


def apply_overrides(spec: RunSpec, overrides: dict[str, Any]) -> RunSpec:
    """Apply dotted-path overrides ('model.cell': 'lstm'); None values mean 'flag not given'."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        if dotted == "task":
            spec.task = value
            continue
        section, key = dotted.split(".", 1)
        fields = {f.name: f for f in dataclasses.fields(_SECTION_CLASSES[section])}
        setattr(getattr(spec, section), key, _coerce(f"--{key.replace('_', '-')}", value, fields[key].type))
    validate(spec)
    return spec


def clear_fields(spec: RunSpec, dotted: set[str]) -> RunSpec:
    """Set optional fields to None ('--clip 0': no clipping)."""
    for name in dotted:
        section, key = name.split(".", 1)
        setattr(getattr(spec, section), key, None)
    return spec


def check_encoding(where: str, encoding: str) -> None:
    """A text encoding Python knows (refused up front, not after the corpus is read)."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        raise UsageError(f"{where}: unknown encoding {encoding!r} (e.g. utf-8, latin-1, utf-16, cp1252)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"{where}: {encoding!r} is not a text encoding")


def _choice(where: str, value: str, options: tuple) -> None:
    if value not in options:
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(options)}")


#: upper bounds that keep a typo from crashing torch (thread creation) or overflowing a seed
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1
MAX_SIZE = 2**31 - 1  # tensor dimensions beyond this overflow inside torch


def _sane_values(spec: RunSpec) -> None:
    """nan or inf in a numeric field would only show up later as a non-finite loss or a crash; a NUL
    character in a string (a path) as a crash of the OS call that gets it."""
    for section in _SECTION_CLASSES:
        for key, value in vars(getattr(spec, section)).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"{section}.{key} must be a finite number, got {value}")
            if isinstance(value, str) and "\x00" in value:
                raise UsageError(f"{section}.{key} must not contain a NUL character")


def _positive(where: str, value, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"{where} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(spec: RunSpec) -> None:
    """Value checks shared by every task; tasks check their own combinations."""
    _choice("task", spec.task, TASKS)
    _sane_values(spec)
    d, m, t = spec.data, spec.model, spec.train
    _choice("data.level", d.level, ("char", "word"))
    _choice("data.clean", d.clean, ("letters", "lower", "none"))
    _choice("data.sampling", d.sampling, ("random", "sequential"))
    _choice("data.encoding_errors", d.encoding_errors, ("strict", "replace", "ignore"))
    check_encoding("data.encoding", d.encoding)
    _positive("data.steps", d.steps)
    _positive("data.min_freq", d.min_freq, allow_zero=True)
    if not 0.0 <= d.val_fraction < 1.0:
        raise UsageError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    _choice("model.cell", m.cell, (*RECURRENT_CELLS, "mlp"))
    if m.cell == "mlp" and spec.task != "forecast":
        raise UsageError(f"model.cell 'mlp' is only for forecasting; task {spec.task} needs rnn, gru or lstm")
    _choice("model.impl", m.impl, ("fused", "scratch"))
    _choice("model.init", m.init, ("default", "orthogonal"))
    _positive("model.hidden", m.hidden)
    _positive("model.layers", m.layers)
    _positive("model.embed", m.embed, allow_zero=True)
    if not 0.0 <= m.dropout < 1.0:
        raise UsageError(f"model.dropout must be in [0, 1), got {m.dropout}")
    _choice("train.optimizer", t.optimizer, ("sgd", "adam", "adamw"))
    _choice("train.schedule", t.schedule, ("none", "cosine", "step", "plateau"))
    _choice("train.truncation", t.truncation, ("fixed", "random", "full"))
    _choice("train.device", t.device, ("auto", "cpu", "cuda"))
    _choice("train.on_nan", t.on_nan, ("stop", "skip", "rollback"))
    _choice("train.precision", t.precision, ("fp32", "bf16", "fp16"))
    _positive("train.batch", t.batch)
    _positive("train.epochs", t.epochs)
    _positive("train.lr", t.lr)
    _positive("train.max_seconds", t.max_seconds)
    _positive("train.max_tokens", t.max_tokens)
    _positive("train.clip", t.clip)
    _positive("train.threads", t.threads)
    for where, value in (("data.steps", d.steps), ("data.min_freq", d.min_freq), ("model.hidden", m.hidden), ("model.layers", m.layers),
                         ("model.embed", m.embed), ("train.batch", t.batch)):
        if value > MAX_SIZE:
            raise UsageError(f"{where} must be <= {MAX_SIZE}, got {value}")
    if t.threads is not None and t.threads > MAX_THREADS:
        raise UsageError(f"train.threads must be <= {MAX_THREADS}, got {t.threads}")
    if not 0 <= t.seed <= MAX_SEED:
        raise UsageError(f"train.seed must be in [0, {MAX_SEED}], got {t.seed}")
    _positive("train.patience", t.patience)
    _positive("train.warmup", t.warmup, allow_zero=True)
    _positive("train.weight_decay", t.weight_decay, allow_zero=True)
    _validate_forecast(spec.forecast)
    _validate_translate(spec.translate)


def _validate_forecast(f: ForecastSpec) -> None:
    if f.synthetic is not None:
        _choice("forecast.synthetic", f.synthetic, ("sine",))
    _choice("forecast.fill", f.fill, ("none", "ffill", "interpolate"))
    _positive("forecast.length", f.length)
    _positive("forecast.noise", f.noise, allow_zero=True)
    _positive("forecast.difference", f.difference, allow_zero=True)
    _positive("forecast.tau", f.tau)
    _positive("forecast.n_train", f.n_train)
    _positive("forecast.train_horizon", f.train_horizon)
    _positive("forecast.season", f.season)
    _positive("forecast.horizon", f.horizon, allow_zero=True)
    if not f.k or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in f.k):
        raise UsageError(f"forecast.k must be a non-empty list of positive integers, got {f.k!r}")


def _validate_translate(tr: TranslateSpec) -> None:
    _choice("translate.attention", tr.attention, ("none", "additive"))
    _positive("translate.max_len", tr.max_len)
    _positive("translate.beam", tr.beam)
    _positive("translate.length_penalty", tr.length_penalty, allow_zero=True)
    if not 0.0 <= tr.label_smoothing < 1.0:
        raise UsageError(f"translate.label_smoothing must be in [0, 1), got {tr.label_smoothing}")
