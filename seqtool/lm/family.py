"""The language-model family: next-token prediction on characters or words."""

from seqtool.core.family import EvalFlag, Family

LM = Family(
    name="lm",
    title="language model",
    task="seqtool.lm.task:LanguageModelTask",
    evaluate="seqtool.lm.evaluate:eval_command",
    eval_flags=(EvalFlag("--per-token", str, "language models: write each token's surprisal (TSV) here; '-' for stdout."),),
    eval_help="perplexity (cross-entropy per token) on a text or the run's test split",
    graphs="seqtool.lm.export:graphs",
    engine="seqtool.lm.export:OnnxLanguageModel",
    commands="seqtool.lm.commands",
)

FAMILIES = (LM,)
