"""Typer options made from the run-spec declarations (seqtool/core/spec.py): the one place where a
spec option becomes a command-line flag."""

import functools
import inspect
import typing
from typing import Any, Callable, Optional

import typer

from seqtool.core.spec import OPTIONS, options_for

SpecOpt = typer.Option(None, "--spec", help="YAML run spec; flags override its fields.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress display.")


def typer_option(dotted: str, help: str | None = None, taken: frozenset = frozenset()) -> Any:
    """The typer.Option of one spec option; its default None means 'not given' (the spec decides).
    An alias that another option of the command has as its flag (`taken`) is left out."""
    option = OPTIONS[dotted]
    names = [option.flag, *(a for a in option.opt.aliases if a not in taken)]
    if option.kind is bool:
        names[0] = f"{option.flag}/{option.off_flag}"
    text = help or option.opt.help
    if option.opt.choices and "|" not in text:
        text += f" ({' | '.join(option.opt.choices)})"
    return typer.Option(None, *names, help=text)


def spec_flags(tasks: tuple[str, ...] | None = None) -> Callable:
    """Give a command one flag per spec option that one of `tasks` reads (every option for None).
    The command receives their values as `flags`: {dotted option: value or None}."""
    chosen = [o for o in options_for() if not o.opt.argument and (tasks is None or (o.dotted != "task" and set(tasks) & set(o.opt.tasks)))]

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command)
        hints = typing.get_type_hints(command)
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own.parameters.values() if p.name != "flags"]
        taken = frozenset(o.flag for o in chosen)
        params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=typer_option(o.dotted, taken=taken),
                                     annotation=Optional[str if o.kind is list else o.kind]) for o in chosen]  # a list arrives as text

        @functools.wraps(command)
        def with_flags(**kwargs):
            flags = {o.dotted: kwargs.pop(o.name) for o in chosen}
            return command(**kwargs, flags=flags)

        with_flags.__signature__ = own.replace(parameters=params)
        with_flags.__annotations__ = {p.name: p.annotation for p in params}
        return with_flags

    return decorate


