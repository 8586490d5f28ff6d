"""The ``cadenza`` command: run workflows, list and inspect runs, decide approvals, audit.

Each command's module is imported only when that command runs (see :mod:`cadenza.cli._lazy`),
so that ``cadenza --help`` or ``cadenza runs list`` does not import the whole engine."""

from cadenza.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
