"""The ``cadenza`` command: run workflows, list and inspect runs, decide approvals, audit."""

import importlib

from cadenza.cli._app import app

for _module in ("run", "runs", "people", "audit"):  # each registers its commands, in this order
    importlib.import_module(f"cadenza.cli.{_module}")


def main() -> None:
    app()


__all__ = ["app", "main"]
