"""End to end through the CLI: training a translator on a slice of the real fra-eng corpus,
`seqtool translate` from arguments and stdin, `seqtool eval` with BLEU, and the bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
import yaml

from seqtool.cli import main
from seqtool.data.corpora import locate
from seqtool.translate.pairs import detokenize

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--embed", "16", "--hidden", "32", "--layers", "1", "--dropout", "0", "--batch", "32", "--steps", "8",
         "--lr", "0.01", "--threads", "1", "--max-seconds", "0", "--quiet"]


def slice_of_fra_eng(path: Path, lines: int = 600) -> Path:
    """The first lines of the shared corpus: short sentences, many sources with several translations."""
    with open(locate("fra-eng"), encoding="utf-8") as fh:
        path.write_text("".join(next(fh) for _ in range(lines)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One attention model trained for three epochs, shared by the read-only tests below."""
    folder = tmp_path_factory.mktemp("translate")
    corpus = slice_of_fra_eng(folder / "slice.tsv")
    with pytest.raises(SystemExit) as done:
        main(["train", str(corpus), *SMALL, "--epochs", "3", "--attention", "additive", "--out", str(folder / "run")])
    assert done.value.code == 0
    return folder / "run"


def one_error_line(result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtool: error: "), result.err
    return lines[0]


def test_a_tab_separated_corpus_trains_a_translator(run):
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    assert spec["task"] == "translate"  # inferred from the tabs
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all({"val_loss", "val_bleu", "val_chrf", "train_loss"} <= set(r) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    report = json.loads((run / "report.json").read_text())
    assert report["best"]["val_bleu"] == max(r["val_bleu"] for r in rows)  # higher BLEU is better
    assert "## Test-split translations (beam 5, length penalty 0.6)" in (run / "report.md").read_text()  # task defaults
    assert report["test"]["test_sources"] >= 1 and report["test"]["epoch"] == report["best"]["epoch"]


def test_translate_arguments_stdin_order_and_blank_lines(cli, run):
    one = cli("translate", "-c", run, "Go.", "I lost.", "I'm home.")
    assert one.code == 0, one.err
    go, lost, home = one.out.splitlines()
    piped = cli("translate", "-c", run, "--batch", "2", stdin="I'm home.\n\nGo.\n   \nI lost.\n".encode())
    assert piped.code == 0, piped.err
    assert piped.out.split("\n") == [home, "", go, "", lost, ""]


def test_tokenized_output_detokenises_to_the_plain_output(cli, run):
    plain = cli("translate", "-c", run, "Help me.", "Who is it?").out.splitlines()
    tokens = cli("translate", "-c", run, "--tokenized", "Help me.", "Who is it?").out.splitlines()
    assert [detokenize(t.split(), "!?:") for t in tokens] == plain
    assert all(" ." not in line for line in plain)


def test_json_nbest_scores_and_attention(cli, run):
    result = cli("translate", "-c", run, "--beam", "3", "--nbest", "2", "--length-penalty", "0.5", "--json", "--attention-out", "Wait here.")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["source_tokens"] == ["wait", "here", "."]
    first, second = record["translations"]
    assert first["normalized_score"] >= second["normalized_score"]
    for hyp in (first, second):
        assert len(hyp["attention"]) == len(hyp["target_tokens"])
        for row in hyp["attention"]:
            assert len(row) == 4  # three source tokens and <eos>
            assert sum(row) == pytest.approx(1.0, abs=1e-3)
    text = cli("translate", "-c", run, "--beam", "3", "--nbest", "2", "--length-penalty", "0.5", "Wait here.")
    assert text.out.rstrip("\n").split("\t") == [first["text"], second["text"]]


def test_eval_on_the_held_out_split_reproduces_the_best_validation_bleu(cli, run):
    result = cli("eval", run, "--json", "--beam", "1")
    assert result.code == 0, result.err
    scored = json.loads(result.out)
    report = json.loads((run / "report.json").read_text())
    assert scored["bleu"] == pytest.approx(report["best"]["val_bleu"])
    assert scored["bleu_signature"].startswith("nrefs:var|")


def test_eval_scores_a_repeated_source_against_all_its_references(cli, run, tmp_path):
    pairs = tmp_path / "test.tsv"
    pairs.write_text("Go.\tVa !\nGo.\tMarche.\nGo.\tBouge !\nI lost.\tJ'ai perdu.\n", encoding="utf-8")
    result = cli("eval", run, pairs, "--json", "--sentence-bleu", "--out", tmp_path / "ev")
    assert result.code == 0, result.err
    scored = json.loads(result.out)
    assert (scored["sources"], scored["pairs"]) == (2, 4)
    go, lost = scored["sentences"]
    assert go["references"] == ["va !", "marche.", "bouge !"]
    streams = [[go["references"][0], lost["references"][0]], [go["references"][1], None], [go["references"][2], None]]
    assert scored["bleu"] == pytest.approx(sacrebleu.corpus_bleu([go["translation"], lost["translation"]], streams).score)
    assert 0 <= scored["mean_sentence_bleu"] <= 1
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["bleu"] == scored["bleu"]
    markdown = (tmp_path / "ev" / "eval.md").read_text()
    assert "| source | translation | reference(s) | BLEU |" in markdown and "chrF" in markdown
    plain = cli("eval", run, pairs)
    assert plain.out.startswith("# Translation evaluation") and "BLEU: **" in plain.out


def test_aligned_files_and_reverse(cli, tmp_path):
    (tmp_path / "en.txt").write_text("Go.\nHi.\nRun!\nWait.\nHelp!\n" * 8, encoding="utf-8")
    (tmp_path / "fr.txt").write_text("Va !\nSalut !\nCours !\nAttends.\nÀ l'aide !\n" * 8, encoding="utf-8")
    result = cli("train", "--src", "fr.txt", "--tgt", "en.txt", *SMALL, "--epochs", "1", "--val-fraction", "0.4", "--out", "fe")
    assert result.code == 0, result.err
    spec = yaml.safe_load((tmp_path / "fe" / "spec.yaml").read_text())
    assert spec["task"] == "translate" and spec["translate"]["tgt"] == str((tmp_path / "en.txt").resolve())  # saved absolute: the spec works from any folder
    assert unknown_words(cli, "fe", "Va ! Salut ! Cours ! Attends.") <= 2  # two sources are held out (validation, test)
    assert unknown_words(cli, "fe", "Go. Hi. Run! Wait.") >= 3  # French is the source side
    # a tab-separated file French<TAB>English, reversed: English -> French
    (tmp_path / "pairs.tsv").write_text("Va !\tGo.\nSalut !\tHi.\nCours !\tRun!\nAttends.\tWait.\n" * 10, encoding="utf-8")
    result = cli("train", "pairs.tsv", "--reverse", *SMALL, "--epochs", "1", "--val-fraction", "0.5", "--out", "ef")
    assert result.code == 0, result.err
    english, french = unknown_words(cli, "ef", "Go. Hi. Run! Wait."), unknown_words(cli, "ef", "Va ! Salut ! Cours ! Attends.")
    assert english <= 3 and french >= 4 and english < french  # English is the source side; 2 of its sentences are held out


def unknown_words(cli, run, sentence: str) -> int:
    result = cli("translate", "-c", run, "--json", sentence)
    assert result.code == 0, result.err
    return len(json.loads(result.out)["unknown"])


def test_explicit_task_flag_wins_over_the_tabs(cli, tmp_path):
    slice_of_fra_eng(tmp_path / "slice.tsv", 300)
    result = cli("train", "slice.tsv", "--task", "lm", "--embed", "8", "--hidden", "16", "--layers", "1", "--batch", "8",
                 "--steps", "16", "--epochs", "1", "--threads", "1", "--max-seconds", "0", "--quiet", "--out", "lm")
    assert result.code == 0, result.err
    assert yaml.safe_load((tmp_path / "lm" / "spec.yaml").read_text())["task"] == "lm"
    line = one_error_line(cli("translate", "-c", "lm", "Go."), 1)
    assert "is a 'lm' checkpoint, not a 'translate' one" in line
    line = one_error_line(cli("eval", "lm", "--beam", "2"), 2)
    assert "--beam is for translation runs" in line


@pytest.mark.parametrize(
    "content, args, code, needle",
    [
        ("Go.\tVa !\nHi. Salut.\n", [], 1, "line 2: no tab; expected source<TAB>target"),
        ("Go.\tVa !\n\tSalut.\n", [], 1, "line 2: empty source side"),
        ("Go.\tVa !\nHi.\t \tCC-BY\n", [], 1, "line 2: empty target side"),
        ("Go.\tVa !\nHi.\tSalut.\n", ["--embed", "0"], 2, "--embed must be > 0"),
        ("Go.\tVa !\nHi.\tSalut.\n", ["--attention", "dot"], 2, "'dot' is not one of none, additive"),
        ("Go.\tVa !\nHi.\tSalut.\n", ["--label-smoothing", "1.5"], 2, "label_smoothing must be in [0, 1)"),
        ("Go.\tVa !\nHi there you.\tSalut.\n", ["--max-len", "1"], 1, "raise --max-len"),
    ],
)
def test_bad_corpora_and_flags(cli, tmp_path, content, args, code, needle):
    (tmp_path / "bad.tsv").write_text(content, encoding="utf-8")
    assert needle in one_error_line(cli("train", "bad.tsv", "--task", "translate", *SMALL, *args), code)


def test_bad_translate_and_eval_requests(cli, run, tmp_path):
    assert "--nbest must be between 1 and the beam width (2)" in one_error_line(cli("translate", "-c", run, "--beam", "2", "--nbest", "3", "x"), 2)
    assert "use it with --json" in one_error_line(cli("translate", "-c", run, "--attention-out", "x"), 2)
    assert "--per-token is for language models" in one_error_line(cli("eval", run, "--per-token", "-"), 2)
    (tmp_path / "a.txt").write_text("Go.\nHi.\n")
    (tmp_path / "b.txt").write_text("Va !\n")
    assert "source has 2 lines but target has 1" in one_error_line(cli("eval", run, "a.txt", "--tgt", "b.txt"), 1)
    assert "--src needs --tgt" in one_error_line(cli("train", "--src", "a.txt", *SMALL), 2)


def test_attention_out_needs_an_attention_model(cli, tmp_path):
    slice_of_fra_eng(tmp_path / "slice.tsv", 200)
    assert cli("train", "slice.tsv", *SMALL, "--epochs", "1", "--attention", "none", "--out", "classic").code == 0
    line = one_error_line(cli("translate", "-c", "classic", "--json", "--attention-out", "Go."), 2)
    assert "this model has no attention" in line


def test_real_process_reads_stdin_line_by_line(run, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "seqtool", "translate", "-c", str(run)], input=b"Go.\n\nHi.\n",
                          capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    assert done.stderr == b""
