"""Run specs: defaults, YAML sections with strict keys and types, overrides, relative paths, validation."""

from pathlib import Path

import pytest

from seqtool.core.errors import UsageError
from seqtool.core.spec import (ModelSpec, RunSpec, apply_overrides,
                          from_dict, load_spec)

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- defaults and round trips ------------------------------------------------------------------
def test_defaults():
    spec = RunSpec()
    assert spec.task == "lm"
    assert (spec.data.level, spec.data.clean, spec.data.sampling, spec.data.val_fraction) == ("char", "letters", "sequential", 0.1)
    assert (spec.model.cell, spec.model.hidden, spec.model.layers, spec.model.embed) == ("gru", 256, 2, 32)
    assert (spec.train.optimizer, spec.train.batch, spec.train.clip, spec.train.threads) == ("adam", 64, 1.0, None)
    assert (spec.output.out, spec.output.runs_root, spec.output.overwrite) == (None, "runs", False)


def test_empty_inputs_give_the_defaults(tmp_path):
    assert from_dict(None) == RunSpec()
    assert from_dict({}) == RunSpec()
    assert load_spec(write(tmp_path, "")) == RunSpec()
    assert load_spec(write(tmp_path, "# only a comment\nmodel:\n")) == RunSpec()  # an empty section keeps defaults


def test_to_dict_and_yaml_round_trip(tmp_path):
    spec = from_dict({"data": {"corpus": "/abs/c.txt", "level": "word"}, "model": {"cell": "lstm", "embed": 0},
                      "train": {"max_seconds": None, "lr": 0.5}, "output": {"dir": "/abs/out", "runs_root": "/abs/runs"}})
    assert from_dict(spec.to_dict()) == spec
    assert load_spec(write(tmp_path, spec.to_yaml())) == spec


def test_members_saved_under_label_read_as_the_model_option_every_family_shares(tmp_path):
    """label.members (classify and tag runs before translation had members) is model.members now."""
    old = from_dict({"task": "tag", "label": {"members": 3, "char_embed": 20}})
    assert old.model.members == 3 and old.label.char_embed == 20
    assert from_dict({"task": "tag"}).model.members == 2 and from_dict({"task": "translate"}).model.members == 1
    assert load_spec(write(tmp_path, "task: classify\nlabel:\n  members: 4\n")).model.members == 4


def test_yaml_sections_set_fields_and_coerce_ints_to_floats(tmp_path):
    spec = load_spec(write(tmp_path, """
task: lm
data:
  level: word
  min_freq: 3
model:
  cell: lstm
  hidden: 48
  dropout: 0
  tie_weights: true
  embed: 48
train:
  lr: 1
  max_seconds: 30
  clip: null
"""))
    assert (spec.data.level, spec.data.min_freq) == ("word", 3)
    assert (spec.model.cell, spec.model.hidden, spec.model.tie_weights) == ("lstm", 48, True)
    assert spec.model.dropout == 0.0 and isinstance(spec.model.dropout, float)
    assert spec.train.lr == 1.0 and isinstance(spec.train.lr, float)
    assert spec.train.max_seconds == 30.0 and isinstance(spec.train.max_seconds, float)
    assert spec.train.clip is None
    assert spec.model.layers == ModelSpec().layers  # untouched fields keep their defaults


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    spec = load_spec(write(tmp_path, "train:\n  lr: 2e-3\n  weight_decay: 1E-4\n"))
    assert spec.train.lr == pytest.approx(0.002)
    assert spec.train.weight_decay == pytest.approx(1e-4)


def test_shipped_specs_load_and_the_classic_one_is_the_classic_recipe():
    for path in sorted((REPO / "specs").glob("*.yaml")):
        load_spec(path)
    classic = load_spec(REPO / "specs" / "timemachine-classic.yaml")
    assert classic.data.corpus == "timemachine"  # a catalog name, not turned into a path
    assert (classic.data.level, classic.data.clean, classic.data.sampling) == ("char", "letters", "sequential")
    assert (classic.train.batch, classic.data.steps) == (32, 35)
    assert (classic.model.cell, classic.model.hidden, classic.model.embed) == ("gru", 256, 0)
    assert (classic.train.optimizer, classic.train.lr, classic.train.clip) == ("sgd", 1.0, 1.0)


