"""Errors a user can fix. The CLI prints their message on one line and exits with `exit_code`."""


class SeqtoolError(Exception):
    """Bad data, a missing file, a run that cannot continue: exit code 1."""

    exit_code = 1


class UsageError(SeqtoolError):
    """A bad flag, spec key or option combination: exit code 2."""

    exit_code = 2


def one_line(message: object) -> str:
    """An error message as exactly one line (a file name or YAML snippet may hold newlines)."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


def user_message(exc: BaseException, context: str, tag: str = "") -> tuple[str, int]:
    """What a failed command tells its user: one line for stderr, and the exit code."""
    if isinstance(exc, SeqtoolError):
        return f"seqtool: error: {one_line(exc)}", exc.exit_code
    from seqtool.core.faults import resource_error

    clear = resource_error(exc, context)
    if clear is not None:
        return f"seqtool: error: {one_line(clear)}", 1
    return f"seqtool: {tag}internal error: {type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback)", 1
