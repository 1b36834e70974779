"""The `seqtool` command line. It parses flags, calls library functions and prints; seqtool.cli.app
maps every error to one line and an exit code. The shared commands live here, one module each; a
family's own commands (sample, translate, forecast, predict) live in its package and are added by
its registration (seqtool/core/family.py)."""

import importlib

from seqtool.cli.app import app, main
from seqtool.cli import eval, export, preprocess, train  # noqa: F401,E402 - registers the shared commands
from seqtool.core.family import families

for _module in dict.fromkeys(f.commands for f in families().values() if f.commands):
    importlib.import_module(_module)

__all__ = ["app", "main"]