# ---- unknown keys, wrong types, nulls ----------------------------------------------------------
def test_unknown_section_names_it_and_the_allowed_ones(tmp_path):
    path = write(tmp_path, "modle:\n  hidden: 8\n")
    with pytest.raises(UsageError) as exc:
        load_spec(path)
    message = str(exc.value)
    assert "'modle'" in message and str(path) in message
    for allowed in ("task", "data", "model", "train", "output"):
        assert allowed in message


def test_unknown_key_names_it_and_the_allowed_ones(tmp_path):
    with pytest.raises(UsageError) as exc:
        load_spec(write(tmp_path, "model:\n  hiden: 8\n"))
    message = str(exc.value)
    assert "'model.hiden'" in message
    for allowed in ("cell", "hidden", "layers", "dropout", "embed", "tie_weights"):
        assert allowed in message
    assert "batch" not in message  # only the section's own keys


@pytest.mark.parametrize("section, key, value, expected", [
    ("model", "hidden", "'big'", "expected int"),
    ("model", "hidden", "1.5", "expected int"),
    ("model", "hidden", "true", "expected int"),  # a bool is not an int
    ("train", "epochs", "2.0", "expected int"),
    ("train", "lr", "fast", "expected float"),
    ("train", "max_seconds", "[1, 2]", "expected float or null"),
    ("model", "tie_weights", "'yes'", "expected bool"),
    ("model", "tie_weights", "1", "expected bool"),
    ("data", "level", "3", "expected str"),
])
def test_wrong_types_are_rejected_naming_the_key(tmp_path, section, key, value, expected):
    with pytest.raises(UsageError, match=rf"{section}\.{key}: {expected}"):
        load_spec(write(tmp_path, f"{section}:\n  {key}: {value}\n"))


