"""What the command line runs an operation with: its links in this process (OperationService) or,
for a backtest-only operation, spread over processes (services.backtest_shards.ShardedBacktest).

Invariant: the command line drives either through these protocols alone; what differs between
them (where the runs are, whether the file can be reloaded, who records the report) is decided
where the runner is made, once.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from backend.config import LoadedOperation
    from services.environment_feed import EnvironmentFeed
    from services.strategy_run import RunSummary


class Runner(Protocol):
    @property
    def operation(self) -> "LoadedOperation": ...

    @property
    def feeds(self) -> "Sequence[EnvironmentFeed]":
        """The feeds running in this process (none when the runs are in other processes)."""

    @property
    def feed_errors(self) -> list[str]: ...

    def start(self) -> None: ...

    def request_reload(self, trigger: str) -> None:
        """Reload the operation file (SIGHUP), or log why it is not."""

    def wait(self) -> "list[RunSummary]":
        """Once every run has ended: their summaries, in the operation file's link order."""


class RunReport(Protocol):
    """`--report DIR`, set up before the runs start."""

    def finish(self, summaries: "Sequence[RunSummary]") -> Path | None:
        """report.html written: its path, or None when it could not be (logged)."""

    def close(self) -> None: ...
