"""The progress display of the command-line tools, drawn by rich (which comes with flax).

On a terminal it is one live line: a bar, ``done/total``, the tool's own fields
(losses, points done), the rate, the elapsed time and an ETA. Elsewhere (a
pipe, a CI log) the same line is printed every few seconds instead, without
the bar. The ETA starts after the first update, whose time includes compiling.
"""
from __future__ import annotations

import sys
import time
from typing import IO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Steps per second (rich's own speed columns are for bytes)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} {self.unit}/s" if speed else f"? {self.unit}/s")


class LoopProgress:
    """A context manager showing one loop's progress.

    Args:
      description: what is running ("stylizing").
      total: steps in all (iterations).
      fields: a format string of the tool's fields, e.g. ``"loss {loss}"``, filled
        by :meth:`update`'s keywords (strings).
      unit: the step's name for the rate ("it").
      quiet: show nothing.
      stream: where to draw (default stderr).
      every: seconds between lines when ``stream`` is not a terminal.
    """

    def __init__(self, description: str, total: int, fields: str = "", *, unit: str = "it",
                 quiet: bool = False, stream: IO[str] | None = None, every: float = 5.0):
        self.quiet, self.every = quiet, every
        self.console = Console(file=stream or sys.stderr, highlight=False)
        self.live = self.console.is_terminal
        if not self.live:  # a log has no width: do not squeeze the line into 80 columns
            self.console = Console(file=stream or sys.stderr, highlight=False, width=200)
        columns = [TextColumn("{task.description}")]
        if self.live:
            columns.append(BarColumn(bar_width=24))
        columns += [MofNCompleteColumn()]
        if fields:
            columns.append(TextColumn(fields.replace("{", "{task.fields[").replace("}", "]}")))
        columns += [RateColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=self.console, disable=quiet,
                                 auto_refresh=self.live)
        names = [part.split("}")[0] for part in fields.split("{")[1:]]
        self.task = self.progress.add_task(description, total=total, **{n: "?" for n in names})
        self.first = True
        self.last_line = -float("inf")

    def __enter__(self) -> "LoopProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, completed: int, description: str | None = None, **fields: str) -> None:
        """Show ``completed`` steps done, and the fields' new values."""
        if self.quiet:
            return
        changes = {"description": description} if description is not None else {}
        if self.first:  # the first call includes compiling: time the rest from here
            self.first = False
            self.progress.reset(self.task, completed=completed, **changes, **fields)
        else:
            self.progress.update(self.task, completed=completed, **changes, **fields)
        now = time.monotonic()
        done = completed >= (self.progress.tasks[0].total or 0)
        if not self.live and not done and now - self.last_line >= self.every:
            self.console.print(self.progress.make_tasks_table(self.progress.tasks))
            self.last_line = now
