"""Errors a user can fix. The CLI prints their message on one line and exits with `exit_code`."""


class SeqtoolError(Exception):
    """Bad data, a missing file, a run that cannot continue: exit code 1."""

    exit_code = 1


class UsageError(SeqtoolError):
    """A bad flag, spec key or option combination: exit code 2."""

    exit_code = 2
