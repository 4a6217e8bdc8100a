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
from services.strategy_run import RunSummary

log = structlog.get_logger(__name__)

REPORT_HTML = "report.html"


class Report:
    def __init__(self, directory: Path, title: str, recorders: Sequence[RunRecorder]) -> None:
        self.directory = directory
        self.title = title
        self._recorders = {recorder.link_id: recorder for recorder in recorders}

    @classmethod
    def for_operation(cls, directory: Path, service: OperationService) -> "Report":
        """A recorder attached to every run of service, before it starts; OSError if DIR cannot be written."""
        timeframes = {link.link_id: link.blueprint.timeframe for link in service.operation.links}
        recorders: list[RunRecorder] = []
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for run in service.runs:
                recorders.append(RunRecorder(directory / safe_file_stem(run.link_id), run.link_id,
                                             timeframes[run.link_id], run.tick_manager))
        except OSError:
            for recorder in recorders:
                recorder.close()
            raise
        return cls(directory, service.operation.config.display_name, recorders)

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
                recorder = self._recorders[summary.strategy_link]
                runs.append(RunFiles(summary.strategy_link, recorder.directory, recorder.write_summary(summary),
                                     run_colour(index)))
            write_report_html(path, self.title, runs)
        except Exception as exc:  # a report that fails must not hide how the runs went
            log.exception("report_write_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return None
        log.info("report_written", path=str(path), strategy_links=[run.link_id for run in runs])
        return path
