"""Live progress bars of backtests on a terminal: one per environment whose data has an end,
drawn on stderr by rich (imported only when bars are shown) from counters the feeds keep anyway
(`ticks_sent`, `total_ticks`), read a few times a second by a thread of its own: the feeds know
nothing of it.

While the bars are shown they are also the log's stderr (`write`): every log line is printed
above them, whole and as rendered (a JSON line stays one line: rich neither wraps, crops nor
styles it).

Invariant: the bars never raise into the daemon. A terminal that goes away stops the refreshes;
the log line that fails to print raises into the log's GuardedStream, which stops the daemon as
for any closed log stream.
"""

import contextlib
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TextIO

from services.logging_setup import silence_if_standard_stream

if TYPE_CHECKING:
    from rich.progress import TaskID

REFRESH_SECONDS = 0.2


class ProgressSource(Protocol):
    """What a bar reads: an environment feed (or a sweep, a download)."""

    @property
    def environment_id(self) -> str: ...

    @property
    def ticks_sent(self) -> int: ...

    @property
    def total_ticks(self) -> int | None: ...


def candles_replayed(sources: Iterable[ProgressSource]) -> tuple[int, int]:
    """(ticks sent, ticks to send) over sources (one without a total counts none)."""
    sent = total = 0
    for source in sources:
        sent += source.ticks_sent
        total += source.total_ticks or 0
    return sent, total


class ProgressBars:
    """`with ProgressBars(feeds, sys.stderr) as bars:` shows the bars until the block ends."""

    def __init__(self, sources: Sequence[ProgressSource], stream: TextIO) -> None:
        # rich is imported only when bars are shown (`wanted`): a run without them never loads it.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._stream = stream
        self._console = Console(file=stream)
        self._progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self._console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False,
        )
        self._tasks: list[tuple[ProgressSource, TaskID]] = [
            (source, self._progress.add_task(source.environment_id, total=source.total_ticks))
            for source in sources
        ]
        self._done = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_until_done, name="progress", daemon=True)

    @staticmethod
    def wanted(stream: TextIO) -> bool:
        """Bars only for a person watching: stderr is a terminal (not a pipe, file or log collector)."""
        try:
            return stream.isatty()
        except (AttributeError, ValueError, OSError):
            return False

    def __enter__(self) -> "ProgressBars":
        with contextlib.suppress(OSError, ValueError):
            self._progress.start()
        self._refresher.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._refresher.join()
        with contextlib.suppress(OSError, ValueError):
            self._update()
            self._progress.stop()  # the bars stay on screen as they ended

    def _update(self) -> None:
        for source, task in self._tasks:
            self._progress.update(task, completed=source.ticks_sent)
        self._progress.refresh()

    def _refresh_until_done(self) -> None:
        while not self._done.wait(REFRESH_SECONDS):
            try:
                self._update()
            except (OSError, ValueError):  # the terminal went away: no more bars
                return

    # The log's stream while the bars are shown.
    def write(self, text: str) -> int:
        try:
            for line in text.splitlines():
                self._console.out(line, highlight=False)
        except (OSError, ValueError):
            silence_if_standard_stream(self._stream)
            raise
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
