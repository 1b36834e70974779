"""Bad input for the whole CLI, as hypothesis strategies, shared by tests/test_fuzz_cli.py (a few
dozen derandomized examples per family) and `make stress` (many more).

Every case runs `seqtool ...` in-process and must end with exit 0 (the input was actually valid) or
with exit 1/2 and exactly one stderr line `seqtool: error: ...`: never a traceback, never an
internal error. Valid cases are kept cheap (tiny models, a token budget, a time cap).
"""

from __future__ import annotations

import io
import itertools
import math
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import strategies as st

from seqtool.cli import main

#: appended to every training case: small and bounded, whatever the fuzzed flags say
CHEAP = ["--embed", "4", "--hidden", "8", "--layers", "1", "--batch", "4", "--steps", "8", "--epochs", "1",
         "--max-tokens", "1500", "--max-seconds", "3", "--threads", "1", "--dropout", "0", "--quiet"]
TEXT = "the time traveller for so it will be convenient to speak of him was expounding a recondite matter to us. " * 12


@dataclass
class Result:
    args: list
    code: int
    out: str
    err: str


@contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(args: list, cwd: Path, stdin: bytes | None = None) -> Result:
    """`seqtool ARGS` in-process, in `cwd`; stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with _cwd(cwd), redirect_stdout(out), redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.stdin = old_stdin
    return Result(args, code, out.getvalue(), err.getvalue())


def problem(result: Result, allowed=(0, 1, 2)) -> str | None:
    """What is wrong with how the CLI ended (None: nothing)."""
    if "Traceback" in result.err or "internal error" in result.err:
        return f"crash: {result.err.strip()[-300:]}"
    if result.code not in allowed:
        return f"exit {result.code} (allowed {allowed}); stderr {result.err.strip()[-300:]!r}"
    if result.code != 0:
        lines = result.err.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("seqtool: error: "):
            return f"exit {result.code} without exactly one 'seqtool: error:' line: {result.err!r}"
    return None


_counter = itertools.count()


def fresh(workdir: Path, stem: str) -> Path:
    return workdir / f"{stem}-{next(_counter)}"


# ---- corpora ----------------------------------------------------------------------------------
special_corpora = st.sampled_from([
    b"", b"a", b"ab", b"word", b"\n" * 500, b" \t\r\n" * 100, b"\xef\xbb\xbf", b"\xff\xfe", b"\x00" * 10,
    TEXT.encode("utf-16"), TEXT.encode("utf-32"), "élan café naïve ".encode("latin-1") * 100,
    ("é" * 2000).encode("utf-8"), "日本語のテキスト。".encode("utf-8") * 100, b"PK\x03\x04 not a zip" * 10,
    b"\x80\x81\x82" * 300, b"aaaa" * 1000, TEXT.encode() + b"\xff" + TEXT.encode(),
])
corpus_bytes = st.one_of(
    special_corpora,
    st.binary(max_size=3000),
    st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(20_000, 150_000).map(lambda n: (TEXT.replace(".", " ") * (n // len(TEXT) + 1))[:n].encode()),  # one huge line
)
corpus_cases = st.fixed_dictionaries({
    "data": corpus_bytes,
    "command": st.sampled_from(["train", "train", "preprocess"]),
    "stdin": st.booleans(),
    "flags": st.lists(st.sampled_from([
        ["--level", "word"], ["--level", "char"], ["--clean", "none"], ["--clean", "lower"],
        ["--encoding", "latin-1"], ["--encoding", "utf-16"], ["--encoding", "ascii"], ["--encoding", "nope"],
        ["--encoding-errors", "replace"], ["--encoding-errors", "ignore"], ["--encoding-errors", "bogus"],
        ["--min-freq", "3"], ["--steps", "1000000"], ["--batch", "100000"], ["--steps", "2"], ["--val-fraction", "0.5"],
    ]), max_size=4),
})

TRAIN_ONLY = {"--steps", "--batch", "--val-fraction"}


def run_corpus_case(case: dict, workdir: Path) -> Result:
    path = fresh(workdir, "corpus")
    path.write_bytes(case["data"])
    source = "-" if case["stdin"] else path
    flags = [f for pair in case["flags"] for f in pair]
    if case["command"] == "preprocess":
        flags = [f for pair in case["flags"] if pair[0] not in TRAIN_ONLY for f in pair]
        return run_cli(["preprocess", source, "--json", *flags], workdir, stdin=case["data"] if case["stdin"] else None)
    return run_cli(["train", source, *CHEAP, *flags, "--out", fresh(workdir, "run")], workdir,
                   stdin=case["data"] if case["stdin"] else None)


# ---- flags ------------------------------------------------------------------------------------
def mostly(valid: list, invalid: list, odds: int = 3):
    """`odds` draws in odds+1 from `valid`: a random mix of options then often gets past validation."""
    return st.sampled_from(list(valid) * odds + list(invalid))  # (one_of(a, a, b) would merge the a's)


def _numbers(*valid):
    return mostly(list(valid), ["-1", "0", "-0.5", "nan", "inf", "-inf", "1e999", str(10**30), "x", "", "1.5e"], odds=4)


flag_values = {
    "--hidden": _numbers("1", "8", str(10**12)), "--layers": _numbers("1", "2"), "--embed": _numbers("0", "4", str(10**12)),
    "--batch": _numbers("1", "4", str(10**9)), "--steps": _numbers("1", "8", str(10**9)), "--epochs": _numbers("1", "2", str(10**20)),
    "--lr": _numbers("1e-3", "10", "1e30"), "--dropout": _numbers("0.1", "0.99", "1"), "--val-fraction": _numbers("0.1", "0.9", "1"),
    "--min-freq": _numbers("1", "5", str(10**9)), "--clip": _numbers("0.5", "1e-30"), "--max-tokens": _numbers("1", "700"),
    "--max-seconds": st.sampled_from(["-1", "nan", "inf", "0.5", "x"]), "--warmup": _numbers("3", str(10**20)),
    "--weight-decay": _numbers("0.01", "1e30"), "--patience": _numbers("1"), "--seed": _numbers("7", str(2**32), str(2**64)),
    "--threads": _numbers("1", "2", "100000"), "--forget-bias": _numbers("1", "-1e30"),
    "--cell": st.sampled_from(["rnn", "gru", "lstm", "transformer", ""]), "--optimizer": st.sampled_from(["sgd", "adam", "adamw", "lbfgs"]),
    "--schedule": st.sampled_from(["none", "cosine", "step", "plateau", "exp"]), "--sampling": st.sampled_from(["random", "sequential", "shuffled"]),
    "--level": st.sampled_from(["char", "word", "byte"]), "--clean": st.sampled_from(["letters", "lower", "none", "all"]),
    "--device": st.sampled_from(["cpu", "auto", "tpu"]), "--impl": st.sampled_from(["fused", "scratch", "cuda"]),
    "--init": st.sampled_from(["default", "orthogonal", "zeros"]), "--truncation": st.sampled_from(["fixed", "random", "full", "none"]),
    "--on-nan": st.sampled_from(["stop", "skip", "rollback", "ignore"]), "--task": st.sampled_from(["lm", "translate", "forecast", "chat"]),
    "--encoding": st.sampled_from(["utf-8", "latin-1", "rot13", "\x00"]), "--encoding-errors": st.sampled_from(["strict", "replace", "bogus"]),
}
toggles = ["--tie-weights", "--no-tie-weights", "--bidirectional", "--unidirectional", "--overwrite"]
flag_cases = st.tuples(
    st.lists(st.sampled_from(sorted(flag_values)), unique=True, min_size=1, max_size=4).flatmap(
        lambda names: st.tuples(*[flag_values[n].map(lambda v, n=n: [n, v]) for n in names])),
    st.lists(st.sampled_from(toggles), max_size=2, unique=True),
)


def run_flag_case(case, workdir: Path, corpus: Path) -> Result:
    pairs, switches = case
    flags = [f for pair in pairs for f in pair]
    return run_cli(["train", corpus, *CHEAP, *flags, *switches, "--out", fresh(workdir, "run")], workdir)


# ---- run specs --------------------------------------------------------------------------------
PLAUSIBLE = {
    "corpus": ["text.txt", "../text.txt", "timemachine", "-", "no-such-file", "/", ""], "level": ["char", "word"],
    "clean": ["letters", "lower", "none"], "min_freq": [0, 1, 2, 10**9], "val_fraction": [0.1, 0.5, 0.0], "steps": [4, 8, 10**9],
    "sampling": ["random", "sequential"], "encoding": ["utf-8", "latin-1"], "encoding_errors": ["strict", "replace"],
    "cell": ["rnn", "gru", "lstm"], "hidden": [4, 8], "layers": [1, 2], "dropout": [0.0, 0.5], "embed": [0, 4, 8],
    "tie_weights": [True, False], "bidirectional": [False, True], "impl": ["fused", "scratch"], "init": ["default", "orthogonal"],
    "forget_bias": [0.0, 1.0], "optimizer": ["sgd", "adam", "adamw"], "lr": [0.01, 1.0, 1e-8], "weight_decay": [0.0, 0.1],
    "schedule": ["none", "cosine", "step", "plateau"], "warmup": [0, 5], "clip": [None, 0.5, 1], "truncation": ["fixed", "random", "full"],
    "patience": [None, 1], "seed": [0, 1, 2**40], "on_nan": ["stop", "skip", "rollback"], "dir": ["out", "../out", "/tmp/x"],
    "runs_root": ["runs", "../runs"], "overwrite": [True, False],
}
SPEC_KEYS = {
    "data": ["corpus", "level", "clean", "min_freq", "val_fraction", "steps", "sampling", "encoding", "encoding_errors"],
    "model": ["cell", "hidden", "layers", "dropout", "embed", "tie_weights", "bidirectional", "impl", "init", "forget_bias"],
    "train": ["optimizer", "lr", "weight_decay", "schedule", "warmup", "clip", "truncation", "patience", "seed", "on_nan"],
    "output": ["dir", "runs_root", "overwrite"],
}
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from(["gru", "lstm", "char", "word", "adam", "sgd", "none", "lm"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def _section(keys: list):
    """Mostly known keys with plausible values; now and then a wrong key or a random value."""
    entry = st.sampled_from(keys).flatmap(lambda k: st.tuples(st.just(k), mostly(PLAUSIBLE[k], [None], odds=6).flatmap(
        lambda v: st.integers(0, 6).flatmap(lambda i: yaml_values if i == 0 else st.just(v)))))
    wrong = st.tuples(st.sampled_from(["bogus", "Hidden", ""]), yaml_values)
    return st.lists(st.integers(0, 8).flatmap(lambda i: wrong if i == 0 else entry), max_size=5).map(dict)


spec_sections = st.fixed_dictionaries({}, optional={section: _section(keys) for section, keys in SPEC_KEYS.items()}
                                      | {"task": mostly(["lm"], ["translate", "forecast", 3, None, "LM"])})
spec_texts = st.one_of(
    spec_sections.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    spec_sections.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.sampled_from(["", "---", "[1, 2", "model: [", "!!python/object/apply:os.system ['touch pwned']", "a: &x [*x]",
                     "model: {hidden: .inf}", "train: {lr: .nan}", "- just\n- a list", "\x00", "model:\n\thidden: 3",
                     "[" * 2000 + "]" * 2000, "data: {corpus: \"a\\0b\"}", "task: translate", "task: forecast", "extra: 1"]),
    st.text(max_size=200),
)


def run_spec_case(text: str, workdir: Path, corpus: Path) -> Result:
    spec = fresh(workdir, "spec")
    spec.mkdir()
    (spec / "run.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    # flags keep it cheap and keep every write inside workdir, whatever the spec says
    return run_cli(["train", corpus, "--spec", spec / "run.yaml", *CHEAP, "--out", spec / "run"], workdir)


# ---- sampling and evaluation of a trained model -----------------------------------------------
sample_cases = st.fixed_dictionaries({
    "prefix": st.one_of(st.text(max_size=40), st.text(st.characters(categories=["Cs", "Co", "Cc", "So"]), max_size=8),
                        st.sampled_from(["", " ", "zzzz", "\n\n", "THE TIME ", "时间", "\udcff"])),
    "length": mostly(["0", "1", "30"], ["-1", "x"], odds=6),
    "num": mostly(["1", "3"], ["-1", "0"], odds=6),
    "temperature": mostly(["1e-30", "0.7", "1", "1e30"], ["nan", "-1", "0", "inf"], odds=6),
    "top_k": mostly([None, "1", str(10**9)], ["-1", "0"], odds=6),
    "top_p": mostly([None, "0.5", "1", "1e-9"], ["nan", "-0.1", "0", "1.5"], odds=6),
    "seed": mostly([None, "0", "7"], ["-1", str(2**64)], odds=6),
    "greedy": st.booleans(),
    "json": st.booleans(),
})


def run_sample_case(case: dict, workdir: Path, run: Path) -> Result:
    args = ["sample", "--checkpoint", run, "--prefix", case["prefix"], "--length", case["length"], "--num", case["num"],
            "--temperature", case["temperature"]]
    for key in ("top_k", "top_p", "seed"):
        if case[key] is not None:
            args += [f"--{key.replace('_', '-')}", case[key]]
    args += ["--greedy"] * case["greedy"] + ["--json"] * case["json"]
    return run_cli(args, workdir)


def sample_output_ok(case: dict, result: Result) -> bool:
    """A successful sample prints --num lines (one JSON object each with --json)."""
    if result.code != 0:
        return True
    lines = result.out.splitlines()
    return len(lines) == int(case["num"]) or (int(case["num"]) == 1 and not case["json"] and len(lines) >= 1)


def run_eval_case(data: bytes, workdir: Path, run: Path) -> Result:
    path = fresh(workdir, "eval")
    path.write_bytes(data)
    return run_cli(["eval", run, path, "--json"], workdir)


def eval_output_ok(result: Result) -> bool:
    if result.code != 0:
        return True
    import json

    return math.isfinite(json.loads(result.out)["perplexity"])


def train_small(workdir: Path, clean: str = "letters") -> Path:
    """A model to sample from and evaluate."""
    corpus = workdir / f"train-{clean}.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = workdir / f"model-{clean}"
    result = run_cli(["train", corpus, *CHEAP, "--clean", clean, "--out", run], workdir)
    assert result.code == 0, result.err
    return run
