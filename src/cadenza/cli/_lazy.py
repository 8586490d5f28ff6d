"""A command group that imports a command's module only when that command runs.

Every ``cadenza`` invocation used to import every command module, and with them the engine,
the agents and the expression engine, before looking at its arguments: ``cadenza --help``
paid for ``cadenza run``. Here the group knows each command by name, module and one line of
help; ``--help`` shows those lines, and a command's module is imported when the command is
invoked (or its own ``--help`` asked for). ``tests/cli/test_lazy_cli.py`` checks that each
line matches the command's docstring."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A command (or command group) defined in ``cadenza.cli.<module>``."""

    module: str
    help: str


class _Placeholder(typer.core.TyperCommand):
    """What the group's help lists for a command whose module is not imported yet."""


class LazyGroup(TyperGroup):
    """The root group: :attr:`lazy` names the commands, :attr:`root` gives the Typer app the
    modules register their commands on (they do so when imported)."""

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}
    package: ClassVar[str] = ""
    root: ClassVar[Callable[[], typer.Typer]]

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, entry in self.lazy.items():
            if name not in self.commands:
                self.commands[name] = _Placeholder(name=name, help=entry.help)

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*self.lazy, *(name for name in self.commands if name not in self.lazy)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        command = self.commands.get(cmd_name)
        if isinstance(command, _Placeholder) and not self._listing:
            command = self.commands[cmd_name] = self._load(cmd_name)
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        """Help lists the placeholders' lines instead of importing every command."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def _load(self, name: str) -> Any:
        """Import the module that defines ``name`` and convert what it registered."""
        importlib.import_module(f"{self.package}.{self.lazy[name].module}")
        command = typer.main.get_group(type(self).root()).commands.get(name)
        if command is None or isinstance(command, _Placeholder):
            raise RuntimeError(f"{self.package}.{self.lazy[name].module} defines no {name!r}")
        return command
