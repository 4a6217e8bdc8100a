"""`--report DIR`: every run's report files and the page comparing them.

DIR/<link>/ (one folder per strategy link, named like its log file) holds `trades.csv`, `orders.csv`,
`equity.csv` (written while the run goes, see services.report.recorder) and `summary.json`;
DIR/report.html compares the runs (services.report.html). Existing files are overwritten.

Invariants: the folders and CSV files are created before any run starts (a DIR that cannot be
written is found then, not after hours of backtest); each run's files are completed however it
ended (completed, failed, stalled, stopped by a signal), with what it processed up to then.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from services.logging_setup import safe_file_stem
from services.operation_service import OperationService
from services.report.html import RunFiles, run_colour, write_report_html
from services.report.recorder import RunRecorder
from services.strategy_run import RunSummary, StrategyRun

if TYPE_CHECKING:
    from services.backtest_shards import ShardedBacktest

log = structlog.get_logger(__name__)

REPORT_HTML = "report.html"


class Report:
    def __init__(self, directory: Path, title: str) -> None:
        """Creates DIR: an OSError is the caller's."""
        self.directory = directory
        self.title = title
        self._recorders: dict[str, RunRecorder] = {}
        directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_operation(cls, directory: Path, service: OperationService) -> "Report":
        """A recorder attached to every run of service, before it starts; OSError if DIR cannot be written."""
        report = cls(directory, service.operation.config.display_name)
        timeframes = {link.link_id: link.blueprint.timeframe for link in service.operation.links}
        try:
            for run in service.runs:
                report.record(run, timeframes[run.link_id])
        except OSError:
            report.close()
            raise
        return report

    def record(self, run: StrategyRun, timeframe: str) -> None:
        """Record run from its first tick (a run started later, too): its folder and CSV files are
        created now (OSError), replacing those of an earlier run of the same link."""
        previous = self._recorders.get(run.link_id)
        if previous is not None:
            previous.close()
        self._recorders[run.link_id] = RunRecorder(self.directory / safe_file_stem(run.link_id), run.link_id,
                                                    timeframe, run.tick_manager)

    def close(self) -> None:
        """Stop recording and flush the CSV files (also on the way out of a failed start)."""
        for recorder in self._recorders.values():
            recorder.close()

    def finish(self, summaries: Sequence[RunSummary]) -> Path | None:
        """Once the runs have ended: each run's summary.json, then report.html; its path, or None
        when it could not be written (logged as `report_write_failed`)."""
        self.close()
        try:
            runs = [self.summary_files(summary) for summary in summaries if summary.strategy_link in self._recorders]
        except Exception as exc:  # a report that fails must not hide how the runs went
            log.exception("report_write_failed", path=str(self.directory), error=f"{type(exc).__name__}: {exc}")
            return None
        return write_page(self.directory, self.title, runs)

    def summary_files(self, summary: RunSummary) -> tuple[str, Path, dict[str, Any]]:
        """Write the run's summary.json; (link, its folder, what summary.json holds)."""
        recorder = self._recorders[summary.strategy_link]
        return summary.strategy_link, recorder.directory, recorder.write_summary(summary)


def write_page(directory: Path, title: str, runs: Sequence[tuple[str, Path, dict[str, Any]]]) -> Path | None:
    """report.html over runs (link, folder, summary), in that order; its path, or None when it
    could not be written (logged as `report_write_failed`)."""
    path = directory / REPORT_HTML
    try:
        write_report_html(path, title, [RunFiles(link, folder, summary, run_colour(index))
                                        for index, (link, folder, summary) in enumerate(runs)])
    except Exception as exc:  # a report that fails must not hide how the runs went
        log.exception("report_write_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")
        return None
    log.info("report_written", path=str(path), strategy_links=[link for link, _, _ in runs])
    return path


class ShardRecording:
    """`--report` with `--processes`: in each shard process (a RunObserver of services.backtest_shards)
    the runs are recorded as in one process and their summary.json written once they end; the
    parent then writes report.html (`write_page`) from the (folder, summary) each shard sends back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._service: OperationService | None = None
        self._report: Report | None = None

    def attach(self, service: OperationService) -> None:
        self._service = service
        self._report = Report.for_operation(self.directory, service)

    def results(self) -> dict[str, Any]:
        assert self._service is not None and self._report is not None, "attach() first"
        self._report.close()
        found = [self._report.summary_files(run.summary()) for run in self._service.runs]
        return {link: (folder, summary) for link, folder, summary in found}


class ShardedReport:
    """`--report` with `--processes`, in the parent: the shards record their runs (ShardRecording);
    report.html is written from the (folder, summary) they sent back."""

    def __init__(self, directory: Path, sharded: "ShardedBacktest") -> None:
        self.directory = directory
        self._sharded = sharded

    def finish(self, summaries: Sequence[RunSummary]) -> Path | None:
        found = self._sharded.observed  # (folder, summary) per link, from the shards that reported
        return write_page(self.directory, self._sharded.operation.config.display_name,
                          [(s.strategy_link, *found[s.strategy_link]) for s in summaries if s.strategy_link in found])

    def close(self) -> None:
        """Nothing is open in this process: each shard closed its own files."""
