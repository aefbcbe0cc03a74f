"""Progress of long commands: a count and an estimate of the time left.

On a terminal, a rich progress bar (count, elapsed, time left) that disappears when done;
otherwise (a log, CI, a pipe) one line per finished unit on stderr, e.g.
`solving 3/20 small/zipf-002 hierarchical (12 s, about 68 s left)`, so that a long run
is never silent.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class Tracker:
    """Counts finished units of `total`; `advance(what)` after each."""

    def __init__(self, label: str, total: int, done: int, stream: TextIO, bar: Progress | None):
        self.label, self.total, self.done = label, total, done
        self._stream, self._bar = stream, bar
        self._start, self._start_done = time.monotonic(), done
        self._task = bar.add_task(label, total=total, completed=done) if bar else None

    def advance(self, what: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{self.label} {what}".strip())
            return
        elapsed = time.monotonic() - self._start
        left = self.remaining(elapsed)
        estimate = f", about {left:.0f} s left" if left is not None else ""
        words = " ".join(part for part in (self.label, f"{self.done}/{self.total}", what) if part)
        print(f"{words} ({elapsed:.0f} s{estimate})", file=self._stream, flush=True)

    def remaining(self, elapsed: float) -> float | None:
        """Seconds left at the pace of the units finished in this run (None before any)."""
        finished = self.done - self._start_done
        return elapsed / finished * (self.total - self.done) if finished > 0 else None


@contextmanager
def tracked(label: str, total: int, done: int = 0,
            stream: TextIO | None = None) -> Iterator[Tracker]:
    """A Tracker for `total` units (`done` of them finished before), drawn as a bar on a
    terminal and logged line by line elsewhere."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield Tracker(label, total, done, stream, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=stream), transient=True) as bar:
        yield Tracker(label, total, done, stream, bar)
