"""The Typer application and the one exit path: every SeqtoolError becomes one line on stderr and
a non-zero exit (2 usage, 1 data/runtime), Ctrl-C 130, a closed stdout pipe 0."""

import errno
import os
import shlex
import sys

import typer

try:  # typer >= 0.2x vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer depends on click itself
    from click.exceptions import ClickException

from seqtool.core.distributed import env_rank, env_world_size, peer_failure
from seqtool.core.errors import SeqtoolError, one_line, user_message

app = typer.Typer(
    name="seqtool",
    help="Recurrent sequence modeling: language models, forecasting, translation, classification and tagging.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_COMMAND_LINE, _DEBUG = [], [False]  # as typed, less --debug; whether --debug was given


def command_line() -> str:
    """The command as the user typed it (a torchrun worker started by --nproc gets it from its parent)."""
    return os.environ.get("SEQTOOL_COMMAND") or "seqtool " + " ".join(shlex.quote(a) for a in _COMMAND_LINE)


def train_args() -> list[str]:
    """The arguments after `train`, as typed (what --nproc hands to its workers), plus --debug."""
    return _COMMAND_LINE[_COMMAND_LINE.index("train") + 1 :] + (["--debug"] if _DEBUG[0] else [])


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reader_went_away(exc: BaseException) -> bool:
    """stdout's reader closed the pipe (`| head`; typer answers one with sys.exit(1)): not an error.
    Point stdout at /dev/null so that flushing at exit cannot fail again."""
    if isinstance(exc, SystemExit) and not (isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.EPIPE):
        return False
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
    except (OSError, AttributeError, ValueError):
        pass
    return True


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr (tracebacks only with --debug)."""
    import seqtool.cli  # noqa: F401 - registers the commands

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _DEBUG[0] = "--debug" in args
    _COMMAND_LINE[:] = args = [a for a in args if a != "--debug"]
    tag = f"[rank {env_rank()}] " if env_rank() else ""
    code = 0
    try:
        returned = app(args=args, prog_name="seqtool", standalone_mode=False)
        if isinstance(returned, int) and not isinstance(returned, bool) and returned:
            raise typer.Exit(returned)  # typer turns a KeyboardInterrupt into a *returned* 130
    except (typer.Exit, typer.Abort, KeyboardInterrupt) as exc:
        code = getattr(exc, "exit_code", 130)
        if code == 130:
            err(f"seqtool: {'aborted' if isinstance(exc, typer.Abort) else 'interrupted'}")
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `seqtool`: show the help
            err(exc.format_message())
            raise SystemExit(2) from None
        hint = f" (see 'seqtool {exc.ctx.info_name} --help')" if getattr(exc, "ctx", None) and exc.ctx.info_name != "seqtool" else ""
        err(f"seqtool: error: {one_line(exc.format_message())}{hint}")
        code = exc.exit_code
    except (BrokenPipeError, SystemExit) as exc:
        if not _reader_went_away(exc):
            raise
    except Exception as exc:  # noqa: BLE001 - SeqtoolError and the last line of defence: one line, not a traceback
        if debug:
            raise
        message, code = user_message(exc, f"in '{_COMMAND_LINE[0] if _COMMAND_LINE else 'seqtool'}'", tag)
        # under torchrun every rank meets the same user error (rank 0 reports it), and a process whose
        # peer died fails in a collective (the launcher names the dead one)
        if not ((tag and isinstance(exc, SeqtoolError)) or (env_world_size() > 1 and peer_failure(exc))):
            err(message)
    sys.stdout.flush()
    raise SystemExit(code)
