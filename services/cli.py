"""`run-operation PATH`: run an operation until its data ends or SIGINT/SIGTERM (a second signal exits at once).

Exit codes: 0 success, 1 a strategy run (or an environment's feed) failed, 2 config/data error.
"""

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import structlog

from backend.config import load_operation
from backend.errors import ConfigError, ExchangeUnavailableError
from services.logging_setup import LOG_LEVELS, configure_logging
from services.operation_service import OperationService
from services.strategy_run import RunStatus, RunSummary

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run-operation", description="Run every active strategy link of an operation file."
    )
    parser.add_argument("operation", help="path to config/operations/<name>.yaml")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    return parser.parse_args(argv)


def format_summaries(summaries: Sequence[RunSummary]) -> str:
    lines = ["", "Strategy run summaries"]
    for s in summaries:
        a = s.account
        lines += [
            f"== {s.strategy_link} [{s.status.value}]",
            f"   ticks processed {s.ticks_processed:>10}   trades {a.trades:>6}   fees {a.fees_paid:>12,.2f}",
            f"   final equity {a.final_equity:>15,.2f}   PnL {a.pnl:>+13,.2f} ({a.pnl_pct:+.2f}%)"
            f"   max drawdown {a.max_drawdown_pct:.2f}%",
        ]
        if s.error:
            lines.append(f"   error: {s.error}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    log = structlog.get_logger("run-operation")
    try:
        service = OperationService(load_operation(args.operation))
    except ConfigError as exc:
        log.error("config_error", file=exc.file, key=exc.key, reason=exc.reason)
        print(f"run-operation: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ExchangeUnavailableError as exc:
        log.error("exchange_unavailable", error=str(exc))
        print(f"run-operation: exchange unavailable: {exc}", file=sys.stderr)
        return EXIT_FAILED

    def request_stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if service.stop_event.is_set():  # a second signal: the user will not wait any longer
            log.warning("forced_exit", signal=name, reason="queued ticks were not processed")
            os._exit(EXIT_FAILED)
        log.info("signal_received", signal=name)
        service.stop()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    summaries = service.run()
    print(format_summaries(summaries), flush=True)
    for error in service.feed_errors:
        print(f"run-operation: environment feed failed: {error}", file=sys.stderr)
    failed = service.feed_errors or any(s.status is RunStatus.FAILED for s in summaries)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
