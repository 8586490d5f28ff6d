"""Live progress of the runs a command drives, on stderr (stdout holds only the result).

Each run is named when it starts, so that a run killed or interrupted half-way can be resumed
by its id. Steps in flight are shown as a spinner on a terminal, as a line per start
elsewhere (a log file cannot redraw a line); each step that finishes, fails or is skipped is a
line."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.text import Text

from cadenza.cli._app import literal
from cadenza.core.events import Event, EventType
from cadenza.core.status import WorkflowStatus

# Statuses in which a run's steps execute; a change to any other ends the steps in flight.
_EXECUTING = (WorkflowStatus.RUNNING, WorkflowStatus.ROLLBACK)


class Progress:
    """An engine observer printing what happens to runs; :meth:`close` it at the end."""

    def __init__(self, console: Console) -> None:
        self.console = console
        #: Runs named so far, in order (what an interrupted command tells how to resume).
        self.runs: list[str] = []
        self._started: dict[str, float] = {}
        self._in_flight: dict[tuple[str, str], float] = {}
        self._spinner: Status | None = None

    def known(self, run_id: str) -> None:
        """A run the command named itself (approve RUN ...): not announced again."""
        if run_id not in self.runs:
            self.runs.append(run_id)

    def announce(self, run_id: str, workflow: str, what: str = "started") -> None:
        """One ``run ID started (workflow)`` line (``what`` may be empty)."""
        self.known(run_id)
        self._print(
            Text.assemble(
                ("run ", "bold"),
                literal(run_id, one_line=True, style="bold"),
                f" {what} (" if what else " (",
                literal(workflow, one_line=True),
                ")",
            )
        )

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        if event.run_id not in self.runs:  # a run the engine started (a re-drive, a fork)
            self.announce(event.run_id, workflow, "")
        kind = event.type
        path = literal(event.path, one_line=True)
        if kind is EventType.STEP_STARTED:
            self._started.setdefault(event.path, event.ts)
            self._in_flight[(event.run_id, event.path)] = event.ts
            if not self.console.is_terminal:
                attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                self._print(Text.assemble(("▸", "dim"), " ", path, (attempt, "dim")))
        elif kind is EventType.STEP_COMPLETED:
            line = Text.assemble(("✓", "green"), " ", path)
            route = event.data.get("route")
            if route is not None:
                line.append_text(literal(f" → {', '.join(route) or '(no route)'}", one_line=True))
            begun = event.data.get("started_at") or self._started.get(event.path)
            if begun:
                line.append(f" {(event.ts - begun) * 1000:.1f} ms", style="dim")
            self._print(line)
        elif kind is EventType.STEP_FAILED:
            mark = ("↻", "yellow") if event.data.get("retry") else ("✗", "red")
            error = literal(event.data.get("error"), one_line=True)
            self._print(Text.assemble(mark, " ", path, f" (attempt {event.attempt}): ", error))
        elif kind is EventType.STEP_SKIPPED:
            self._print(Text.assemble("- ", path, " skipped", style="dim"))
        elif kind is EventType.TIMER_SET:
            wait = event.data["fire_at"] - time.time()
            self._print(Text.assemble(("⏲", "cyan"), " ", path, f" waiting {wait:.1f}s"))
        if kind in (EventType.STEP_COMPLETED, EventType.STEP_FAILED, EventType.STEP_SKIPPED):
            self._in_flight.pop((event.run_id, event.path), None)
        elif kind is EventType.STATUS and event.data.get("to") not in _EXECUTING:
            for key in [k for k in self._in_flight if k[0] == event.run_id]:
                del self._in_flight[key]
        self._spin()

    def close(self) -> None:
        """Stop the spinner (it draws from a thread of its own)."""
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def _print(self, line: Text) -> None:
        self.console.print(line, soft_wrap=True)

    def _spin(self) -> None:
        """On a terminal: a spinner naming the steps in flight, gone when none is."""
        if not self.console.is_terminal:
            return
        if not self._in_flight:
            self.close()
            return
        names = sorted({path for _, path in self._in_flight})
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        text = Text.assemble("running ", literal(shown, one_line=True))
        if self._spinner is None:
            self._spinner = self.console.status(text)
            self._spinner.start()
        else:
            self._spinner.update(text)
