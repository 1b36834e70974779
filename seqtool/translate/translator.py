"""Using a trained translation run: translate sentences into result records (`seqtool translate`)
and score a run on sentence pairs with BLEU/chrF (`seqtool eval` on a translation checkpoint)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from seqtool.translate import pairs as P
from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.core.restore import Restored


@dataclass
class Decoding:
    beam: int
    length_penalty: float
    nbest: int
    max_len: int | None

    def describe(self) -> str:
        if self.beam == 1:
            return "greedy"
        return f"beam {self.beam}, length penalty {self.length_penalty:g}"


def decoding_for(r: Restored, beam: int | None, length_penalty: float | None, nbest: int = 1, max_len: int | None = None) -> Decoding:
    """Flags over the run's spec (translate.beam, translate.length_penalty); checked for sense."""
    tr = r.spec.translate
    d = Decoding(tr.beam if beam is None else beam, tr.length_penalty if length_penalty is None else length_penalty, nbest, max_len)
    if d.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {d.beam}")
    if d.nbest < 1 or d.nbest > d.beam:
        raise UsageError(f"--nbest must be between 1 and the beam width ({d.beam}), got {d.nbest}")
    if d.length_penalty < 0:
        raise UsageError(f"--length-penalty must be >= 0, got {d.length_penalty}")
    if d.max_len is not None and d.max_len < 1:
        raise UsageError(f"--max-len must be >= 1, got {d.max_len}")
    return d


def line_chunks(stream, size: int):
    """Lines of a stream (newline stripped) in lists of `size`; one at a time from a terminal, so
    each translation appears as soon as its line is typed."""
    interactive, chunk = stream.isatty(), []
    for line in stream:
        chunk.append(line.rstrip("\r\n"))
        if interactive or len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def translate_records(r: Restored, sentences: Sequence[str], decoding: Decoding, *, tokenized: bool = False,
                      attention: bool = False, batch: int = 64) -> list[dict]:
    """One record per input sentence, order kept: source, its tokens, unknown words, and the
    hypotheses (text, score, normalised score, finished, attention on request). A sentence that is
    blank after normalisation gets no hypotheses."""
    task = r.task
    if attention and r.spec.translate.attention == "none":
        raise UsageError("--attention-out: this model has no attention (it was trained with attention: none)")
    results = task.translate(r.model, sentences, r.device, beam=decoding.beam, length_penalty=decoding.length_penalty,
                             nbest=decoding.nbest, max_len=decoding.max_len, attention=attention, batch=batch)
    records = []
    for sentence, hyps in zip(sentences, results):
        tokens = task.source_tokens(sentence)
        record = {
            "source": sentence,
            "source_tokens": tokens,
            "unknown": [t for t in tokens if t not in task.src_vocab],
            "translations": [],
        }
        for h in hyps:
            entry = {"text": task.target_text(h.tokens, tokenized), "score": h.score, "normalized_score": h.normalized, "finished": h.finished}
            if attention:
                entry["target_tokens"] = task.target_tokens(h.tokens) + ([P.EOS] if h.finished else [])
                entry["attention"] = [[round(w, 5) for w in row[: len(tokens) + 1]] for row in h.attention or []]
            record["translations"].append(entry)
        records.append(record)
    return records


