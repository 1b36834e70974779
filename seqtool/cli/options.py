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
CheckpointOpt = typer.Option(None, "--checkpoint", "-c", help="Checkpoint or run directory (default: latest run).")
DeviceOpt = typer.Option("auto", help="auto | cpu | cuda")
JsonOpt = typer.Option(False, "--json", help="One JSON object per line.")
EngineOpt = typer.Option("torch", help="torch | onnxruntime (the run's ONNX export: seqtool export).")
OnnxOpt = typer.Option(None, "--onnx", help="onnxruntime: the exported FILE.onnx (default: RUN/export/model.onnx).")


def with_params(command: Callable, extra: dict[str, tuple[Any, Any]], doc: str | None = None) -> Callable:
    """`command` with more keyword parameters ({name: (annotation, typer option)}); it receives their
    values together as `flags` ({name: value or None})."""
    own = inspect.signature(command)
    hints = typing.get_type_hints(command)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own.parameters.values() if p.name != "flags"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
               for name, (annotation, default) in extra.items()]

    @functools.wraps(command)
    def with_flags(**kwargs):
        flags = {name: kwargs.pop(name) for name in extra}
        return command(**kwargs, flags=flags)

    with_flags.__signature__ = own.replace(parameters=params)
    with_flags.__annotations__ = {p.name: p.annotation for p in params}
    with_flags.__doc__ = doc or command.__doc__
    return with_flags


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
    chosen = [o for o in options_for() if not o.opt.argument and (tasks is None or (o.dotted != "task" and any(map(o.reads, tasks))))]

    taken = frozenset(o.flag for o in chosen)
    extra = {o.name: (Optional[str if o.kind is list else o.kind], typer_option(o.dotted, taken=taken)) for o in chosen}  # a list arrives as text
    by_name = {o.name: o.dotted for o in chosen}

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def by_dotted(flags: dict = None, **kwargs):
            return command(**kwargs, flags={by_name[name]: value for name, value in flags.items()})

        by_dotted.__signature__ = inspect.signature(command)
        by_dotted.__annotations__ = typing.get_type_hints(command)
        return with_params(by_dotted, extra, command.__doc__)

    return decorate
