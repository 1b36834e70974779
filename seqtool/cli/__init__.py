"""The `seqtool` command line. It parses and validates, calls library functions, and turns every
SeqtoolError into one line on stderr and a non-zero exit (2 usage, 1 data/runtime)."""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

try:  # typer >= 0.2x vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer depends on click itself
    from click.exceptions import ClickException

from seqtool.core.errors import SeqtoolError, UsageError

app = typer.Typer(
    name="seqtool",
    help="Recurrent sequence modeling: language models, forecasting and translation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_COMMAND_LINE: list[str] = []
_DEBUG: list[bool] = [False]


def command_line() -> str:
    """The command as the user typed it (a torchrun worker started by --nproc gets it from its parent)."""
    return os.environ.get("SEQTOOL_COMMAND") or "seqtool " + " ".join(shlex.quote(a) for a in _COMMAND_LINE)


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise); only rank 0 talks to the user."""
    from seqtool.core.distributed import env_rank

    return env_rank()


def has_surrogates(text: str) -> bool:
    """Undecodable bytes in argv arrive as lone surrogates, which cannot be printed or encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def one_line(message: object) -> str:
    """An error message as exactly one line (a file name or YAML snippet may hold newlines)."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


def out_stream(path: str):
    """'-' is stdout; anything else a file opened for writing."""
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise SeqtoolError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextmanager
def resumable(trainer):
    """A Ctrl-C the trainer does not turn into a checkpoint itself (a second one, or one while the
    report is written) still ends with one line saying how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        from seqtool.core.trainer import Interrupted

        raise Interrupted(f"interrupted; the last checkpoint is intact; resume with: seqtool train --resume {trainer.run.path}",
                          exit_code=130) from None


# ---- shared options ---------------------------------------------------------------------------
SpecOpt = typer.Option(None, "--spec", help="YAML run spec; flags override its fields.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress display.")

#: train flag -> run-spec field
TRAIN_FLAGS = {
    "task": "task",
    "level": "data.level", "clean": "data.clean", "min_freq": "data.min_freq", "val_fraction": "data.val_fraction",
    "steps": "data.steps", "sampling": "data.sampling", "encoding": "data.encoding", "encoding_errors": "data.encoding_errors",
    "cell": "model.cell", "hidden": "model.hidden", "layers": "model.layers", "dropout": "model.dropout",
    "embed": "model.embed", "tie_weights": "model.tie_weights", "bidirectional": "model.bidirectional",
    "impl": "model.impl", "init": "model.init", "forget_bias": "model.forget_bias",
    "batch": "train.batch", "epochs": "train.epochs", "max_seconds": "train.max_seconds", "max_tokens": "train.max_tokens",
    "optimizer": "train.optimizer", "lr": "train.lr", "weight_decay": "train.weight_decay", "schedule": "train.schedule",
    "warmup": "train.warmup", "clip": "train.clip", "truncation": "train.truncation", "patience": "train.patience",
    "seed": "train.seed", "device": "train.device", "threads": "train.threads", "on_nan": "train.on_nan",
    "precision": "train.precision", "compile": "train.compile",
    "out": "output.dir", "overwrite": "output.overwrite",
    "tgt": "translate.target", "reverse": "translate.reverse", "max_len": "translate.max_len",
    "attention": "translate.attention", "label_smoothing": "translate.label_smoothing",
}
#: flags whose value 0 means "none" (no clipping, no time limit, ...)
ZERO_MEANS_NONE = {"train.clip", "train.max_seconds", "train.max_tokens", "train.patience", "train.threads", "translate.max_len"}


def split_flags(flags: dict, table: dict = TRAIN_FLAGS) -> tuple[dict, set]:
    """Flags -> (spec overrides, fields to clear); 0 means 'none' for the optional limits."""
    overrides = {table[k]: v for k, v in flags.items() if k in table and v is not None}
    clear = {k for k, v in overrides.items() if k in ZERO_MEANS_NONE and v == 0}
    return {k: v for k, v in overrides.items() if k not in clear}, clear


