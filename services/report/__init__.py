"""`--report DIR`: every run's report files and the page comparing them.

DIR/<link>/ (one folder per strategy link, named like its log file) holds `trades.csv`,
`equity.csv` (written while the run goes, see services.report.recorder) and `summary.json`;
DIR/report.html compares the runs (services.report.html). Existing files are overwritten.

Invariants: the folders and CSV files are created before any run starts (a DIR that cannot be
written is found then, not after hours of backtest); each run's files are completed however it
ended (completed, failed, stalled, stopped by a signal), with what it processed up to then.
"""

from collections.abc import Sequence
from pathlib import Path

import structlog

from services.logging_setup import safe_file_stem
from services.operation_service import OperationService
from services.report.html import RunFiles, run_colour, write_report_html
from services.report.recorder import RunRecorder
from services.strategy_run import RunSummary, StrategyRun

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
        path = self.directory / REPORT_HTML
        runs: list[RunFiles] = []
        try:
            for index, summary in enumerate(summaries):
                recorder = self._recorders.get(summary.strategy_link)
                if recorder is None:  # a link nobody asked to record
                    continue
                runs.append(RunFiles(summary.strategy_link, recorder.directory, recorder.write_summary(summary),
                                     run_colour(index)))
            write_report_html(path, self.title, runs)
        except Exception as exc:  # a report that fails must not hide how the runs went
            log.exception("report_write_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return None
        log.info("report_written", path=str(path), strategy_links=[run.link_id for run in runs])
        return path
