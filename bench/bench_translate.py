"""Translation benchmark: the classic recipe (specs/fra-eng-classic.yaml) against our default
(specs/fra-eng.yaml) on the shared English–French corpus, both held out on the same sources.

Each spec is trained through the CLI in its own process (the validation half of the held-out
sources chooses its checkpoint), then scored on the test half, which the choice never saw, with
`seqtool eval` (greedy, and the spec's own decoding; deterministic). Prints test BLEU and chrF, training
time, greedy and beam-5 decoding speed at batch 64, and the four classic example sentences.
Target: the default (attention + beam) beats the classic recipe by >= 5 BLEU.

BENCH_THREADS (default 1) sets torch's CPU threads for training and decoding: these matrices are
small, and on a shared 2-core machine a second thread mostly waits (the classic spec trained 2.6x
slower with 2 threads than with 1 there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.rounds import alternate, spread  # noqa: E402
SEQTOOL = [sys.executable, "-m", "seqtool"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
EXAMPLES = [("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."), ("i'm home .", "je suis chez moi .")]


def seqtool(*args: str) -> str:
    done = subprocess.run([*SEQTOOL, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"seqtool {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def train(spec: str, out: Path, threads: int) -> dict:
    t0 = time.perf_counter()
    seqtool("train", "--spec", str(ROOT / "specs" / spec), "--out", str(out), "--threads", str(threads), "--quiet")
    report = json.loads((out / "report.json").read_text())
    return {"seconds": time.perf_counter() - t0, "epochs": report["epochs"], "best_epoch": report["best"]["epoch"]}


def decode_speed(run: Path, threads: int) -> dict:
    """Sentences/s of greedy and beam-5 decoding at batch 64 over the held-out sources."""
    import torch

    from seqtool.core.restore import restore

    torch.set_num_threads(threads)
    r = restore(str(run), task="translate", device="cpu")
    sources = r.task.from_spec(r.spec).test_sources
    sources = (sources * (512 // len(sources) + 1))[:512]
    speeds = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        r.task.translate(r.model, sources[:64], r.device, beam=beam)  # warm-up
        t0 = time.perf_counter()
        r.task.translate(r.model, sources, r.device, beam=beam, batch=64)
        speeds[name] = len(sources) / (time.perf_counter() - t0)
    return speeds


def examples(run: Path) -> list[tuple[str, str, float]]:
    from seqtool.translate.bleu import sentence_bleu

    lines = seqtool("translate", "--checkpoint", str(run), "--tokenized", *[e for e, _ in EXAMPLES]).splitlines()
    return [(src, out, sentence_bleu(out.split(), ref.split(), k=2)) for (src, ref), out in zip(EXAMPLES, lines)]


def main() -> None:
    threads = int(os.environ.get("BENCH_THREADS", 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (("classic", "fra-eng-classic.yaml"), ("default", "fra-eng.yaml")):
            run = Path(tmp) / name
            row = {"name": name, "spec": spec, **train(spec, run, threads)}
            greedy = json.loads(seqtool("eval", str(run), "--beam", "1", "--json"))
            own = json.loads(seqtool("eval", str(run), "--json"))
            row.update(greedy_bleu=greedy["bleu"], greedy_chrf=greedy["chrf"], bleu=own["bleu"], chrf=own["chrf"],
                       decoding=own["decoding"], signature=own["bleu_signature"], sources=own["sources"], pairs=own["pairs"])
            row["examples"] = examples(run)
            row["run"] = run
            rows.append(row)
            print(f"{name}: trained in {row['seconds']:.0f} s, BLEU {row['bleu']:.2f} ({row['decoding']})", file=sys.stderr, flush=True)

        # decoding speed: the two runs in alternated rounds (A B A B ...), medians with min-max
        speeds = alternate({r["name"]: (lambda run=r["run"]: decode_speed(run, threads)) for r in rows}, ROUNDS)
        for r in rows:
            r["greedy"] = spread([s["greedy"] for s in speeds[r["name"]]])
            r["beam5"] = spread([s["beam5"] for s in speeds[r["name"]]])

    print(f"\nEnglish -> French on fra-eng, test split (held out by source, never used to choose): {rows[0]['sources']} sources, "
          f"{rows[0]['pairs']} references; "
          f"{threads} CPU thread(s)")
    print(f"{'spec':<24}{'decoding':<30}{'BLEU':>7}{'chrF':>7}{'greedy BLEU':>13}{'train s (1 run)':>17}{'epochs':>8}"
          f"{'greedy sent/s':>24}{'beam5 sent/s':>20}")
    for r in rows:
        print(f"{r['spec']:<24}{r['decoding']:<30}{r['bleu']:>7.2f}{r['chrf']:>7.2f}{r['greedy_bleu']:>13.2f}{r['seconds']:>17.0f}"
              f"{r['epochs']:>8}{r['greedy']:>24}{r['beam5']:>20}")
    print(f"decoding speed: batch 64, {ROUNDS} alternated rounds, median (min-max)")
    print(f"signature: {rows[0]['signature']}")
    for r in rows:
        print(f"\nclassic examples, {r['spec']} ({r['decoding']}):")
        for src, out, bleu in r["examples"]:
            print(f"  {src:<14} => {out:<28} bleu {bleu:.3f}")
    gain = rows[1]["bleu"] - rows[0]["bleu"]
    print(f"\ndefault - classic: {gain:+.2f} BLEU (target >= +5): {'PASS' if gain >= 5 else 'FAIL'}")
    if gain < 5:
        sys.exit(1)


if __name__ == "__main__":
    main()
