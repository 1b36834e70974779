"""Scores of labellings: accuracy, per-class precision/recall/F1, macro-F1 and the confusion matrix
for classification; token accuracy, accuracy on tokens outside the vocabulary and span-level
precision/recall/F1 for tags with B-/I- prefixes (chunks found as seqeval's default mode finds them)."""

from __future__ import annotations

from collections import Counter


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def classification_scores(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """`labels` are the classes the model knows; a gold label outside them counts as wrong, is named
    in `unseen_labels` and has a row of the confusion matrix (it can have no column)."""
    unseen = Counter(g for g in gold if g not in labels)
    rows = list(labels) + sorted(unseen)
    pairs = Counter(zip(gold, predicted))
    per_class = {}
    for label in labels:
        tp = pairs[(label, label)]
        fp = sum(v for (g, p), v in pairs.items() if p == label and g != label)
        fn = sum(v for (g, p), v in pairs.items() if g == label and p != label)
        precision, recall, f1 = _prf(tp, fp, fn)
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    present = [c for c in labels if per_class[c]["support"] or any(p == c for p in predicted)]
    return {
        "examples": len(gold),
        "accuracy": sum(g == p for g, p in zip(gold, predicted)) / max(len(gold), 1),
        "macro_f1": sum(per_class[c]["f1"] for c in present) / max(len(present), 1),
        "per_class": per_class,
        "confusion": {"gold": rows, "predicted": list(labels), "matrix": [[pairs[(g, p)] for p in labels] for g in rows]},
        "unseen_labels": dict(unseen),
    }


# ---- spans ----------------------------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    if tag in ("O", ""):
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return (prefix, kind or "_") if len(prefix) == 1 else ("O", "")


def _ends(prev: str, tag: str, prev_kind: str, kind: str) -> bool:
    return (prev in ("E", "S") or (prev in ("B", "I") and tag in ("B", "S", "O"))
            or (prev != "O" and prev_kind != kind))


def _starts(prev: str, tag: str, prev_kind: str, kind: str) -> bool:
    return (tag in ("B", "S") or (prev in ("E", "S", "O") and tag in ("E", "I"))
            or (tag != "O" and prev_kind != kind))


def spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first, last) of every chunk in a B-/I-/E-/S-/O tag sequence (an I- without a B-
    starts a chunk; a change of type ends one)."""
    found, prev, prev_kind, begin = set(), "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = _split(tag)
        if _ends(prev, prefix, prev_kind, kind):
            found.add((prev_kind, begin, i - 1))
        if _starts(prev, prefix, prev_kind, kind):
            begin = i
        prev, prev_kind = prefix, kind
    return found


def uses_spans(tagset: list[str]) -> bool:
    """Tags with B-/I- prefixes (named entities, chunks): span F1 applies."""
    return any(t.startswith(("B-", "I-")) for t in tagset)


def tagging_scores(gold: list[list[str]], predicted: list[list[str]], known: list[list[bool]], tagset: list[str]) -> dict:
    """Token accuracy overall and on the tokens outside the training vocabulary (`known` False), and
    for span tags micro-averaged span precision/recall/F1."""
    pairs = [(g, p, k) for gs, ps, ks in zip(gold, predicted, known) for g, p, k in zip(gs, ps, ks)]
    unseen = [(g, p) for g, p, k in pairs if not k]
    result = {"sentences": len(gold), "tokens": len(pairs), "accuracy": sum(g == p for g, p, _ in pairs) / max(len(pairs), 1),
              "unseen_tokens": len(unseen), "unseen_accuracy": sum(g == p for g, p in unseen) / len(unseen) if unseen else None,
              "unseen_tags": dict(Counter(g for g, _, _ in pairs if g not in tagset))}
    if uses_spans(tagset):
        tp = fp = fn = 0
        for gs, ps in zip(gold, predicted):
            g, p = spans(gs), spans(ps)
            tp, fp, fn = tp + len(g & p), fp + len(p - g), fn + len(g - p)
        result["span_precision"], result["span_recall"], result["span_f1"] = _prf(tp, fp, fn)
    return result
