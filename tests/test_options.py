"""Every option is declared once (seqtool/core/spec.py) and everything else follows from it: each has
a flag and help, the flag reaches the spec, options a task does not read are refused (flag and
YAML), every task really reads the options it claims, and the README's table is the declarations'."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

from seqtool.cli.app import app
from seqtool.core import spec as S
from seqtool.core.session import start_run
from seqtool.core.family import family_names
from seqtool.core.spec import OPTIONS, and_list, from_dict, options_markdown

TASKS = family_names()

REPO = Path(__file__).resolve().parents[1]
CORPUS_FOR = {"lm": "timemachine", "translate": "fra-eng", "forecast": "airline-passengers", "panel": "m4-weekly-train",
              "classify": "sst2-train", "tag": "ud-english-train"}
FREE_TEXT = {"data.encoding": "latin-1", "forecast.column": "Passengers", "forecast.time_column": "Month",
             "translate.tgt": "fr.txt", "output.out": "somewhere", "output.runs_root": "elsewhere", "forecast.difference": "12,1",
             "forecast.id_column": "series", "label.text_column": "review", "label.label_column": "stars", "label.tag_column": "xpos"}


def other_value(option: S.Option, task: str):
    """A valid value that differs from the option's default in `task` -> (flag text, value in the spec)."""
    default = option.default_for(task, None)
    choices = option.opt.choices or (TASKS if option.dotted == "task" else ())
    if choices:
        value = next(c for c in choices if c != default and not (option.dotted == "model.cell" and c in ("mlp", "auto") and task != "forecast"))
        return value, value
    if option.dotted in FREE_TEXT:
        return FREE_TEXT[option.dotted], FREE_TEXT[option.dotted]
    if option.dotted == "output.log":  # a list of names, not numbers
        return "csv", ["csv"]
    base = option.kind
    if base is bool:
        return None, not default
    if base is list:
        return "2,3", [2, 3]
    if base is int:
        return "3", 3 if default != 3 else 4
    if base is float:
        value = 0.25 if default != 0.25 else 0.5
        return str(value), value
    raise AssertionError(f"no test value for {option.dotted}")


def flag_args(option: S.Option, text, value) -> list[str]:
    if text is None:  # a bool: --name or its negative
        return [option.flag if value else option.off_flag]
    return [option.flag, text]


CLI_OPTIONS = [o for o in OPTIONS.values() if not o.opt.argument]


@pytest.mark.parametrize("option", CLI_OPTIONS, ids=lambda o: o.dotted)
def test_every_option_has_a_flag_and_help_and_the_flag_reaches_the_spec(cli, option):
    assert option.opt.help.strip(), f"{option.dotted} has no help"
    task = option.users[0]
    text, value = other_value(option, task)
    result = cli("train", CORPUS_FOR[task], "--task", task, "--dry-run", *flag_args(option, text, value))
    assert result.code == 0, result.err
    saved = yaml.safe_load(result.out)
    got = saved[option.section][option.name] if option.section else saved["task"]
    assert got == value


UNUSED = [(o, t) for o in OPTIONS.values() for t in TASKS if not o.reads(t)]


@pytest.mark.parametrize("option, task", UNUSED, ids=lambda x: x.dotted if isinstance(x, S.Option) else x)
def test_an_option_the_task_does_not_read_is_refused_as_a_flag_and_in_yaml(cli, tmp_path, option, task):
    text, value = other_value(option, option.users[0])
    result = cli("train", CORPUS_FOR[task], "--task", task, "--dry-run", *flag_args(option, text, value))
    assert result.code == 2
    assert result.err == f"seqtool: error: {option.flag} does not apply to task {task} (it is used by {and_list(option.users)})\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"task": task, option.section: {option.name: value}}))
    result = cli("train", CORPUS_FOR[task], "--spec", spec, "--dry-run")
    assert result.code == 2
    assert result.err.startswith(f"seqtool: error: {spec}: {option.dotted} does not apply to task {task}")