def build_spec(spec_path: Optional[Path], corpus: Optional[str], flags: dict, table: dict = TRAIN_FLAGS):
    """Defaults (of the task and model the flags or the spec name) < spec file < flags."""
    from seqtool.core.spec import apply_overrides, clear_fields, load_spec, spec_defaults

    overrides, clear = split_flags(flags, table)
    task, cell = overrides.get("task"), overrides.get("model.cell")
    spec = load_spec(spec_path, task, cell) if spec_path else spec_defaults(task or "lm", cell)
    if corpus is not None:
        overrides["data.corpus"] = corpus
    apply_overrides(spec, overrides)
    clear_fields(spec, clear)
    return spec


# ---- preprocess --------------------------------------------------------------------------------
@app.command()
def preprocess(
    corpus: str = typer.Argument(..., help="Text file, '-' for stdin, or a catalog name (e.g. timemachine)."),
    level: str = typer.Option("char", help="char | word"),
    clean: str = typer.Option("letters", help="letters | lower | none"),
    min_freq: int = typer.Option(0, help="Tokens rarer than this become <unk>."),
    reserved: str = typer.Option("", help="Extra reserved tokens, comma-separated: <pad>,<bos>,<eos>."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write the prepared dataset (vocabulary + ids) here."),
    plot: Optional[str] = typer.Option(None, help="Write a Zipf plot (PNG) of 1/2/3-gram frequencies."),
    top: int = typer.Option(10, help="How many top n-grams to list."),
    as_json: bool = typer.Option(False, "--json", help="Statistics as JSON."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the corpus."),
    encoding_errors: str = typer.Option("strict", help="strict | replace | ignore"),
):
    """Tokenise a corpus, build its vocabulary, print statistics (tokens, types, top n-grams)."""
    from seqtool.data.corpora import read_text
    from seqtool.data.dataset import ngram_table, prepare_text
    from seqtool.core.spec import _choice
    from seqtool.data.text import BOS, EOS, PAD

    _choice("--level", level, ("char", "word"))
    _choice("--clean", clean, ("letters", "lower", "none"))
    if min_freq < 0 or top < 1:
        raise UsageError("--min-freq must be >= 0 and --top >= 1")
    extra = tuple(dict.fromkeys(t.strip() for t in reserved.split(",") if t.strip()))
    unknown = [t for t in extra if t not in (PAD, BOS, EOS)]
    if unknown:
        raise UsageError(f"--reserved: unknown token {unknown[0]!r}; allowed: {PAD}, {BOS}, {EOS}")
    text = read_text(corpus, encoding, encoding_errors)
    data = prepare_text(text, level, clean, min_freq, reserved=extra)
    tokens = data.tokens()
    stats = {
        "corpus": corpus, "level": level, "clean": clean, "tokens": len(tokens), "types": len(data.vocab),
        "unk_tokens": int((data.ids == 0).sum()),
        "unigrams": ngram_table(tokens, 1, top, level), "bigrams": ngram_table(tokens, 2, top, level),
        "trigrams": ngram_table(tokens, 3, top, level),
    }
    if out:
        data.save(out)
        stats["out"] = out
    if plot:
        from seqtool.core.report import zipf_plot

        zipf_plot(tokens, Path(plot), level)
        stats["plot"] = plot
    if as_json:
        print(json.dumps(stats))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, highlight=False)
    console.print(f"{corpus}: {stats['tokens']:,} tokens, {stats['types']:,} types ({level}-level, clean={clean}, min_freq={min_freq})")
    table = Table(show_header=True)
    for n, key in ((1, "unigrams"), (2, "bigrams"), (3, "trigrams")):
        table.add_column(f"top {key}")
        table.add_column("count", justify="right")
    for i in range(max(len(stats[key]) for key in ("unigrams", "bigrams", "trigrams"))):  # not range(top): --top 10**9
        cells = []
        for key in ("unigrams", "bigrams", "trigrams"):
            rows = stats[key]
            cells += [repr(rows[i][0]), str(rows[i][1])] if i < len(rows) else ["", ""]
        table.add_row(*cells)
    console.print(table)
    if out:
        console.print(f"wrote {out}")


# ---- train -------------------------------------------------------------------------------------
@app.command()
def train(
    corpus: Optional[str] = typer.Argument(None, help="Text file, prepared dataset, '-' for stdin, or a catalog name."),
    spec_path: Optional[Path] = SpecOpt,
    task: Optional[str] = typer.Option(None, help="lm | translate (default: translate for a tab-separated corpus or --src/--tgt, else lm)."),
    level: Optional[str] = typer.Option(None, help="char | word"),
    clean: Optional[str] = typer.Option(None, help="letters | lower | none"),
    min_freq: Optional[int] = typer.Option(None),
    val_fraction: Optional[float] = typer.Option(None, help="Held-out tail of the corpus."),
    steps: Optional[int] = typer.Option(None, help="Tokens per training sequence (num_steps)."),
    sampling: Optional[str] = typer.Option(None, help="random | sequential"),
    encoding: Optional[str] = typer.Option(None),
    encoding_errors: Optional[str] = typer.Option(None, help="strict | replace | ignore"),
    cell: Optional[str] = typer.Option(None, help="rnn | gru | lstm"),
    hidden: Optional[int] = typer.Option(None),
    layers: Optional[int] = typer.Option(None),
    dropout: Optional[float] = typer.Option(None),
    embed: Optional[int] = typer.Option(None, help="Embedding size; 0 = one-hot inputs."),
    tie_weights: Optional[bool] = typer.Option(None, "--tie-weights/--no-tie-weights"),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--unidirectional"),
    impl: Optional[str] = typer.Option(None, help="fused | scratch"),
    init: Optional[str] = typer.Option(None, help="default | orthogonal"),
    forget_bias: Optional[float] = typer.Option(None),
    batch: Optional[int] = typer.Option(None),
    epochs: Optional[int] = typer.Option(None),
    max_seconds: Optional[float] = typer.Option(None, help="Time budget (0 = none)."),
    max_tokens: Optional[int] = typer.Option(None, help="Token budget (0 = none)."),
    optimizer: Optional[str] = typer.Option(None, help="sgd | adam | adamw"),
    lr: Optional[float] = typer.Option(None),
    weight_decay: Optional[float] = typer.Option(None),
    schedule: Optional[str] = typer.Option(None, help="none | cosine | step | plateau"),
    warmup: Optional[int] = typer.Option(None, help="Linear warm-up steps."),
    clip: Optional[float] = typer.Option(None, help="Max gradient norm (0 = no clipping)."),
    truncation: Optional[str] = typer.Option(None, help="fixed | random | full"),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without improvement."),
    seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (per process)."),
    on_nan: Optional[str] = typer.Option(None, help="Non-finite loss or gradients: stop | skip (the batch) | rollback (last checkpoint, lr halved)."),
    precision: Optional[str] = typer.Option(None, help="fp32 | bf16 | fp16: mixed precision (autocast; fp16 adds loss scaling)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model for training."),
    nproc: Optional[int] = typer.Option(None, help="Train in N processes on this machine with DDP (starts torchrun; --batch is the global batch)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default: a new one under runs/)."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="Replace a non-empty --out directory."),
    resume: Optional[str] = typer.Option(None, help="Continue the run in this directory from its last checkpoint."),
    src: Optional[str] = typer.Option(None, "--src", help="translate: source-side file aligned with --tgt (instead of CORPUS)."),
    tgt: Optional[str] = typer.Option(None, "--tgt", help="translate: target-side file, line i translating line i of --src."),
    reverse: Optional[bool] = typer.Option(None, "--reverse/--no-reverse", help="translate: swap source and target."),
    max_len: Optional[int] = typer.Option(None, help="translate: drop pairs with more tokens on either side."),
    attention: Optional[str] = typer.Option(None, help="translate: none | additive"),
    label_smoothing: Optional[float] = typer.Option(None, help="translate: label smoothing of the loss."),
    quiet: bool = QuietOpt,
):
    """Train a model; writes a run directory (checkpoints, metrics.jsonl, report.{json,md,png})."""
    from seqtool.core.progress import Reporter
    from seqtool.core.trainer import resume_run, start_run

    flags = {k: v for k, v in locals().items() if k in TRAIN_FLAGS}
    if src is not None:
        if corpus is not None:
            raise UsageError("give the corpus either as CORPUS or as --src/--tgt, not both")
        if tgt is None:
            raise UsageError("--src needs --tgt (the aligned target-side file)")
        corpus = src
    if nproc is not None and nproc != 1:
        raise SystemExit(_launch(nproc, spec_path, corpus, flags, resume))  # the workers have said what there was to say
    main_rank = _rank() == 0
    reporter = Reporter(quiet=quiet or not main_rank)
    if resume:
        if spec_path:
            raise UsageError("--resume takes the spec saved in the run; do not pass --spec")
        overrides, clear = split_flags(flags)
        trainer = resume_run(resume, overrides, clear, reporter=reporter, command=command_line(), corpus=corpus)
    else:
        spec = build_spec(spec_path, corpus, flags)
        if task is None and not _spec_names_task(spec_path) and _looks_like_translation(spec):
            spec = build_spec(spec_path, corpus, {**flags, "task": "translate"})  # with translation's defaults
        trainer = start_run(spec, reporter=reporter, command=command_line())
    if not main_rank:  # [ddp] the other ranks train and stay silent
        trainer.fit()
        return
    if not quiet:
        err(f"run directory: {trainer.run.path}")
    with resumable(trainer):
        summary = trainer.fit()
    best = summary["best"].get(trainer.task.monitor)
    if not quiet:
        err(f"done: {summary['epochs']} epochs, {summary['wall_seconds']:.0f} s; best {trainer.task.monitor} {best:.4f} (epoch {summary['best']['epoch']})"
            if best is not None else "done")
    print(trainer.run.path)


def _launch(nproc: int, spec_path: Optional[Path], corpus: Optional[str], flags: dict, resume: Optional[str]) -> int:
    """`train --nproc N`: check what can be checked here, then run the same command under torchrun."""
    from seqtool.core.device import pick_device
    from seqtool.core.distributed import env_world_size, launch, strip_nproc
    from seqtool.core.run import RunDir

    if nproc < 1:
        raise UsageError("--nproc must be >= 1")
    if env_world_size() > 1 or "LOCAL_RANK" in os.environ:
        raise UsageError("--nproc starts torchrun; this process is already one of torchrun's workers")
    if resume:
        if spec_path:
            raise UsageError("--resume takes the spec saved in the run; do not pass --spec")
        RunDir.open(resume).release()  # a clear error now if it is no run (or one in use)
    else:
        spec = build_spec(spec_path, corpus, flags)
        if spec.data.corpus == "-":
            raise UsageError("several processes cannot share standard input: save the corpus to a file and pass its path")
        pick_device(spec.train.device)  # --device cuda without one: say so here, once
        if spec.train.batch % nproc:
            raise UsageError(f"--batch {spec.train.batch} is the global batch, split evenly across processes: it must be a multiple of --nproc {nproc}")
    args = _COMMAND_LINE[_COMMAND_LINE.index("train") + 1 :]
    return launch(nproc, strip_nproc(args) + (["--debug"] if _DEBUG[0] else []), command_line())


def _spec_names_task(spec_path: Optional[Path]) -> bool:
    import yaml

    if spec_path is None:
        return False
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))  # already validated by build_spec
    return isinstance(raw, dict) and "task" in raw


