"""End to end through the CLI: the language-model workflow on the real Time Machine, pipelines,
specs and the bad inputs a user will try."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqtool.core.run import save_checkpoint
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("seqtool: error: ")
    assert "Traceback" not in result.err
    return lines[0]


@pytest.fixture
def trained(cli):
    """A tiny GRU trained for two short epochs on the shared Time Machine corpus (catalog name)."""
    result = cli("train", "timemachine", *TINY, "--epochs", "2", "--max-tokens", "30000", "--lr", "0.01", "--seed", "1")
    assert result.code == 0, result.err
    run = Path(result.out.strip())
    return cli, run


def test_train_writes_a_complete_run_directory(trained):
    cli, run = trained
    for name in ("spec.yaml", "run.json", "metrics.jsonl", "report.json", "report.md", "learning_curve.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert Path("runs/latest").resolve() == run.resolve()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    for key in ("train_loss", "train_ppl", "val_ppl", "tokens_per_s", "grad_norm", "clip_frac", "lr"):
        assert key in rows[-1]
    report = json.loads((run / "report.json").read_text())
    assert report["best"]["val_ppl"] == min(r["val_ppl"] for r in rows)
    for row in rows:  # perplexity is exp(cross-entropy), recomputed from the logged losses
        assert row["val_ppl"] == pytest.approx(math.exp(row["val_loss"])) and row["train_ppl"] == pytest.approx(math.exp(row["train_loss"]))
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    assert spec["model"]["hidden"] == 32 and spec["data"]["corpus"] == "timemachine"
    assert "seqtool train timemachine" in report["command"]


def test_eval_reproduces_the_reported_test_perplexity(trained):
    """The report's test perplexity is the chosen (best) checkpoint's on the test split, which the
    choice never saw; eval with no data scores exactly that split."""
    cli, run = trained
    result = cli("eval", "latest", "--json")
    assert result.code == 0, result.err
    scored = json.loads(result.out)
    report = json.loads((run / "report.json").read_text())
    assert scored["perplexity"] == pytest.approx(report["test"]["test_ppl"], rel=1e-5)
    assert scored["tokens"] == report["test"]["test_tokens"] and report["test"]["epoch"] == report["best"]["epoch"]
    assert scored["perplexity"] != pytest.approx(report["best"]["val_ppl"], rel=1e-3)  # another split
    assert scored["perplexity"] == pytest.approx(math.exp(scored["cross_entropy_nats"]))
    assert scored["bits_per_token"] == pytest.approx(scored["cross_entropy_nats"] / math.log(2))
    # a character is a token here: bits per character are bits per token, over as many characters (ASCII: as many bytes)
    assert scored["level"] == "char" and scored["characters"] == scored["tokens"]
    assert scored["bits_per_char"] == pytest.approx(scored["bits_per_token"]) == pytest.approx(scored["bits_per_byte"])
    assert scored["bits_per_char"] == pytest.approx(report["test"]["test_bits_per_char"], rel=1e-5)
    line = cli("eval", "latest").out.strip()
    assert line.endswith(f"per char token over {scored['tokens']:,} tokens; {scored['bits_per_char']:.4f} bits per character")


def test_sample_is_reproducible_and_starts_with_the_prefix(trained):
    cli, run = trained
    first = cli("sample", "--prefix", "Time Traveller", "--length", "40", "--seed", "7", "--num", "2")
    again = cli("sample", "--checkpoint", str(run), "--prefix", "Time Traveller", "--length", "40", "--seed", "7", "--num", "2")
    other = cli("sample", "--prefix", "Time Traveller", "--length", "40", "--seed", "8", "--num", "2")
    assert first.code == 0, first.err
    lines = first.out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("time traveller") and len(line) == len("time traveller") + 40 for line in lines)
    assert first.out == again.out
    assert first.out != other.out
    streamed = cli("sample", "--prefix", "the", "--length", "25", "--greedy")
    assert streamed.code == 0 and len(streamed.out.rstrip("\n")) == 3 + 25


@pytest.mark.parametrize("prefix", ["", "the time"])
def test_streamed_sample_equals_the_generated_text(trained, prefix):
    """`sample` with --num 1 streams token by token; the stream is exactly the text (first token too)."""
    cli, run = trained
    streamed = cli("sample", "--prefix", prefix, "--length", "30", "--seed", "4")
    whole = cli("sample", "--prefix", prefix, "--length", "30", "--seed", "4", "--json")
    assert streamed.code == 0 and whole.code == 0, streamed.err + whole.err
    text = json.loads(whole.out)["text"]
    assert streamed.out == text + "\n"
    assert len(text) == len(prefix) + 30 + (0 if prefix else 1)  # an empty prefix starts from one drawn token


def test_samples_pipe_into_eval_and_json_lines(trained):
    cli, run = trained
    sampled = cli("sample", "--num", "3", "--length", "60", "--seed", "0", "--json")
    records = [json.loads(line) for line in sampled.out.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    text = "\n".join(r["text"] for r in records).encode()
    scored = cli("eval", str(run), "-", "--json", stdin=text)
    assert scored.code == 0, scored.err
    assert json.loads(scored.out)["source"] == "standard input"


def test_per_token_surprisal_file(trained, tmp_path):
    cli, run = trained
    result = cli("eval", str(run), "-", "--per-token", str(tmp_path / "tokens.tsv"), "--json", stdin=b"the time machine")
    summary = json.loads(result.out)
    rows = (tmp_path / "tokens.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["position", "token", "surprisal_nats", "surprisal_bits"]
    assert len(rows) - 1 == summary["tokens"] == len("the time machine") - 1
    mean = sum(float(r.split("\t")[2]) for r in rows[1:]) / summary["tokens"]
    assert mean == pytest.approx(summary["cross_entropy_nats"], rel=1e-5)


def test_resume_extends_a_run_and_refuses_changes(trained):
    cli, run = trained
    before = len((run / "metrics.jsonl").read_text().splitlines())
    resumed = cli("train", "--resume", str(run), "--epochs", str(before + 1), "--max-tokens", "0", "--quiet")
    assert resumed.code == 0, resumed.err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == before + 1
    changed = cli("train", "--resume", str(run), "--hidden", "64")
    assert "--hidden" in one_error_line(changed, 2)


def test_spec_file_and_flags_precedence(cli, tiny_text, tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({"data": {"corpus": tiny_text.name, "clean": "lower"}, "model": {"hidden": 24, "cell": "lstm"},
                                    "train": {"epochs": 1}}))
    args = [a for a in TINY if a not in ("--hidden", "32")]
    result = cli("train", "--spec", spec, *args, "--cell", "rnn", "--out", tmp_path / "run")
    assert result.code == 0, result.err
    saved = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())
    assert saved["model"]["hidden"] == 24  # from the file
    assert saved["model"]["cell"] == "rnn"  # flag wins
    assert saved["data"]["clean"] == "lower"
    assert saved["data"]["corpus"] == str(tiny_text)  # resolved relative to the spec file


def test_preprocess_statistics_and_prepared_dataset(cli, tmp_path):
    text = tmp_path / "abc.txt"
    text.write_text("ab ab, abc!", encoding="utf-8")
    result = cli("preprocess", text, "--json", "--top", "2", "--out", tmp_path / "abc.data", "--plot", tmp_path / "zipf.png")
    assert result.code == 0, result.err
    stats = json.loads(result.out)
    assert stats["tokens"] == len("ab ab abc")  # letters recipe: 'ab ab abc'
    assert stats["types"] == 1 + 4  # <unk>, 'a', 'b', ' ', 'c'
    assert stats["unigrams"][0] == ["a", 3] and stats["unigrams"][1] == ["b", 3]
    assert stats["bigrams"][0] == ["ab", 3]
    assert (tmp_path / "zipf.png").read_bytes()[:4] == b"\x89PNG"
    words = cli("preprocess", text, "--level", "word", "--json", "--min-freq", "2")
    # 'ab ab abc' <eos>: <unk>, <eos> (reserved: never rare) and 'ab'; 'abc' is the one <unk>
    assert json.loads(words.out)["types"] == 3 and json.loads(words.out)["unk_tokens"] == 1


def test_train_accepts_a_prepared_dataset_and_stdin(cli, tiny_text, tmp_path):
    prepared = tmp_path / "tiny.data"
    assert cli("preprocess", tiny_text, "--clean", "lower", "--out", prepared).code == 0
    from_dataset = cli("train", prepared, *TINY, "--epochs", "1", "--out", tmp_path / "a")
    assert from_dataset.code == 0, from_dataset.err
    assert yaml.safe_load((tmp_path / "a" / "spec.yaml").read_text())["data"]["clean"] == "lower"
    from_stdin = cli("train", "-", *TINY, "--epochs", "1", "--out", tmp_path / "b", stdin=tiny_text.read_bytes())
    assert from_stdin.code == 0, from_stdin.err
    assert "standard input" in one_error_line(cli("eval", tmp_path / "b"), 1)


@pytest.mark.parametrize(
    "setup, args, code, needle",
    [
        (None, ["train", "missing.txt"], 1, "no such file or catalog corpus: missing.txt"),
        ("empty", ["train", "empty.txt"], 1, "empty.txt is empty"),
        ("binary", ["train", "binary.bin"], 1, "binary"),
        ("latin1", ["train", "latin1.txt"], 1, "not valid utf-8 (byte 0xe9 at offset 3)"),
        ("badyaml", ["train", "--spec", "bad.yaml"], 2, "bad YAML (line 2, column 1)"),
        ("unknownkey", ["train", "--spec", "unknown.yaml"], 2, "unknown key 'model.hiden'; allowed: cell, hidden"),
        (None, ["train", "x.txt", "--cell", "transformer"], 2, "'transformer' is not one of rnn, gru, lstm"),
        (None, ["train", "x.txt", "--hidden", "-3"], 2, "model.hidden must be > 0"),
        (None, ["train", "x.txt", "--bogus"], 2, "No such option: --bogus"),
        (None, ["train", "timemachine", "--bidirectional"], 2, "cannot be used for a language model"),
        (None, ["eval", "nowhere"], 1, "no such checkpoint or run directory: nowhere"),
        (None, ["sample"], 1, "no run found under runs/"),
        ("translate_ckpt", ["sample", "--checkpoint", "other.pt"], 1, "is a 'translate' checkpoint, not a 'lm' one"),
        ("short", ["train", "short.txt", "--quiet"], 1, "fewer than one batch needs"),
        ("nonempty_out", ["train", "timemachine", "--out", "full"], 2, "is not empty; pass --resume"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(cli, tmp_path, setup, args, code, needle):
    files = {
        "empty": ("empty.txt", b""),
        "binary": ("binary.bin", bytes(range(256)) * 4),
        "latin1": ("latin1.txt", "café au lait".encode("latin-1")),
        "badyaml": ("bad.yaml", b"model: [1, 2\n"),
        "unknownkey": ("unknown.yaml", b"model:\n  hiden: 3\n"),
        "short": ("short.txt", b"abc def"),
    }
    if setup in files:
        name, data = files[setup]
        (tmp_path / name).write_bytes(data)
    if setup == "translate_ckpt":
        save_checkpoint(tmp_path / "other.pt", {"task": "translate", "spec": {}, "task_state": {}, "model": {}})
    if setup == "nonempty_out":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep.txt").write_text("precious")
    line = one_error_line(cli(*args), code)
    assert needle in line
    if setup == "nonempty_out":
        assert (tmp_path / "full" / "keep.txt").read_text() == "precious"


def test_real_process_pipeline(tmp_path, tiny_text):
    """`seqtool` as a user runs it: a subprocess reading stdin, data on stdout, logs on stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    train = subprocess.run([sys.executable, "-m", "seqtool", "train", "-", *TINY, "--epochs", "1"],
                           input=tiny_text.read_bytes(), capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert train.returncode == 0, train.stderr.decode()
    run = Path(train.stdout.decode().strip())
    assert (tmp_path / run / "checkpoints" / "best.pt").is_file()
    sample = subprocess.run([sys.executable, "-m", "seqtool", "sample", "--prefix", "the", "--length", "10", "--num", "2"],
                            capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert sample.returncode == 0 and len(sample.stdout.decode().splitlines()) == 2
    missing = subprocess.run([sys.executable, "-m", "seqtool", "eval", "nope"], capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "seqtool: error: no such checkpoint or run directory: nope"
