"""The task families seqtool knows, one registration line each (see seqtool/core/family.py). The
order is the order in which families claim data given without --task: the first claim wins."""

FAMILY_MODULES = (
    "seqtool.lm.family",
    "seqtool.forecast.family",
    "seqtool.label.family",
    "seqtool.translate.family",
)