def test_section_and_top_level_must_be_mappings(tmp_path):
    with pytest.raises(UsageError, match="section 'model' must be a mapping"):
        load_spec(write(tmp_path, "model: 3\n"))
    with pytest.raises(UsageError, match="must be a mapping"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_null_is_accepted_only_where_the_field_is_optional(tmp_path):
    spec = load_spec(write(tmp_path, "train:\n  max_seconds: null\n  clip: ~\n  patience: null\n"))
    assert (spec.train.max_seconds, spec.train.clip, spec.train.patience) == (None, None, None)
    with pytest.raises(UsageError, match=r"model\.hidden: null is not allowed \(expected int\)"):
        load_spec(write(tmp_path, "model:\n  hidden: null\n"))
    with pytest.raises(UsageError, match="task: null is not allowed"):
        load_spec(write(tmp_path, "task: null\n"))


# ---- bad files ---------------------------------------------------------------------------------
def test_bad_yaml_reports_the_line(tmp_path):
    path = write(tmp_path, "data:\n  level: char\nmodel:\n  cell: [gru\n  hidden: 8\n")
    with pytest.raises(UsageError) as exc:
        load_spec(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: bad YAML (line 5,")
    assert "\n" not in message


def test_tab_indentation_reports_its_line(tmp_path):
    with pytest.raises(UsageError, match=r"bad YAML \(line 3, column 1\)"):
        load_spec(write(tmp_path, "model:\n  cell: gru\n\thidden: 8\n"))


def test_missing_spec_file(tmp_path):
    with pytest.raises(UsageError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


# ---- overrides ---------------------------------------------------------------------------------
def test_precedence_defaults_then_file_then_overrides(tmp_path):
    spec = load_spec(write(tmp_path, "model:\n  hidden: 64\n  cell: lstm\ntrain:\n  lr: 0.5\n"))
    apply_overrides(spec, {"model.hidden": 32, "model.cell": None, "train.batch": 8, "task": "lm"})
    assert spec.model.hidden == 32  # override beats the file
    assert spec.model.cell == "lstm"  # None means 'flag not given': the file's value stays
    assert spec.train.lr == 0.5  # from the file
    assert spec.train.batch == 8  # override beats the default
    assert spec.model.layers == ModelSpec().layers  # default


def test_overrides_are_type_checked_and_validated():
    with pytest.raises(UsageError, match="--hidden: expected int"):
        apply_overrides(RunSpec(), {"model.hidden": "big"})
    with pytest.raises(UsageError, match="model.cell"):
        apply_overrides(RunSpec(), {"model.cell": "transformer"})
    assert apply_overrides(RunSpec(), {"train.lr": 1}).train.lr == 1.0


# ---- paths relative to the spec file -----------------------------------------------------------
def test_paths_are_relative_to_the_spec_file(tmp_path, monkeypatch):
    specdir = tmp_path / "specs"
    specdir.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(specdir, "data:\n  corpus: data/c.txt\noutput:\n  dir: ../runs/one\n  runs_root: myruns\n")
    spec = load_spec(path)
    assert Path(spec.data.corpus) == (specdir / "data" / "c.txt").resolve()
    assert Path(spec.output.out) == (tmp_path / "runs" / "one").resolve()
    assert Path(spec.output.runs_root) == (specdir / "myruns").resolve()


def test_a_bare_file_name_beside_the_spec_is_a_path_otherwise_a_catalog_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    specdir = tmp_path / "s"
    specdir.mkdir()
    (specdir / "mytext.txt").write_text("hello there")
    assert Path(load_spec(write(specdir, "data:\n  corpus: mytext.txt\n")).data.corpus) == (specdir / "mytext.txt").resolve()
    assert load_spec(write(specdir, "data:\n  corpus: timemachine\n")).data.corpus == "timemachine"
    assert load_spec(write(specdir, "data:\n  corpus: '-'\n")).data.corpus == "-"
    absolute = str(tmp_path / "abs.txt")
    assert load_spec(write(specdir, f"data:\n  corpus: {absolute}\n")).data.corpus == absolute


def test_output_defaults_stay_relative_to_the_working_directory(tmp_path):
    spec = load_spec(write(tmp_path, "model:\n  hidden: 8\n"))
    assert spec.output.runs_root == "runs" and spec.output.out is None


# ---- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("section, key, value, message", [
    ("model", "hidden", -3, "model.hidden must be > 0, got -3"),
    ("model", "layers", 0, "model.layers must be > 0, got 0"),
    ("model", "embed", -1, "model.embed must be >= 0"),
    ("data", "steps", 0, "data.steps must be > 0"),
    ("data", "min_freq", -1, "data.min_freq must be >= 0"),
    ("train", "batch", -8, "train.batch must be > 0"),
    ("train", "lr", 0, "train.lr must be > 0"),
    ("train", "clip", -1.0, "train.clip must be > 0"),
    ("train", "threads", 0, "train.threads must be > 0"),
    ("data", "val_fraction", 1.0, r"data.val_fraction must be in \[0, 1\)"),
    ("model", "dropout", 1.0, r"model.dropout must be in \[0, 1\)"),
    ("model", "cell", "transformer", "model.cell: 'transformer' is not one of rnn, gru, lstm"),
    ("data", "sampling", "shuffled", "data.sampling: 'shuffled' is not one of random, sequential"),
    ("train", "optimizer", "lbfgs", "train.optimizer: 'lbfgs' is not one of sgd, adam, adamw"),
    ("train", "device", "tpu", "train.device"),
])
def test_validation_errors(section, key, value, message):
    with pytest.raises(UsageError, match=message):
        from_dict({section: {key: value}})


def test_unknown_task_is_rejected():
    with pytest.raises(UsageError, match="task: 'poetry' is not one of lm"):
        from_dict({"task": "poetry"})


def test_a_runs_saved_spec_keeps_only_its_tasks_options():
    lm = RunSpec().to_dict(only_used=True)
    assert set(lm) == {"task", "data", "model", "train", "output"}  # no forecast or translate section
    assert "truncation" in lm["train"] and "tgt" not in str(lm) and "attention" not in str(lm)
    forecast = from_dict({"task": "forecast"}).to_dict(only_used=True)
    assert set(forecast) == {"task", "data", "model", "train", "output", "forecast"}
    assert set(forecast["data"]) == {"corpus", "encoding", "encoding_errors"} and "embed" not in forecast["model"]
    assert from_dict(forecast) == from_dict({"task": "forecast"})  # and it loads back to the same spec