def test_the_issue_examples_are_refused(cli, tmp_path):
    assert cli("train", "fra-eng", "--truncation", "random").code == 2  # a tab-separated corpus is a translation
    (tmp_path / "f.yaml").write_text("task: forecast\nmodel: {embed: 16}\n")
    assert "model.embed does not apply to task forecast" in cli("train", "airline-passengers", "--spec", "f.yaml").err
    (tmp_path / "g.yaml").write_text("data: {steps: 50}\n")
    result = cli("forecast", "airline-passengers", "--spec", "g.yaml")
    assert result.code == 2 and "data.steps does not apply to task forecast" in result.err


def test_a_runs_saved_spec_can_be_passed_back(cli, tmp_path, tiny_text):
    from conftest import TINY

    result = cli("train", tiny_text, *TINY, "--epochs", "1", "--out", "r1")
    assert result.code == 0, result.err
    again = cli("train", "--spec", tmp_path / "r1" / "spec.yaml", "--out", "r2", "--epochs", "1", "--quiet")
    assert again.code == 0, again.err
    first, second = (yaml.safe_load((tmp_path / r / "spec.yaml").read_text()) for r in ("r1", "r2"))
    first["output"].pop("out"), second["output"].pop("out")
    assert first == second


def test_forecast_command_has_exactly_the_forecast_and_panel_options():
    import typer.main

    command = typer.main.get_command(app).commands["forecast"]
    flags = {p.opts[0] for p in command.params}  # each parameter's own flag (aliases such as --level aside)
    for option in OPTIONS.values():
        if option.opt.argument or option.dotted == "task":
            continue
        assert (option.flag in flags) == (option.reads("forecast") or option.reads("panel")), option.dotted
    assert "--level" in next(p for p in command.params if p.opts[0] == "--intervals").opts  # the issue's name, where it is free


def test_yaml_keys_are_the_flags():
    for option in OPTIONS.values():
        assert option.flag == "--" + option.name.replace("_", "-")
    assert from_dict({"output": {"dir": "/x"}, "translate": {"target": "t.txt"}}).output.out == "/x"  # the old names still load


def test_readme_option_table_is_made_from_the_declarations():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- options: begin -->\n", "<!-- options: end -->"
    assert begin in readme and end in readme
    table = readme[readme.index(begin) + len(begin): readme.index(end)]
    assert table == options_markdown()


# ---- every task reads what it claims --------------------------------------------------------------
class Reads:
    """Records which spec options are read outside seqtool/core/spec.py (validation and saving read them all)."""

    def __init__(self):
        self.seen: set[str] = set()

    def install(self, monkeypatch):
        classes = {cls: section for section, cls in S.SECTIONS.items()}
        seen = self.seen
        skip = (str(Path(S.__file__)), dataclasses.__file__)

        def getattribute(obj, name):
            section = classes.get(type(obj))
            if section and not name.startswith("__") and f"{section}.{name}" in OPTIONS:
                caller = sys._getframe(1).f_code.co_filename
                if caller not in skip:
                    seen.add(f"{section}.{name}")
            return object.__getattribute__(obj, name)

        for cls in classes:
            monkeypatch.setattr(cls, "__getattribute__", getattribute, raising=False)