def _looks_like_translation(spec) -> bool:
    from seqtool.translate.task import looks_like_pairs

    return spec.translate.target is not None or looks_like_pairs(spec.data.corpus)


# ---- sample ------------------------------------------------------------------------------------
@app.command()
def sample(
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint or run directory (default: latest run)."),
    prefix: str = typer.Option("", help="Text to start from; normalised like the training text."),
    length: int = typer.Option(200, help="Tokens to generate after the prefix."),
    temperature: float = typer.Option(1.0),
    top_k: Optional[int] = typer.Option(None),
    top_p: Optional[float] = typer.Option(None),
    greedy: bool = typer.Option(False, help="Always take the most likely token."),
    num: int = typer.Option(1, help="Number of samples."),
    seed: Optional[int] = typer.Option(None, help="Seed for reproducible samples."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """Generate text from a language model, one sample per line on stdout."""
    from seqtool.core.restore import restore

    if length < 0 or num < 1:
        raise UsageError("--length must be >= 0 and --num >= 1")
    if not math.isfinite(temperature) or temperature <= 0:
        raise UsageError("--temperature must be a finite number > 0 (use --greedy for the most likely token)")
    if seed is not None and not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2**63), got {seed}")
    if has_surrogates(prefix):
        raise UsageError("--prefix has bytes that are not valid text in this locale's encoding")
    if top_k is not None and top_k < 1:
        raise UsageError("--top-k must be >= 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    r = restore(checkpoint, task="lm", device=device)
    ids, unknown = r.task.encode_prefix(prefix)
    if unknown:
        err(f"warning: the prefix has tokens the model never saw ({', '.join(map(repr, unknown[:5]))}); they are read as <unk>")
    if prefix and not ids:
        err("warning: the prefix is empty after normalisation; starting from a random token")
    if num == 1 and not as_json:  # stream the text as it is generated

        def write(piece: str) -> None:
            sys.stdout.write(piece.replace("\n", " "))
            sys.stdout.flush()

        r.task.generate(r.model, prefix, length, seed=seed, device=r.device, on_text=write,
                        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)
        sys.stdout.write("\n")
        return
    texts = r.task.generate(r.model, prefix, length, num=num, seed=seed, device=r.device,
                            greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)
    for i, text in enumerate(texts):
        if as_json:
            print(json.dumps({"index": i, "prefix": prefix, "text": text}))
        else:
            print(text.replace("\n", " "))


# ---- translate ---------------------------------------------------------------------------------
@app.command("translate")
def translate_command(
    sentences: Optional[list[str]] = typer.Argument(None, help="Sentences to translate; none: read standard input line by line."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint or run directory (default: latest run)."),
    beam: Optional[int] = typer.Option(None, help="Beam width; 1 = greedy (default: the run's translate.beam)."),
    length_penalty: Optional[float] = typer.Option(None, help="Rank beam hypotheses by score / length**ALPHA (default: the run's)."),
    nbest: int = typer.Option(1, help="Hypotheses per sentence (tab-separated; needs --beam >= N)."),
    max_len: Optional[int] = typer.Option(None, help="Most tokens to generate (default: the run's data.steps)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input line: source, hypotheses, scores."),
    attention_out: bool = typer.Option(False, "--attention-out", help="With --json: add each hypothesis' attention weights."),
    tokenized: bool = typer.Option(False, "--tokenized", help="Print tokens separated by spaces instead of detokenised text."),
    batch: int = typer.Option(64, help="Sentences decoded together."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """Translate sentences with a trained translation run: one output line per input line."""
    from seqtool.core.restore import restore
    from seqtool.translate.translator import decoding_for, translate_records

    if attention_out and not as_json:
        raise UsageError("--attention-out adds the weights to the JSON output: use it with --json")
    if batch < 1:
        raise UsageError("--batch must be >= 1")
    r = restore(checkpoint, task="translate", device=device)
    decoding = decoding_for(r, beam, length_penalty, nbest, max_len)

    def emit(lines: list[str]) -> None:
        for record in translate_records(r, lines, decoding, tokenized=tokenized, attention=attention_out, batch=batch):
            if as_json:
                print(json.dumps(record, ensure_ascii=False))
            else:
                print("\t".join(t["text"] for t in record["translations"]))
        sys.stdout.flush()

    if sentences:
        emit([s.replace("\n", " ") for s in sentences])
        return
    interactive = sys.stdin.isatty()
    chunk: list[str] = []
    for line in sys.stdin:
        chunk.append(line.rstrip("\r\n"))
        if interactive or len(chunk) >= 16 * batch:
            emit(chunk)
            chunk = []
    if chunk:
        emit(chunk)


# ---- eval --------------------------------------------------------------------------------------
@app.command("eval")
def evaluate(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint file, run directory, or 'latest'."),
    data: Optional[str] = typer.Argument(None, help="Text to score ('-' for stdin); default: the run's held-out split."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    per_token: Optional[str] = typer.Option(None, help="Write each token's surprisal (TSV) here; '-' for stdout."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    grad_flow: Optional[list[str]] = typer.Option(
        None, "--grad-flow", metavar="CHECKPOINT",
        help="Instead of perplexity: how far back the gradient reaches, |d loss_T / d h_t| for t = T..1, and the "
        "recurrent weights' largest singular values, for this checkpoint (repeatable; CHECKPOINT, if given, comes first).",
    ),
    flow_steps: int = typer.Option(50, help="--grad-flow: sequence length T."),
    flow_batch: int = typer.Option(16, help="--grad-flow: sequences averaged over."),
    flow_plot: str = typer.Option("grad-flow.png", help="--grad-flow: the PNG to write (one line per checkpoint)."),
    tgt: Optional[str] = typer.Option(None, "--tgt", help="translate: target-side file aligned with DATA."),
    beam: Optional[int] = typer.Option(None, help="translate: beam width, 1 = greedy (default: the run's)."),
    length_penalty: Optional[float] = typer.Option(None, help="translate: score / length**ALPHA (default: the run's)."),
    max_len: Optional[int] = typer.Option(None, help="translate: most tokens to generate."),
    sentence_bleu: bool = typer.Option(False, "--sentence-bleu", help="translate: also the classic per-sentence BLEU (k=2)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="translate: write eval.json and eval.md into this directory."),
):
    """Perplexity of a language model on a text; BLEU and chrF of a translation model on pairs."""
    from seqtool.lm.evaluate import evaluate_lm
    from seqtool.core.restore import checkpoint_task

    if grad_flow:
        _eval_grad_flow([checkpoint] + grad_flow if checkpoint else grad_flow, data, flow_steps, flow_batch, flow_plot, as_json, device)
        return
    if checkpoint is None:
        raise UsageError("missing CHECKPOINT (a checkpoint file, run directory, or 'latest')")
    translation_flags = [f for f, v in (("--tgt", tgt), ("--beam", beam), ("--length-penalty", length_penalty),
                                        ("--max-len", max_len), ("--sentence-bleu", sentence_bleu or None), ("--out", out)) if v is not None]
    if checkpoint_task(None if checkpoint == "latest" else checkpoint) == "translate":
        if per_token:
            raise UsageError("--per-token is for language models")
        _evaluate_translation(checkpoint, data, tgt, beam, length_penalty, max_len, sentence_bleu, out, as_json, device)
        return
    if translation_flags:
        raise UsageError(f"{translation_flags[0]} is for translation runs; this is a language model")

    result, rows = evaluate_lm(None if checkpoint == "latest" else checkpoint, data, device=device, per_token=per_token is not None)
    if per_token:
        fh = out_stream(per_token)
        fh.write("position\ttoken\tsurprisal_nats\tsurprisal_bits\n")
        for i, token, nats in rows:
            fh.write(f"{i}\t{json.dumps(token)[1:-1]}\t{nats:.6f}\t{nats / math.log(2):.6f}\n")
        if fh is not sys.stdout:
            fh.close()
    if as_json:
        print(json.dumps(result))
    elif per_token != "-":
        print(f"{result['source']}: perplexity {result['perplexity']:.4f}  cross-entropy {result['cross_entropy_nats']:.4f} nats "
              f"({result['bits_per_token']:.4f} bits) per token over {result['tokens']:,} tokens")


def _eval_grad_flow(checkpoints: list[str], data: Optional[str], steps: int, batch: int, plot: str, as_json: bool, device: str) -> None:
    from seqtool.lm.diagnostics import checkpoint_grad_flow, format_grad_flow_table, format_singular_values, plot_grad_flow

    if steps < 1 or batch < 1:
        raise UsageError("--flow-steps and --flow-batch must be at least 1")
    if data == "-" and len(checkpoints) > 1:
        raise UsageError("standard input can be read for one checkpoint only; pass DATA as a file")
    models = [checkpoint_grad_flow(None if c == "latest" else c, data, steps, batch, device) for c in checkpoints]
    curves = {m.label: m.flow for m in models}
    plot_grad_flow(curves, plot, title=f"How far back the gradient reaches (T = {steps})")
    if as_json:
        print(json.dumps({"steps": steps, "batch": batch, "plot": plot, "models": [m.to_dict() for m in models]}))
        return
    print(f"|d loss_T / d h_t| (last layer, mean over {batch} sequences of {steps} steps; loss at step T only)")
    print(format_grad_flow_table(curves))
    print()
    print("largest singular value of the recurrent weights")
    print(format_singular_values({m.label: m.singular_values for m in models}))
    print(f"wrote {plot}")


def _evaluate_translation(checkpoint, data, tgt, beam, length_penalty, max_len, sentence_bleu, out, as_json, device):
    from seqtool.core.restore import restore
    from seqtool.core.run import atomic_write_text
    from seqtool.translate.translator import decoding_for, evaluate_translation, markdown_report

    r = restore(None if checkpoint == "latest" else checkpoint, task="translate", device=device)
    result = evaluate_translation(r, data, tgt, decoding_for(r, beam, length_penalty, 1, max_len), sentence_bleu=sentence_bleu)
    report = markdown_report(result)
    if out:
        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SeqtoolError(f"cannot create {folder}: {exc.strerror or exc}") from None
        atomic_write_text(folder / "eval.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(folder / "eval.md", report)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(report, end="")


# ---- forecast ----------------------------------------------------------------------------------
#: forecast flag -> run-spec field
FORECAST_FLAGS = {
    "task": "task",
    "column": "forecast.column", "time_column": "forecast.time_column", "fill": "forecast.fill",
    "synthetic": "forecast.synthetic", "length": "forecast.length", "noise": "forecast.noise",
    "log": "forecast.log", "difference": "forecast.difference",
    "tau": "forecast.tau", "n_train": "forecast.n_train", "train_horizon": "forecast.train_horizon",
    "k": "forecast.k", "season": "forecast.season", "horizon": "forecast.horizon",
    "model": "model.cell", "hidden": "model.hidden", "layers": "model.layers", "dropout": "model.dropout",
    "bidirectional": "model.bidirectional",
    "batch": "train.batch", "epochs": "train.epochs", "lr": "train.lr", "max_seconds": "train.max_seconds",
    "seed": "train.seed", "device": "train.device", "threads": "train.threads", "on_nan": "train.on_nan",
    "out": "output.dir", "overwrite": "output.overwrite",
}


def parse_ks(text: str) -> list[int]:
    """'1,4,16,64' -> [1, 4, 16, 64]."""
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ks = []
    if not ks or any(k < 1 for k in ks):
        raise UsageError(f"--k: expected comma-separated positive integers such as 1,4,16,64, got {text!r}")
    return ks


@app.command()
def forecast(
    data: Optional[str] = typer.Argument(None, help="CSV or one-number-per-line file, '-' for stdin, or a catalog name (airline-passengers)."),
    spec_path: Optional[Path] = SpecOpt,
    column: Optional[str] = typer.Option(None, help="Value column (name or 1-based position); default: the last numeric one."),
    time_column: Optional[str] = typer.Option(None, help="Time column; default: the first column if it is not the value column."),
    fill: Optional[str] = typer.Option(None, help="Missing values: none (an error) | ffill | interpolate."),
    synthetic: Optional[str] = typer.Option(None, help="sine: x_t = sin(0.01 t) + N(0, noise^2), t = 1..length."),
    length: Optional[int] = typer.Option(None, help="Length of the synthetic series (1000)."),
    noise: Optional[float] = typer.Option(None, help="Noise standard deviation of the synthetic series (0.2)."),
    log: Optional[bool] = typer.Option(None, "--log/--no-log", help="Model log(x) (positive data with growing swings)."),
    difference: Optional[int] = typer.Option(None, help="Model x_t - x_{t-d}, e.g. 1 or the season (follows trends)."),
    model: Optional[str] = typer.Option(None, help="mlp (autoregressive) | rnn | gru | lstm (latent autoregressive)."),
    tau: Optional[int] = typer.Option(None, help="Values the model reads: AR window (mlp: 4) or context (recurrent: 64)."),
    train_horizon: Optional[int] = typer.Option(None, help="Train on own rolled-out predictions this many steps (1 = teacher forcing)."),
    n_train: Optional[int] = typer.Option(None, help="Values in the training part (600 for --synthetic, else the first 80%)."),
    hidden: Optional[int] = typer.Option(None, help="Hidden units (mlp: 10, recurrent: 32)."),
    layers: Optional[int] = typer.Option(None, help="Recurrent layers."),
    dropout: Optional[float] = typer.Option(None),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional", help="Refused: a forecaster must not read the future."),
    batch: Optional[int] = typer.Option(None),
    epochs: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    max_seconds: Optional[float] = typer.Option(None, help="Time budget (0 = none)."),
    seed: Optional[int] = typer.Option(None, help="Seeds training and the synthetic series."),
    k: Optional[str] = typer.Option(None, "--k", help="k-step-ahead evaluations, comma-separated (1,4,16,64)."),
    season: Optional[int] = typer.Option(None, help="Seasonal period for MASE and seasonal naive (12 for monthly data, else 1)."),
    horizon: Optional[int] = typer.Option(None, help="Forecast this many values past the end; printed as CSV (time,forecast)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch."),
    on_nan: Optional[str] = typer.Option(None, help="Non-finite loss or gradients: stop | skip (the batch) | rollback (last checkpoint, lr halved)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default: a new one under runs/)."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="Replace a non-empty --out directory."),
    quiet: bool = QuietOpt,
):
    """Train a forecaster on a numeric series; report one-step, multi-step and k-step errors against
    naive baselines (stdout: the metrics table, or with --horizon the forecast as CSV)."""
    from seqtool.forecast.report import horizon_csv, text_table
    from seqtool.core.progress import Reporter
    from seqtool.forecast.task import ForecastTask
    from seqtool.core.trainer import start_run

    flags = {name: value for name, value in locals().items() if name in FORECAST_FLAGS}
    flags["task"] = "forecast"
    flags["k"] = parse_ks(k) if k is not None else None
    spec = build_spec(spec_path, data, flags, FORECAST_FLAGS)
    task = ForecastTask.from_spec(spec)
    trainer = start_run(spec, reporter=Reporter(quiet=quiet), command=command_line(), task=task)
    if not quiet:
        err(f"run directory: {trainer.run.path}")
    with resumable(trainer):
        summary = trainer.fit()
    results = summary["forecast"]
    if spec.forecast.horizon:
        sys.stdout.write(horizon_csv(results["horizon"]))
        if not quiet:
            err(text_table(results))
    else:
        print(text_table(results))
    if not quiet:
        err(f"report: {trainer.run.path / 'report.md'}")


# ---- entry point -------------------------------------------------------------------------------
def _reader_went_away() -> None:
    """stdout's reader closed the pipe (e.g. `| head`): not an error. Point stdout at /dev/null so
    flushing at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr (tracebacks only with --debug)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    _COMMAND_LINE[:] = args
    _DEBUG[0] = debug
    tag = f"[rank {_rank()}] " if _rank() else ""
    try:
        returned = app(args=args, prog_name="seqtool", standalone_mode=False)
        if isinstance(returned, int) and not isinstance(returned, bool) and returned:
            raise typer.Exit(returned)  # typer turns a KeyboardInterrupt into a *returned* 130
    except typer.Exit as exc:
        if exc.exit_code == 130:
            err("seqtool: interrupted")
        code = exc.exit_code
    except typer.Abort:
        err("seqtool: aborted")
        code = 130
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `seqtool`: show the help
            err(exc.format_message())
            raise SystemExit(2) from None
        hint = f" (see 'seqtool {exc.ctx.info_name} --help')" if getattr(exc, "ctx", None) and exc.ctx.info_name != "seqtool" else ""
        err(f"seqtool: error: {one_line(exc.format_message())}{hint}")
        code = exc.exit_code
    except SeqtoolError as exc:
        if debug:
            raise
        if not tag:  # under torchrun every rank meets the same user error: rank 0 reports it
            err(f"seqtool: error: {one_line(exc)}")
        code = exc.exit_code
    except KeyboardInterrupt:
        err("seqtool: interrupted")
        code = 130
    except BrokenPipeError:
        _reader_went_away()
        code = 0
    except SystemExit as exc:
        context = exc.__context__  # typer answers a broken pipe with sys.exit(1)
        if not (isinstance(context, OSError) and context.errno == errno.EPIPE):
            raise
        _reader_went_away()
        code = 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        from seqtool.core.faults import resource_error

        clear = resource_error(exc, f"in '{_COMMAND_LINE[0] if _COMMAND_LINE else 'seqtool'}'")
        if clear is not None:
            err(f"seqtool: error: {one_line(clear)}")
        else:
            err(f"seqtool: {tag}internal error: {type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback)")
        code = 1
    else:
        code = 0
    sys.stdout.flush()
    raise SystemExit(code)
