"""The labelling families: sequence classification (a label per sequence) and tagging (a label per token)."""

from seqtool.core.family import EvalFlag, Family

OUT = EvalFlag("--out", str, "classify, tag: write eval.json (and classify: confusion.png) into this directory.", aliases=("-o",))

CLASSIFY = Family(
    name="classify",
    title="classification run",
    task="seqtool.label.task:ClassifyTask",
    evaluate="seqtool.label.predict:eval_command",
    eval_flags=(OUT,),
    eval_help="accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix on labelled sentences",
    graphs="seqtool.label.export:graphs",
    engine="seqtool.label.export:OnnxLabeler",
    commands="seqtool.label.commands",
)

TAG = Family(
    name="tag",
    title="tagging run",
    task="seqtool.label.task:TagTask",
    evaluate="seqtool.label.predict:eval_command",
    eval_flags=(OUT,),
    eval_help="token accuracy, accuracy on tokens outside the vocabulary and, for B-/I- tags, span F1",
    graphs="seqtool.label.export:graphs",
    engine="seqtool.label.export:OnnxLabeler",
    claims="seqtool.label.data:claims",
    commands="seqtool.label.commands",
)

#: the tasks `seqtool predict` serves
LABELLING = (CLASSIFY.name, TAG.name)

FAMILIES = (CLASSIFY, TAG)
