"""Task families: each declares, in its own package, everything the shared layers need from it.

A family module (seqtool/lm/family.py, ...) holds `FAMILIES`, a tuple of `Family` declarations, and
seqtool/registry.py lists those modules, one line each. `core` and `cli` look a family up by the task
name a spec or checkpoint carries and call what it declares; they never branch on a name. Hooks are
"module:attribute" strings, imported when first used, so that `seqtool sample` never loads
translation and reading the registry imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from seqtool.core.errors import UsageError


@dataclass(frozen=True)
class EvalFlag:
    """A flag `seqtool eval` accepts for a family: passed to its evaluate hook as `name` (the flag
    without dashes, '-' -> '_'); None when not given. Families may share a flag (the same kind)."""

    flag: str  # "--per-token"
    kind: type  # str | int | float | bool
    help: str
    aliases: tuple[str, ...] = ()  # more names for it: "-o"

    @property
    def name(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Family:
    """One task family: its task and how the rest of the program reaches it."""

    name: str  # the task name in specs, checkpoints and --task
    title: str  # what a run of it is called in messages: "language model", "translation run"
    task: str  # "module:Class" of its seqtool.core.task.Task
    #: "module:function" f(checkpoint, data, *, device, as_json, **eval flags) -> the text `seqtool eval` prints
    evaluate: str | None = None
    eval_flags: tuple[EvalFlag, ...] = ()
    eval_help: str = ""  # one line for `seqtool eval --help`: what eval reports for this family
    graphs: str | None = None  # "module:function" f(restored) -> [seqtool.core.export.Graph]: its ONNX graphs
    engine: str | None = None  # "module:Class" cls(sessions, spec): the export behind the torch model's interface
    #: "module:function" f(corpus, target) -> bool: whether data given with no --task is this family's (first claim wins)
    claims: str | None = None
    #: model cells `--model auto` tries, in order of preference: the first whose task builds on the
    #: data and flags wins (the last one's errors are the run's); empty: the family has no auto
    auto_cells: tuple[str, ...] = ()
    #: a module whose import adds the family's own commands to the CLI (`seqtool sample`, `translate`, `forecast`, `predict`)
    commands: str | None = None

    def hook(self, which: str) -> Any:
        """The object a hook names, imported now."""
        path = getattr(self, which)
        if path is None:
            missing = {"graphs": "cannot be exported to ONNX", "engine": "have no onnxruntime engine", "evaluate": "cannot be scored by eval"}
            raise UsageError(f"{self.title}s {missing.get(which, 'have no ' + which)}")
        module, attribute = path.split(":")
        return getattr(importlib.import_module(module), attribute)


_FAMILIES: dict[str, Family] = {}
_LOADED = [False]


def families() -> dict[str, Family]:
    """Every family by name, in registration order (seqtool/registry.py, then register() calls)."""
    if not _LOADED[0]:
        from seqtool.registry import FAMILY_MODULES

        _LOADED[0] = True
        for module in FAMILY_MODULES:
            for declared in importlib.import_module(module).FAMILIES:
                register(declared)
    return _FAMILIES


def register(declared: Family) -> Family:
    """Add a family (a plugin, or a test's); a name is registered once."""
    if declared.name in _FAMILIES and _FAMILIES[declared.name] != declared:
        raise ValueError(f"a task family named {declared.name!r} is registered already")
    _FAMILIES[declared.name] = declared
    return declared


def unregister(name: str) -> None:
    """Remove a family registered with register() (tests clean up with it)."""
    _FAMILIES.pop(name, None)


def family(name: str) -> Family:
    found = families().get(name)
    if found is None:
        raise UsageError(f"unknown task {name!r}; available: {', '.join(families())}")
    return found


def family_names() -> tuple[str, ...]:
    return tuple(families())


def claimed_task(corpus: str | None, target: str | None) -> str | None:
    """The family whose data this looks like when no task is named (None: no family claims it)."""
    for declared in families().values():
        if declared.claims and declared.hook("claims")(corpus, target):
            return declared.name
    return None


def eval_flags() -> dict[str, tuple[EvalFlag, tuple[Family, ...]]]:
    """Every eval flag any family declares -> (one declaration whose help joins every family's, the
    families that accept it)."""
    table: dict[str, tuple[EvalFlag, tuple[Family, ...]]] = {}
    for declared in families().values():
        for flag in declared.eval_flags:
            if flag.flag not in table:
                table[flag.flag] = (flag, (declared,))
                continue
            first, users = table[flag.flag]
            if first.kind is not flag.kind:
                raise ValueError(f"eval flag {flag.flag} is a {first.kind.__name__} for {users[0].name}, a {flag.kind.__name__} for {declared.name}")
            joined = first.help if flag.help in first.help else f"{first.help} {flag.help}"
            table[flag.flag] = (EvalFlag(first.flag, first.kind, joined, first.aliases), users + (declared,))
    return table
