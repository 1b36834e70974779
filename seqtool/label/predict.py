"""What `seqtool predict` and `seqtool eval` do with a trained classifier or tagger: labels for lines
of text (plain or JSON lines), and the scores of a labelled file or the run's test split."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Iterable, Iterator

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.label import data as D
from seqtool.label.family import LABELLING

FORMATS = ("slash", "conll")


def restore_labeler(checkpoint: str | None, device: str = "auto", engine: str = "torch", onnx: str | None = None):
    """A trained classifier or tagger for inference (its torch model, or its ONNX export behind the same interface)."""
    from seqtool.core.export import restore_engine
    from seqtool.core.restore import checkpoint_task

    task = checkpoint_task(checkpoint)
    if task not in LABELLING:
        raise UsageError(f"seqtool predict is for classification and tagging runs; this is a {task} run")
    return restore_engine(checkpoint, task, device, engine, onnx)


def predict_lines(r, lines: Iterable[str], *, as_json: bool = False, top: int | None = None, fmt: str = "slash",
                  batch: int = 256) -> Iterator[list[str]]:
    """One output line per input line (a CoNLL block per sentence with fmt conll), yielded a chunk of
    lines at a time as they are read (a pipe streams). Classification reads a line as text; tagging
    as tokens separated by whitespace."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    if top is not None and top < 1:
        raise UsageError("--top must be >= 1")
    if batch < 1:
        raise UsageError("--batch must be >= 1")
    task, chunk = r.task, []
    for line in itertools.chain(lines, [None]):
        if line is not None:
            chunk.append(line.rstrip("\r\n"))
            if len(chunk) < batch * 16:
                continue
        if not chunk:
            break
        tokens = [line.split() if task.per_token else D.words(line) for line in chunk]
        probs = task.predict(r.model, tokens, r.device, None if task.per_token else task.spec.data.max_len, batch)
        yield [_tags_line(task, toks, p, as_json, fmt) if task.per_token else _label_line(task, line, toks, p, as_json, top)
               for line, toks, p in zip(chunk, tokens, probs)]
        chunk = []


def _label_line(task, line: str, tokens: list[str], probs, as_json: bool, top: int | None) -> str:
    if not tokens:
        return json.dumps({"text": line, "label": None}, ensure_ascii=False) if as_json else ""
    order = probs.argsort(descending=True).tolist()
    if not as_json:
        return task.labels[order[0]]
    shown = order[: top or len(order)]
    return json.dumps({"text": line, "label": task.labels[order[0]],
                       "probabilities": {task.labels[i]: round(float(probs[i]), 6) for i in shown}}, ensure_ascii=False)


def _tags_line(task, tokens: list[str], probs, as_json: bool, fmt: str) -> str:
    tags = [task.labels[int(i)] for i in probs.argmax(-1)] if tokens else []
    if as_json:
        return json.dumps({"tokens": tokens, "tags": tags}, ensure_ascii=False)
    if fmt == "conll":
        return "".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags))
    return " ".join(f"{t}/{g}" for t, g in zip(tokens, tags))


# ---- eval ------------------------------------------------------------------------------------------
def labelled_part(r, data: str | None) -> tuple[list[D.Sequence], str]:
    """-> (sequences, source): DATA (a file, '-', or a layout directory's test file) or the run's test split."""
    task, spec = r.task, r.spec
    if data is None:
        if not spec.data.corpus or spec.data.corpus == "-":
            raise SeqtoolError("this run was trained from standard input; pass the labelled data to score as DATA")
        full = type(task).from_spec(spec)  # reads and splits the data as training did
        layout = D.layout_files(spec.data.corpus, task.suffixes)
        return full.parts["test"], str(layout["test"]) if layout else f"{spec.data.corpus} (test split)"
    layout = D.layout_files(data, task.suffixes)
    path = str(layout["test"]) if layout else data
    return type(task).read(spec, path), "standard input" if path == "-" else path


def evaluate_run(checkpoint: str | None, data: str | None, device: str = "auto", out: str | None = None) -> dict:
    from seqtool.core.restore import restore
    from seqtool.core.run import atomic_write_text

    r = restore(checkpoint, device=device)
    if r.task.name not in LABELLING:
        raise UsageError(f"this is a {r.task.name} run, not a classification or tagging run")
    part, source = labelled_part(r, data)
    result = {"checkpoint": str(r.path), "source": source, "task": r.task.name, **r.task.scores(r.model, part, r.device)}
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "eval.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        if "confusion" in result:
            confusion_plot(result["confusion"], folder / "confusion.png")
    return result


def eval_command(checkpoint: str | None, data: str | None, *, device: str = "auto", as_json: bool = False, out: str | None = None) -> str:
    """What `seqtool eval` prints for a classifier or a tagger: a table, or JSON."""
    result = evaluate_run(checkpoint, data, device, out)
    return json.dumps(result, ensure_ascii=False) + "\n" if as_json else text_report(result)


def text_report(result: dict) -> str:
    if "confusion" not in result:  # tagging
        lines = [f"{result['source']}: token accuracy {result['accuracy']:.4f} over {result['tokens']:,} tokens ({result['sentences']:,} sentences)"]
        if result["unseen_accuracy"] is not None:
            lines.append(f"tokens outside the training vocabulary: accuracy {result['unseen_accuracy']:.4f} over {result['unseen_tokens']:,}")
        if "span_f1" in result:
            lines.append(f"spans: precision {result['span_precision']:.4f}  recall {result['span_recall']:.4f}  F1 {result['span_f1']:.4f}")
        if result["unseen_tags"]:
            lines.append("tags training never saw (counted as wrong): " + ", ".join(f"{t} ({n})" for t, n in result["unseen_tags"].items()))
        return "\n".join(lines) + "\n"
    width = max(len(c) for c in [*result["confusion"]["gold"], "label"]) + 2
    lines = [f"{result['source']}: accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f} over {result['examples']:,} examples",
             "", f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    lines += [f"{label:<{width}}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['support']:>10}" for label, s in result["per_class"].items()]
    confusion = result["confusion"]
    lines += ["", "confusion (rows: gold, columns: predicted)", " " * width + "".join(f"{p:>10}" for p in confusion["predicted"])]
    lines += [f"{g:<{width}}" + "".join(f"{v:>10}" for v in row) for g, row in zip(confusion["gold"], confusion["matrix"])]
    if result["unseen_labels"]:
        lines += ["", "labels training never saw (counted as wrong): " + ", ".join(f"{k} ({v})" for k, v in result["unseen_labels"].items())]
    return "\n".join(lines) + "\n"


def confusion_plot(confusion: dict, path: Path) -> None:
    """The confusion matrix as a heat map, counts written in the cells."""
    import numpy as np

    from seqtool.core.report import pyplot, save_figure

    plt = pyplot()
    matrix = np.array(confusion["matrix"], dtype=float)
    size = max(3.0, 0.6 * max(matrix.shape) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(confusion["predicted"])), confusion["predicted"], rotation=45, ha="right")
    ax.set_yticks(range(len(confusion["gold"])), confusion["gold"])
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{int(v)}", ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    save_figure(fig, path)
    plt.close(fig)
