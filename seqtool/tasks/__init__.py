"""Tasks: the one place where language modeling, translation and forecasting differ."""

from __future__ import annotations

import importlib

from seqtool.errors import UsageError

_REGISTRY = {
    "lm": "seqtool.tasks.lm:LanguageModelTask",
    "forecast": "seqtool.tasks.forecast:ForecastTask",
    "translate": "seqtool.tasks.translate:TranslationTask",
}


def get_task_class(name: str):
    if name not in _REGISTRY:
        raise UsageError(f"unknown task {name!r}; available: {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
