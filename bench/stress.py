"""`make stress`: bad input, kills and interrupts in bulk; prints what was tried and what held.

  bad inputs   hypothesis-generated corpora, flags, run specs, sampling options and texts to
               evaluate, through the CLI in-process: each must end with exit 0 (valid after all)
               or exit 1/2 and exactly one `seqtool: error:` line, never a traceback
  kills        training children killed with SIGKILL at seeded random moments, each followed by
               --resume: the checkpoint must load and agree with metrics.jsonl
  resumes      every killed or Ctrl-C'd run, finished by --resume, must log exactly the metrics
               of the same run never interrupted (timing fields aside)

Environment: STRESS_EXAMPLES (bad inputs per family, default 150), STRESS_SESSIONS (kill series,
default 4, 8 kills each), STRESS_INTERRUPTS (Ctrl-C runs, default 6), STRESS_SEED (default 0).
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests import chaos  # noqa: E402
from tests import fuzzcases as fz  # noqa: E402

EXAMPLES = int(os.environ.get("STRESS_EXAMPLES", 150))
SESSIONS = int(os.environ.get("STRESS_SESSIONS", 4))
INTERRUPTS = int(os.environ.get("STRESS_INTERRUPTS", 6))
SEED = int(os.environ.get("STRESS_SEED", 0))
KILLS_PER_SESSION = 8
RUN_ARGS = ["--embed", "8", "--hidden", "16", "--layers", "1", "--dropout", "0.1", "--batch", "4", "--steps", "8",
            "--threads", "1", "--max-seconds", "0", "--epochs", "12", "--lr", "0.01", "--quiet"]


def fuzz(workdir: Path) -> tuple[collections.Counter, list[str]]:
    workdir.mkdir()
    corpus = workdir / "text.txt"
    corpus.write_text(fz.TEXT, encoding="utf-8")
    models = [fz.train_small(workdir, "letters"), fz.train_small(workdir, "none")]
    tried, problems = collections.Counter(), []
    hostile, valid = set(), set()

    def record(family: str, result, allowed=(0, 1, 2), extra_ok: bool = True) -> None:
        tried[family] += 1
        tried[f"exit {result.code}"] += 1
        # distinct cases: a hostile one is refused (exit 1/2), a valid one is accepted (exit 0)
        (hostile if result.code else valid).add((family, repr(result.args)))
        issue = fz.problem(result, allowed) or (None if extra_ok else "wrong output")
        if issue:
            problems.append(f"{family}: {issue} <- {[str(a)[:60] for a in result.args]}")

    def driver(strategy, body):
        options = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                           suppress_health_check=list(HealthCheck))
        return seed(SEED)(options(given(strategy)(body)))

    def sample(case):
        for model in models:
            result = fz.run_sample_case(case, workdir, model)
            record("sample", result, (0, 2), fz.sample_output_ok(case, result))

    def evaluate(data):
        result = fz.run_eval_case(data, workdir, models[1])
        record("eval", result, (0, 1), fz.eval_output_ok(result))

    families = {
        "corpus": (fz.corpus_cases, lambda case: record("corpus", fz.run_corpus_case(case, workdir))),
        "flags": (fz.flag_cases, lambda case: record("flags", fz.run_flag_case(case, workdir, corpus))),
        "spec": (fz.spec_texts, lambda text: record("spec", fz.run_spec_case(text, workdir, corpus))),
        "sample": (fz.sample_cases, sample),
        "eval": (fz.corpus_bytes, evaluate),
    }
    for name, (strategy, body) in families.items():
        t0 = time.perf_counter()
        driver(strategy, body)()
        print(f"  {name:<7} {tried[name]:>5} cases  {time.perf_counter() - t0:6.1f} s", flush=True)
    tried["distinct hostile"], tried["distinct valid"] = len(hostile), len(valid)
    return tried, problems


def main() -> int:
    chaos.warm_up()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqtool-stress-") as tmp:
        work = Path(tmp)
        print(f"bad inputs ({EXAMPLES} per family, seed {SEED}):", flush=True)
        tried, problems = fuzz(work / "fuzz")

        corpus = work / "corpus.txt"
        corpus.write_text("the quick brown fox jumps over the lazy dog. " * 30, encoding="utf-8")
        reference = chaos.reference_run(work, corpus, RUN_ARGS)
        print(f"kills ({SESSIONS} series of {KILLS_PER_SESSION}) and interrupts ({INTERRUPTS}):", flush=True)
        kills = survived = mid_write = 0
        matched, runs, weights_equal = 0, 0, 0
        for i in range(SESSIONS):
            session = work / f"kill-{i}"
            session.mkdir()
            report = chaos.kill_and_resume(session, corpus, RUN_ARGS, KILLS_PER_SESSION, SEED * 1000 + i, reference,
                                           max_delay=reference[-1]["elapsed"] / len(reference) / 2)
            kills, survived, mid_write = kills + report.kills, survived + report.survived, mid_write + report.mid_write
            equal = chaos.same_state(session / "run", work / "reference")
            runs, matched, weights_equal = runs + 1, matched + report.matched, weights_equal + equal
            print(f"  series {i}: {report.survived}/{report.kills} kills survived, {report.mid_write} mid-write, "
                  f"resume {'matched' if report.matched else 'DIFFERED'}, weights and optimizer state "
                  f"{'equal' if equal else 'DIFFERENT'}", flush=True)
        interrupted = said = 0
        for i in range(INTERRUPTS):
            session = work / f"int-{i}"
            session.mkdir()
            outcome = chaos.interrupt_and_resume(session, corpus, RUN_ARGS, SEED * 1000 + 100 + i, reference,
                                                 max_delay=reference[-1]["elapsed"])
            interrupted += outcome["interrupted"]
            said += outcome["said_how"]
            if outcome["interrupted"] and not outcome["said_how"]:
                problems.append(f"Ctrl-C did not end with the resume command: {outcome['log'].strip()[-200:]!r}")
            runs, matched = runs + 1, matched + outcome["matched"]
            weights_equal += chaos.same_state(session / "run", work / "reference")
        bad = sum(tried[f] for f in ("corpus", "flags", "spec", "sample", "eval"))
        print()
        print("stress summary")
        print(f"  fuzzed cases:       {bad} ({', '.join(f'{f} {tried[f]}' for f in ('corpus', 'flags', 'spec', 'sample', 'eval'))}); "
              f"crashes or bad stderr: {len(problems)}")
        print(f"  of which distinct:  {tried['distinct hostile']} hostile inputs refused with one line (exit 1/2), "
              f"{tried['distinct valid']} valid cases accepted (exit 0)")
        print(f"  kills survived:     {survived}/{kills} SIGKILLs ({mid_write} landed in the middle of an atomic write)")
        print(f"  Ctrl-C:             {interrupted} of {INTERRUPTS} runs interrupted ({INTERRUPTS - interrupted} had finished), "
              f"{said} exited 130 with the resume command")
        print(f"  resumes matched:    {matched}/{runs} resumed runs logged exactly the uninterrupted run's metrics; "
              f"{weights_equal}/{runs} ended with its weights and optimizer state (torch.equal)")
        print(f"  wall time:          {time.perf_counter() - t0:.0f} s")
        for line in problems[:20]:
            print("  PROBLEM", line)
        ok = not problems and survived == kills and matched == runs and weights_equal == runs and said == interrupted
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
