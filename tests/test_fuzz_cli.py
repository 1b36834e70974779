"""Fuzz the CLI with hypothesis: random bytes as corpora, random flags and run specs, random
prefixes and sampling options, random text to evaluate. Every case must exit 0 (valid input) or
1/2 with exactly one `seqtool: error:` line on stderr, and never show a traceback.

Derandomized with few examples per family so the suite stays fast; `make stress` runs many more.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests import fuzzcases as fz

FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def corpus(workdir):
    path = workdir / "text.txt"
    path.write_text(fz.TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def models(workdir):
    return [fz.train_small(workdir, "letters"), fz.train_small(workdir, "none")]


@settings(FUZZ, max_examples=40)
@given(case=fz.corpus_cases)
def test_any_corpus_bytes(workdir, case):
    result = fz.run_corpus_case(case, workdir)
    assert fz.problem(result, allowed=(0, 1, 2)) is None, (fz.problem(result), case)


@FUZZ
@given(case=fz.flag_cases)
def test_any_training_flags(workdir, corpus, case):
    result = fz.run_flag_case(case, workdir, corpus)
    assert fz.problem(result) is None, (fz.problem(result), case)


@FUZZ
@given(text=fz.spec_texts)
def test_any_run_spec(workdir, corpus, text):
    result = fz.run_spec_case(text, workdir, corpus)
    assert fz.problem(result) is None, (fz.problem(result), text)


@settings(FUZZ, max_examples=40)
@given(case=fz.sample_cases)
def test_any_sampling_options_and_prefix(workdir, models, case):
    for run in models:
        result = fz.run_sample_case(case, workdir, run)
        assert fz.problem(result, allowed=(0, 2)) is None, (fz.problem(result), case)
        assert fz.sample_output_ok(case, result), (case, result.out)


@FUZZ
@given(data=fz.corpus_bytes)
def test_any_text_to_evaluate(workdir, models, data):
    result = fz.run_eval_case(data, workdir, models[1])
    assert fz.problem(result, allowed=(0, 1)) is None, (fz.problem(result), data[:100])
    assert fz.eval_output_ok(result)
