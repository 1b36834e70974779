"""`seqtool eval` for language models: perplexity of a checkpoint on a text or its held-out split."""

from __future__ import annotations

import json
import math
from pathlib import Path

from seqtool.core.errors import SeqtoolError
from seqtool.core.restore import restore
from seqtool.lm.task import EVAL_STREAMS, per_character, perplexity_report, spelled_sizes, token_surprisals
from seqtool.data.dataset import encode_text


def text_ids(r, data: str | None):
    """-> (ids, source): the tokens a restored language model reads, DATA or its run's held-out split."""
    task, spec = r.task, r.spec
    if data is None:
        if not spec.data.corpus or spec.data.corpus == "-":
            raise SeqtoolError("this run was trained from standard input; pass the text to score as DATA")
        full = task.from_spec(spec)  # re-reads the corpus and splits it as training did
        if full.vocab.to_list() != task.vocab.to_list():
            raise SeqtoolError(f"the corpus {spec.data.corpus} changed since training (its vocabulary differs)")
        layout = Path(spec.data.corpus).is_dir()
        ids = full.test_ids
        source = str(Path(spec.data.corpus) / "test.txt") if layout else \
            f"{spec.data.corpus} (test split: the last {spec.data.val_fraction / 2:.0%})"
    else:
        if data != "-" and Path(data).is_dir():
            data = str(Path(data) / "test.txt")  # a corpus directory: its test part
        ids = encode_text(data, task.vocab, task.level, task.clean, spec.data.encoding, spec.data.encoding_errors, task.subwords)
        source = "standard input" if data == "-" else data
    return ids, source


def evaluate_lm(checkpoint: str | None, data: str | None, device: str = "auto", per_token: bool = False):
    """-> (result dict, [(position, token, surprisal_nats)] when per_token)."""
    r = restore(checkpoint, task="lm", device=device)
    task = r.task
    ids, source = text_ids(r, data)
    surprisal = token_surprisals(r.model, ids, r.device, streams=EVAL_STREAMS)
    report = perplexity_report(surprisal)
    result = {"checkpoint": str(r.path), "source": source, "level": task.level, **report,
              **per_character(report, *spelled_sizes(task.vocab, task.level, task.counts, ids[1:]))}
    result["unk_tokens"] = int((ids[1:] == task.vocab.unk).sum())  # of the scored tokens (the first is only read)
    rows = []
    if per_token:
        tokens = task.vocab.decode(ids.tolist())
        rows = [(i + 1, tokens[i + 1], float(v)) for i, v in enumerate(surprisal.tolist())]
    return result, rows


def surprisal_tsv(rows: list[tuple[int, str, float]]) -> str:
    """Per-token surprisal as TSV: position, token (JSON-escaped), nats, bits."""
    lines = ["position\ttoken\tsurprisal_nats\tsurprisal_bits\n"]
    lines += [f"{i}\t{json.dumps(token)[1:-1]}\t{nats:.6f}\t{nats / math.log(2):.6f}\n" for i, token, nats in rows]
    return "".join(lines)


def perplexity_line(result: dict) -> str:
    return (f"{result['source']}: perplexity {result['perplexity']:.4f}  cross-entropy {result['cross_entropy_nats']:.4f} nats "
            f"({result['bits_per_token']:.4f} bits) per {result['level']} token over {result['tokens']:,} tokens; "
            f"{result['bits_per_char']:.4f} bits per character")


def eval_command(checkpoint: str | None, data: str | None, *, device: str = "auto", as_json: bool = False,
                 per_token: str | None = None) -> str:
    """What `seqtool eval` prints for a language model: the perplexity line (or JSON), and with
    --per-token the surprisal table, to stdout ('-') or written to a file."""
    from seqtool.core.run import atomic_write_text

    result, rows = evaluate_lm(checkpoint, data, device=device, per_token=per_token is not None)
    text = ""
    if per_token == "-":
        text += surprisal_tsv(rows)
    elif per_token:
        atomic_write_text(Path(per_token), surprisal_tsv(rows))
    if as_json or per_token != "-":
        text += (json.dumps(result) if as_json else perplexity_line(result)) + "\n"
    return text
