"""The `seqtool` command line: one module per subcommand. It parses flags, calls library functions
and prints; seqtool.cli.app maps every error to one line and an exit code."""

from seqtool.cli.app import app, main
from seqtool.cli import eval, export, forecast, preprocess, sample, train, translate  # noqa: F401,E402 - registers the commands

__all__ = ["app", "main"]
