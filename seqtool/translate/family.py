"""The translation family: sequence to sequence on sentence pairs."""

from seqtool.core.family import EvalFlag, Family

TRANSLATE = Family(
    name="translate",
    title="translation run",
    task="seqtool.translate.task:TranslationTask",
    evaluate="seqtool.translate.translator:eval_command",
    eval_flags=(
        EvalFlag("--tgt", str, "translate: target-side file aligned with DATA."),
        EvalFlag("--beam", int, "translate: beam width, 1 = greedy (default: the run's)."),
        EvalFlag("--length-penalty", float, "translate: score / length**ALPHA (default: the run's)."),
        EvalFlag("--max-len", int, "translate: most tokens to generate."),
        EvalFlag("--sentence-bleu", bool, "translate: also the classic per-sentence BLEU (k=2)."),
        EvalFlag("--out", str, "translate: write eval.json and eval.md into this directory.", aliases=("-o",)),
    ),
    eval_help="BLEU and chrF on sentence pairs or the run's test split",
    graphs="seqtool.translate.export:graphs",
    engine="seqtool.translate.export:onnx_translator",
    commands="seqtool.translate.commands",
    claims="seqtool.translate.pairs:claims",
)

FAMILIES = (TRANSLATE,)