def evaluate_translation(r: Restored, data: str | None, target: str | None, decoding: Decoding, *, sentence_bleu: bool = False,
                         samples: int = 10, batch: int = 64) -> dict:
    """Corpus BLEU and chrF (sacrebleu) of a run on pairs; a source seen several times is translated
    once and scored against all its references. Without data: the run's own held-out split."""
    from seqtool.translate.bleu import corpus_scores
    from seqtool.translate.bleu import sentence_bleu as classic_bleu
    from seqtool.translate.task import read_pairs

    task, spec = r.task, r.spec
    if data is None:
        if target is not None:
            raise UsageError("--tgt needs the source-side file as DATA")
        if not spec.data.corpus or spec.data.corpus == "-":
            raise SeqtoolError("this run was trained from standard input; pass the pairs to score as DATA")
        full = type(task).from_spec(spec)  # re-reads and re-splits the corpus exactly as training did
        if full.task_state() != task.task_state():
            raise SeqtoolError(f"the corpus {spec.data.corpus} changed since training (its vocabularies differ)")
        sources, references = full.test_sources, full.test_refs
        where = f"{spec.data.corpus} (test split: half of the held-out {spec.data.val_fraction:.0%} of the sources)"
    else:
        pairs = read_pairs(data, target, spec.data.encoding, spec.data.encoding_errors)
        if spec.translate.reverse:
            pairs = P.reverse_pairs(pairs)
        sources, references = P.group_references(pairs)
        where = "standard input" if data == "-" else data if target is None else f"{data} + {target}"
    t0 = time.perf_counter()
    hyps = task.translate(r.model, sources, r.device, beam=decoding.beam, length_penalty=decoding.length_penalty,
                          max_len=decoding.max_len, batch=batch)
    seconds = time.perf_counter() - t0
    texts = [task.target_text(h[0].tokens) if h else "" for h in hyps]
    refs = [[task.reference_text(x) for x in group] for group in references]
    scores = corpus_scores(texts, refs)
    rows = []
    for i, (source, text, group) in enumerate(zip(sources, texts, refs)):
        row = {"source": source, "translation": text, "references": group}
        if sentence_bleu:
            predicted = task.target_words(hyps[i][0].tokens) if hyps[i] else []
            row["sentence_bleu"] = max(classic_bleu(predicted, P.tokenize_sentence(ref), k=2) for ref in group)
        rows.append(row)
    result = {
        "checkpoint": str(r.path),
        "data": where,
        "sources": len(sources),
        "pairs": sum(len(g) for g in refs),
        "decoding": decoding.describe(),
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "bleu_signature": scores.bleu_signature,
        "chrf_signature": scores.chrf_signature,
        "sentences_per_s": len(sources) / max(seconds, 1e-9),
    }
    if sentence_bleu:
        result["mean_sentence_bleu"] = sum(row["sentence_bleu"] for row in rows) / max(len(rows), 1)
        result["sentences"] = rows
    else:
        result["samples"] = rows[:samples]
    return result


def markdown_report(result: dict, samples: int = 10) -> str:
    lines = [
        "# Translation evaluation",
        "",
        f"- checkpoint: `{result['checkpoint']}`",
        f"- data: {result['data']}: {result['sources']} distinct sources, {result['pairs']} references",
        f"- decoding: {result['decoding']} ({result['sentences_per_s']:,.0f} sentences/s)",
        f"- BLEU: **{result['bleu']:.2f}** (`{result['bleu_signature']}`)",
        f"- chrF: **{result['chrf']:.2f}** (`{result['chrf_signature']}`)",
    ]
    if "mean_sentence_bleu" in result:
        lines.append(f"- mean sentence BLEU (classic, k=2): {result['mean_sentence_bleu']:.3f}")
    rows = (result.get("sentences") or result.get("samples") or [])[:samples]
    with_bleu = "sentence_bleu" in (rows[0] if rows else {})
    lines += ["", "## Sample translations", "", "| source | translation | reference(s) |" + (" BLEU |" if with_bleu else ""),
              "|---|---|---|" + ("---|" if with_bleu else "")]
    for row in rows:
        cells = [row["source"], row["translation"], " / ".join(row["references"][:3])]
        line = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        lines.append(line + (f" {row['sentence_bleu']:.3f} |" if with_bleu else ""))
    return "\n".join(lines) + "\n"


def evaluate_checkpoint(checkpoint: str | None, data: str | None, target: str | None, beam: int | None, length_penalty: float | None,
                        max_len: int | None, sentence_bleu: bool = False, out: str | None = None, device: str = "auto") -> dict:
    """`seqtool eval` on a translation run: restore it, score it (flags over the run's decoding
    settings), and with `out` write eval.json and eval.md into that folder."""
    import json
    from pathlib import Path

    from seqtool.core.restore import restore
    from seqtool.core.run import atomic_write_text

    r = restore(checkpoint, task="translate", device=device)
    result = evaluate_translation(r, data, target, decoding_for(r, beam, length_penalty, 1, max_len), sentence_bleu=sentence_bleu)
    if out:
        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SeqtoolError(f"cannot create {folder}: {exc.strerror or exc}") from None
        atomic_write_text(folder / "eval.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(folder / "eval.md", markdown_report(result))
    return result


def eval_command(checkpoint: str | None, data: str | None, *, device: str = "auto", as_json: bool = False, tgt: str | None = None,
                 beam: int | None = None, length_penalty: float | None = None, max_len: int | None = None,
                 sentence_bleu: bool | None = None, out: str | None = None) -> str:
    """What `seqtool eval` prints for a translation run: the Markdown report, or JSON."""
    import json

    result = evaluate_checkpoint(checkpoint, data, tgt, beam, length_penalty, max_len, bool(sentence_bleu), out, device)
    return json.dumps(result, ensure_ascii=False) + "\n" if as_json else markdown_report(result)