def tiny_run_specs(task: str, tmp_path: Path) -> list[dict]:
    """Raw specs of one-epoch runs that together take every path of the task's data reading."""
    model = {"hidden": 8, "embed": 4, "layers": 1, "cell": "lstm"}  # lstm: forget_bias is read for LSTMs only
    if task == "lm":
        corpus = tmp_path / "c.txt"
        corpus.write_text("the quick brown fox jumps over the lazy dog. " * 60)
        runs = [{"data": {"corpus": str(corpus), "steps": 8}, "model": model},
                {"data": {"corpus": str(corpus), "steps": 8, "level": "bpe", "vocab_size": 40}, "model": model}]
    elif task == "translate":
        corpus = tmp_path / "p.tsv"
        corpus.write_text("go .\tva !\nhi .\tsalut !\nrun !\tcours !\nwait .\tattends .\nhelp !\tà l'aide !\n" * 6)
        runs = [{"data": {"corpus": str(corpus), "val_fraction": 0.4}, "model": model}]
    elif task == "panel":
        rows = "".join(f"{s},{t},{(t % 4) * (s + 1) + t}\n" for s in (1, 2) for t in range(1, 30))
        (tmp_path / "long.csv").write_text("series,time,value\n" + rows)
        (tmp_path / "wide.csv").write_text("".join(f"w{s}," + ",".join(str(t % 5 + s) for t in range(30)) + "\n" for s in range(3)))
        common = {"horizon": 3, "ensemble": 2}
        runs = [{"data": {"corpus": str(tmp_path / "long.csv")}, "model": {"hidden": 4},
                 "forecast": {**common, "id_column": "series", "time_column": "time", "column": "value", "intervals": [80], "tau": 6}},
                {"data": {"corpus": str(tmp_path / "wide.csv")}, "model": {"cell": "lstm", "hidden": 4},
                 "forecast": {**common, "wide": True, "season": 4, "history": 2, "combine": "none"}}]
    elif task == "classify":
        (tmp_path / "r.csv").write_text("id,review,stars\n" + "".join(f"{i},good film {i % 7},5\n{i},bad plot {i % 5},1\n" for i in range(20)))
        layout = tmp_path / "sst"
        layout.mkdir()
        for part in ("train", "valid", "test"):
            (layout / f"{part}.tsv").write_text("a fine film\tpos\na dull film\tneg\n" * 4)
        runs = [{"data": {"corpus": str(tmp_path / "r.csv"), "val_fraction": 0.2, "max_len": 3}, "model": model,
                 "label": {"text_column": "review", "label_column": "stars", "class_weights": "balanced", "char_embed": 4}},
                {"data": {"corpus": str(layout)}, "model": model, "label": {"pool": "attention"}},
                {"data": {"corpus": str(tmp_path / "r.csv"), "val_fraction": 0.2, "level": "unigram", "vocab_size": 23}, "model": model,
                 "label": {"text_column": "review", "label_column": "stars", "members": 2, "char_encoder": "lstm", "char_embed": 4}}]
    elif task == "tag":
        (tmp_path / "t.conllu").write_text("".join(f"1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_\n2\tbark{i}\tbark\tVERB\tVBP\t_\t0\troot\t_\t_\n\n"
                                                   for i in range(20)))
        runs = [{"data": {"corpus": str(tmp_path / "t.conllu"), "val_fraction": 0.2, "max_len": 1}, "model": model,
                 "label": {"tag_column": "xpos", "char_embed": 4}},
                {"data": {"corpus": str(tmp_path / "t.conllu"), "val_fraction": 0.2, "level": "bpe", "vocab_size": 30}, "model": model}]
    else:
        runs = [{"data": {"corpus": "airline-passengers"}, "model": {"cell": "lstm", "hidden": 4}, "forecast": {"horizon": 2, "k": [1, 2]}},
                {"model": {"cell": "mlp"}, "forecast": {"synthetic": "sine", "length": 200, "n_train": 150, "k": [1]}}]
    for i, raw in enumerate(runs):
        raw["task"] = task
        raw.setdefault("train", {}).update({"epochs": 1, "batch": 4, "threads": 1, "max_seconds": None})
        raw["output"] = {"out": str(tmp_path / f"run-{task}-{i}")}
    return runs


@pytest.mark.parametrize("task", TASKS)
def test_each_task_reads_the_options_it_claims(task, tmp_path, monkeypatch):
    reads = Reads()
    reads.install(monkeypatch)
    for raw in tiny_run_specs(task, tmp_path):
        start_run(from_dict(raw)).fit()
    claimed = {o.dotted for o in OPTIONS.values() if o.reads(task) and o.section}
    unread = claimed - reads.seen
    assert not unread, f"task {task} claims options it never reads: {sorted(unread)}"
