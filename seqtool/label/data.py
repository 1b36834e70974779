"""Labelled sequences: sentences with a label (classification) and sentences with a tag per token
(tagging), read from the files people have them in, with a line number in every complaint.

Classification: `text<TAB>label` lines (the label is the last field, so a text may hold tabs), or a
CSV with a header (--text-column, --label-column). Tagging: CoNLL-U (a tag column of 10; comment
lines, multiword-token ranges `1-2` and empty nodes `1.1` skipped) or two-column CoNLL (`token tag`,
a blank line between sentences). Either may be a directory holding train/valid/test files.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from seqtool.core.errors import SeqtoolError, UsageError
from seqtool.data.corpora import read_text

PARTS = ("train", "valid", "test")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
_CONLLU_ID = re.compile(r"\d+(?:[-.]\d+)?")
_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]", re.UNICODE)


@dataclass
class Sequence:
    """One example: its tokens and either one label (classification) or one tag per token."""

    tokens: list[str]
    labels: list[str]  # [label] for classification, a tag per token for tagging
    line: int  # where it starts in its file (1-based), for messages


def words(text: str) -> list[str]:
    """A sentence as lowercase words and punctuation marks (the classifier's tokens)."""
    return _WORD.findall(text.lower())


def layout_files(corpus: str, suffixes: tuple[str, ...]) -> dict[str, Path] | None:
    """{part: file} when `corpus` is a directory holding train/valid/test files with one of the
    suffixes; None when it is not a directory; an error naming what is missing otherwise."""
    root = Path(corpus)
    if corpus == "-" or not root.is_dir():
        return None
    for suffix in suffixes:
        found = {part: root / f"{part}{suffix}" for part in PARTS}
        if all(p.is_file() for p in found.values()):
            return found
    names = " or ".join("/".join(f"{p}{s}" for p in PARTS) for s in suffixes)
    raise SeqtoolError(f"{corpus} is a directory without {names} (the train/valid/test layout)")


# ---- classification ----------------------------------------------------------------------------------
def read_labelled(arg: str, text_column: str | None = None, label_column: str | None = None, encoding: str = "utf-8",
                  errors: str = "strict") -> list[Sequence]:
    """Sentences with one label each: a TSV (`text<TAB>label`) or, with a .csv name or a column
    flag, a CSV with a header. Blank lines are skipped; a line without a label or text is an error."""
    text = read_text(arg, encoding, errors)
    where = "standard input" if arg == "-" else arg
    if arg.lower().endswith(".csv") or text_column is not None or label_column is not None:
        return _read_csv(text, where, text_column, label_column)
    examples = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        body, tab, label = line.rpartition("\t")
        if not tab or not label.strip():
            raise SeqtoolError(f"{where}, line {number}: no label; expected text<TAB>label")
        examples.append(_example(body, label.strip(), where, number))
    if not examples:
        raise SeqtoolError(f"{where}: no labelled sentences found")
    return examples


def _example(text: str, label: str, where: str, number: int) -> Sequence:
    tokens = words(text)
    if not tokens:
        raise SeqtoolError(f"{where}, line {number}: empty text")
    return Sequence(tokens, [label], number)


def _column(header: list[str], chosen: str | None, default_name: str, fallback: int, flag: str, where: str) -> int:
    names = [h.strip().lower() for h in header]
    if chosen is None:
        return names.index(default_name) if default_name in names else fallback % len(header)
    if chosen.isdigit() and 1 <= int(chosen) <= len(header):
        return int(chosen) - 1
    if chosen.lower() in names:
        return names.index(chosen.lower())
    raise UsageError(f"{flag} {chosen!r}: {where} has columns {', '.join(header)}")


def _read_csv(text: str, where: str, text_column: str | None, label_column: str | None) -> list[Sequence]:
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
    except (StopIteration, csv.Error):
        raise SeqtoolError(f"{where}: no CSV header") from None
    if len(header) < 2:
        raise SeqtoolError(f"{where}: a CSV needs a text and a label column; its header has {len(header)} column(s)")
    t = _column(header, text_column, "text", 0, "--text-column", where)
    y = _column(header, label_column, "label", -1, "--label-column", where)
    examples = []
    try:
        for row in rows:
            number = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(t, y) or not row[y].strip():
                raise SeqtoolError(f"{where}, line {number}: no label in column {y + 1}")
            examples.append(_example(row[t], row[y].strip(), where, number))
    except csv.Error as exc:
        raise SeqtoolError(f"{where}, line {rows.line_num}: {exc}") from None
    if not examples:
        raise SeqtoolError(f"{where}: no labelled rows found")
    return examples


# ---- tagging -----------------------------------------------------------------------------------------
def read_tagged(arg: str, tag_column: str = "upos", encoding: str = "utf-8", errors: str = "strict") -> list[Sequence]:
    """Sentences with a tag per token, from CoNLL-U or two-column CoNLL (told apart by the first token
    line: a numeric ID and four or more tab-separated fields is CoNLL-U, whose every line must have 10;
    otherwise the first field is the token and the last the tag)."""
    text = read_text(arg, encoding, errors)
    where = "standard input" if arg == "-" else arg
    sentences, tokens, tags, start, width = [], [], [], 0, None
    column = _tag_column(tag_column)

    def close():
        if tokens:
            sentences.append(Sequence(list(tokens), list(tags), start))
        tokens.clear()
        tags.clear()

    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            close()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if width is None:  # the first token line says which format: an ID and 4+ tab-separated columns is CoNLL-U
            width = 10 if "\t" in line and len(fields) >= 4 and _CONLLU_ID.fullmatch(fields[0]) else 2
        if width == 10:  # CoNLL-U
            if len(fields) != 10:
                raise SeqtoolError(f"{where}, line {number}: {len(fields)} tab-separated columns; CoNLL-U has 10")
            if "-" in fields[0] or "." in fields[0]:
                continue  # a multiword token's range, or an empty node: not a token of its own
            if not fields[0].isdigit():
                raise SeqtoolError(f"{where}, line {number}: the ID column holds {fields[0]!r}, not a number")
            if column >= 10:
                raise UsageError(f"--tag-column {tag_column}: CoNLL-U has 10 columns")
            token, tag = fields[1], fields[column]
        else:
            if len(fields) < 2:
                raise SeqtoolError(f"{where}, line {number}: expected a token and a tag, found {len(fields)} column(s)")
            token, tag = fields[0], fields[-1]
        if not token or not tag or tag == "_":
            raise SeqtoolError(f"{where}, line {number}: a token without a tag")
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    close()
    if not sentences:
        raise SeqtoolError(f"{where}: no tagged sentences found")
    return sentences


def _tag_column(name: str) -> int:
    """--tag-column as a 0-based CoNLL-U column."""
    if name.isdigit() and int(name) >= 1:
        return int(name) - 1
    if name.lower() in CONLLU_COLUMNS:
        return CONLLU_COLUMNS.index(name.lower())
    raise UsageError(f"--tag-column {name!r}: use a CoNLL-U column ({', '.join(CONLLU_COLUMNS[3:5])}, deprel) or a 1-based number")


def looks_like_conll(corpus: str | None) -> bool:
    """A .conllu/.conll file, or a directory holding train.conllu (data given with no --task is tagged)."""
    if not corpus or corpus == "-":
        return False
    path = Path(corpus)
    if path.is_dir():
        return (path / "train.conllu").is_file() or (path / "train.conll").is_file()
    if not path.exists():
        from seqtool.data.corpora import load_catalog

        entry = load_catalog().get(corpus)
        return bool(entry) and entry.file.endswith((".conllu", ".conll"))
    return path.suffix.lower() in (".conllu", ".conll")


def claims(corpus: str | None, target: str | None) -> bool:
    return target is None and looks_like_conll(corpus)
