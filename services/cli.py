"""`run-operation PATH`: run an operation until its data ends or SIGINT/SIGTERM.
`run-operation validate PATH`: check it without starting anything (only when the first argument
is literally `validate`); `run-operation PATH --print-config`: print it as resolved, masked;
`run-operation new-plugin NAME`: write a first worker plugin, its test and a backtest using it;
`run-operation check PATH`: replay its backtest links' blueprints both ways and look for look-ahead;
`run-operation download-data --symbols ... --timeframes ... --since DATE`: candle files from an
exchange's trade history.

Exit codes: 0 success or a clean stop on request; 1 a strategy run failed or stalled, an
environment's feed failed, the exchange could not be reached at start, the log stream closed, or
a second signal forced the exit (for `check`: a check failed; for `download-data`: the exchange
failed, what was read is saved); 2 a config, data or credential error.

Signal handlers are installed before anything else is imported or loaded (this module imports
nothing but the standard library's lightest modules at the top: structlog, pydantic, numpy come
after), and stay until the process exits, so a SIGINT/SIGTERM at any moment ends the process
cleanly, also as PID 1 in a container (where an unhandled SIGTERM would be ignored), and a SIGHUP
never kills it: while running it reloads the operation file (one that arrived while loading, once
the operation has started; none while validating or stopping).
"""

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from services.cli_options import LOG_LEVELS, positive_int, process_count, timerange_option
from services.cli_text import format_summaries, format_sweep_table, format_walk_forward

if TYPE_CHECKING:
    from backend.config import LoadedOperation
    from backend.errors import ConfigError
    from services.runner import Runner, RunReport
    from services.status_server import OperationView

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class StopRequested(BaseException):
    """Raised in the main thread by a signal that arrives while the operation is still loading.
    A BaseException, as KeyboardInterrupt is: the `except Exception` of a library being imported,
    or of a plugin's constructor, must not swallow it."""


def _log() -> Any:
    """The daemon's logger; structlog is imported on first use, after the signal handlers."""
    import structlog

    return structlog.get_logger("run-operation")


class Shutdown:
    """Why and when the daemon was asked to stop: a signal, or a log stream that closed."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.reasons: list[str] = []
        self.loading = True  # while True, a signal interrupts the main thread's loading
        self.reload: Callable[[str], None] | None = None  # set once the operation runs
        self.reload_pending = False  # a SIGHUP came before that

    def request(self, reason: str) -> None:
        self.reasons.append(reason)
        self.requested.set()

    @property
    def log_stream_closed(self) -> bool:
        return "log_stream_closed" in self.reasons

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set() and not self.log_stream_closed:
            # A second signal: the user will not wait any longer.
            _say(f"run-operation: {name} again, exiting at once", sys.stderr)
            os._exit(EXIT_FAILED)
        self.request(name)
        if self.loading:
            raise StopRequested(name)
        _log().info("signal_received", signal=name)

    def on_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGHUP: reload the operation file (in a thread of its own: the handler returns at once)."""
        if self.requested.is_set():
            return  # stopping: nothing to reload into
        if self.reload is None:
            self.reload_pending = True
            return
        _log().info("signal_received", signal="SIGHUP")
        self.reload("SIGHUP")

    def reload_with(self, reload: Callable[[str], None]) -> None:
        """The operation runs: SIGHUP reloads it from now on, and one that came while loading now."""
        self.reload = reload
        if self.reload_pending:
            self.reload_pending = False
            reload("SIGHUP")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """`args.command` is `validate` or `sweep` when the first argument is literally that, `run`
    otherwise (so an operation file named `validate` runs as `run-operation ./validate`)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["sweep"]:
        from services.research.sweep_args import parse_sweep_args

        return parse_sweep_args(arguments[1:])
    if arguments[:1] == ["new-plugin"]:
        return _parse_new_plugin_args(arguments[1:])
    if arguments[:1] == ["check"]:
        return _parse_check_args(arguments[1:])
    if arguments[:1] == ["download-data"]:
        from services.download_args import parse_download_args

        return parse_download_args(arguments[1:])
    validate = arguments[:1] == ["validate"]
    if validate:
        parser = argparse.ArgumentParser(
            prog="run-operation validate",
            description="Check an operation's files, plugins, params, data and credentials' presence; start nothing.",
        )
        arguments = arguments[1:]
    else:
        parser = argparse.ArgumentParser(
            prog="run-operation",
            description="Run every active strategy link of an operation file.",
            epilog="Other commands: run-operation validate PATH | check PATH | sweep FILE | new-plugin NAME | "
                   "download-data --symbols ... (each with --help). The README has the whole reference.",
        )
        parser.add_argument("--version", action=_PrintVersion)
    parser.add_argument("operation", help="path to config/operations/<name>.yaml")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--data-dir", type=Path, default=Path("var"),
                        help="where live and paper accounts, orders and fills are kept (default: ./var); "
                             "validate never opens it")
    parser.add_argument("--new-state", action="store_true",
                        help="start with fresh accounts when the data dir was used before but its database is "
                             "missing (refused without it); never touches a database that exists; validate "
                             "ignores it")
    parser.add_argument("--log-dir", type=Path, metavar="DIR",
                        help="also write JSON lines to DIR: one file per strategy link and daemon.jsonl, "
                             "rotated by size; stderr keeps every line; validate ignores it")
    parser.add_argument("--log-max-bytes", type=positive_int, default=10_000_000, metavar="N",
                        help="rotate a --log-dir file before it would reach N bytes (default 10000000)")
    parser.add_argument("--log-backups", type=positive_int, default=5, metavar="N",
                        help="rotated files kept per --log-dir file: NAME.jsonl.1 .. NAME.jsonl.N (default 5)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write each run's trades.csv, equity.csv and summary.json, and report.html "
                             "comparing the runs, to DIR; validate ignores it")
    parser.add_argument("--http", type=_http_address, metavar="HOST:PORT",
                        help="serve status, metrics and control on HOST:PORT (HOST defaults to 127.0.0.1); "
                             "off unless given; validate ignores it")
    parser.add_argument("--timerange", type=timerange_option, metavar="START-END",
                        help="replay only START (inclusive) to END (exclusive) in every backtest environment, "
                             "YYYYMMDD or ISO dates, UTC, one end may be left open (20230201-20230301, "
                             "20230201-, -20230301); live and paper environments ignore it")
    parser.add_argument("--processes", type=process_count, default=1, metavar="N|auto",
                        help="spread the links of a backtest-only operation over N processes (auto: one per "
                             "CPU core), each replaying the data itself (default 1: all in this process); "
                             "ignored with live or paper links and with --http; validate ignores it")
    if not validate:
        parser.add_argument("--print-config", nargs="?", const="yaml", choices=("yaml", "json"),
                            help="print the resolved configuration (secrets masked) as yaml (default) or json, "
                                 "and exit without running")
    args = parser.parse_args(arguments)
    args.command = "validate" if validate else "run"
    return args


class _PrintVersion(argparse.Action):
    """--version: prints `run-operation <version>` of the installed package and exits 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print run-operation's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        from importlib.metadata import PackageNotFoundError, version  # only when asked: it takes a while

        try:
            installed = version("opdaemon")
        except PackageNotFoundError:
            installed = "unknown (the opdaemon package is not installed)"
        _say(f"run-operation {installed}", sys.stdout)
        parser.exit()


def _parse_new_plugin_args(arguments: list[str]) -> argparse.Namespace:
    from services.plugin_scaffold import CATEGORIES, plugin_name_problem

    parser = argparse.ArgumentParser(
        prog="run-operation new-plugin",
        description="Write a worker plugin, its test, a blueprint using it and a backtest operation on the bundled "
                    "sample data; overwrite nothing.",
    )
    parser.add_argument("name", metavar="NAME", help="the plugin's module name, a Python identifier (e.g. breakout)")
    parser.add_argument("--category", choices=CATEGORIES, default="opportunity",
                        help="the worker's category (default: opportunity)")
    parser.add_argument("--dir", type=Path, default=Path("."), metavar="DIR",
                        help="the folder to write plugins/, tests/ and config/ into (default: the current one)")
    args = parser.parse_args(arguments)
    problem = plugin_name_problem(args.name)
    if problem is not None:
        parser.error(f"NAME: {problem}")
    args.command = "new-plugin"
    return args


def _parse_check_args(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run-operation check",
        description="Check the blueprints of an operation's backtest links on their data: the columnar replay "
                    "against the tick-by-tick one, and context workers for look-ahead and for dependence on "
                    "history. Exit 0: every check passed; 1: one failed (one line each); 2: a config error.",
    )
    parser.add_argument("operation", type=Path, help="path to config/operations/<name>.yaml")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the random block sizes and rows the checks take (default 0)")
    parser.add_argument("--timerange", type=timerange_option, metavar="START-END", help="as for a run")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = parser.parse_args(arguments)
    args.command = "check"
    return args


def _http_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _say(text: str, stream: TextIO | None) -> None:
    """Print to stdout/stderr; a closed stream must not turn a clean exit into a traceback."""
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError, AttributeError):
        from services.logging_setup import silence_if_standard_stream

        silence_if_standard_stream(stream)


def main(argv: Sequence[str] | None = None) -> int:
    """The process's entry point (argv None: sys.argv; the handlers then stay until it exits), or a
    command run in-process (argv given, e.g. by tests: the caller's handlers are put back)."""
    shutdown = Shutdown()
    previous: dict[signal.Signals, Any] = {}
    try:
        # First of all: every import and load below may take a while, and a signal may come.
        for sig, handler in ((signal.SIGINT, shutdown.on_signal), (signal.SIGTERM, shutdown.on_signal),
                             (signal.SIGHUP, shutdown.on_hangup)):
            previous[sig] = signal.signal(sig, handler)
        args = parse_args(argv)
        if args.command == "sweep":
            return _sweep(args, shutdown)
        if args.command == "new-plugin":
            return _new_plugin(args)
        if args.command == "check":
            return _check(args, shutdown)
        if args.command == "download-data":
            return _download_data(args, shutdown)
        if args.command == "validate" or args.print_config:
            return _inspect(args, shutdown)
        return _run(args, shutdown)
    except StopRequested as stop:
        _say(f"run-operation: {stop} received while loading; nothing was started", sys.stderr)
        return EXIT_OK
    finally:
        shutdown.loading = False  # from here a signal is logged (a second one still exits 1 at once)
        if argv is not None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@dataclass(frozen=True)
class _Loaded:
    """An operation checked and built, nothing started yet."""

    runner: "Runner"
    report: "RunReport | None"  # --report
    status_view: "OperationView | None"  # what --http serves: the runs of this process only


def _run(args: argparse.Namespace, shutdown: Shutdown) -> int:
    with ExitStack() as cleanup:  # the state store is closed (its lock released) on every path
        loaded = _load(args, shutdown, cleanup)  # a signal while loading: StopRequested, to main
        if isinstance(loaded, int):
            return loaded
        runner = loaded.runner
        summaries = _run_with_status_server(args, loaded, shutdown)
        if isinstance(summaries, int):
            return summaries
        report_path = loaded.report.finish(summaries) if loaded.report is not None else None
    _say(format_summaries(summaries), sys.stdout)
    if report_path is not None:
        _say(f"Report: {report_path}", sys.stdout)
    elif args.report is not None:
        _say(f"run-operation: the report could not be written to {args.report} (see report_write_failed)", sys.stderr)
    for error in runner.feed_errors:
        _say(f"run-operation: environment feed failed: {error}", sys.stderr)
    if shutdown.log_stream_closed:
        return EXIT_FAILED
    failed = runner.feed_errors or any(summary.failed for summary in summaries)
    return EXIT_FAILED if failed else EXIT_OK


def _run_with_status_server(args: argparse.Namespace, loaded: _Loaded, shutdown: Shutdown) -> "list | int":
    """The runs, with the status server (--http) beside them from their start to their end."""
    if args.http is None:
        return _run_with_progress(loaded.runner, shutdown)
    from services.status_server import StatusServer

    assert loaded.status_view is not None  # with --http, links are never sharded
    # Listening before the first run starts: an address that cannot be bound stops nothing running.
    server = StatusServer.for_operation(loaded.status_view, *args.http)
    try:
        server.start()
    except OSError as exc:
        _say(f"run-operation: status server cannot listen on {args.http[0]}:{args.http[1]}: {exc}", sys.stderr)
        _log().error("status_server_failed", error=str(exc))
        server.stop()
        return EXIT_FAILED
    try:
        return _run_with_progress(loaded.runner, shutdown)
    finally:
        server.stop()


def _run_with_progress(runner: "Runner", shutdown: Shutdown) -> list:
    """The runs; on a terminal, with a progress bar per backtest environment in place of the
    `backtest_progress` lines (which the --log-dir files still get), log lines printed above.
    Sharded backtests log their shards' progress lines instead (their feeds are in other processes)."""
    from services.logging_setup import stderr_lines_to
    from services.progress import ProgressBars

    backtests = [feed for feed in runner.feeds if feed.total_ticks is not None]
    if not backtests or not ProgressBars.wanted(sys.stderr):
        return _run_reloadable(runner, shutdown)
    bars = ProgressBars(backtests, sys.stderr)
    with stderr_lines_to(bars, hidden_events={"backtest_progress"}), bars:
        return _run_reloadable(runner, shutdown)


def _run_reloadable(runner: "Runner", shutdown: Shutdown) -> list:
    """The runs, SIGHUP reloading the operation file while they run."""
    runner.start()
    shutdown.reload_with(runner.request_reload)
    return runner.wait()


def _load(args: argparse.Namespace, shutdown: Shutdown, cleanup: ExitStack) -> "_Loaded | int":
    """Everything checked and built, nothing started yet; an exit code when that failed."""
    # Imported here, after the signal handlers: loading pydantic and numpy takes a while.
    from backend.config import LiveEnvironment, load_operation
    from backend.errors import ConfigError, ExchangeError, FatalExchangeError
    from backend.state import StateStore
    from services.backtest_shards import ShardedBacktest, shardable
    from services.logging_setup import LogFiles, configure_logging
    from services.notifications import Notifier
    from services.operation_service import OperationService
    from services.report import Report, ShardedReport, ShardRecording

    files = None
    if args.log_dir is not None:
        try:
            files = LogFiles(args.log_dir, args.log_max_bytes, args.log_backups)
        except OSError as exc:
            _say(f"run-operation: config error: --log-dir {args.log_dir}: cannot write log files there: {exc}",
                 sys.stderr)
            return EXIT_CONFIG
        cleanup.callback(files.close)
    configure_logging(args.log_format, args.log_level, on_broken=lambda: shutdown.request("log_stream_closed"),
                      files=files)
    log = _log()
    log.info("operation_loading", file=args.operation)
    try:
        operation = load_operation(args.operation, args.timerange)
        _warn_if_timerange_ignored(operation)
        notifier = Notifier.for_operation(operation)
        if notifier is not None:  # before anything is built: reconciliation's mismatches are notified too
            notifier.start()
            cleanup.callback(notifier.close)
        if args.processes > 1 and len(operation.links) > 1 and args.http is None and shardable(operation):
            recording = None
            if args.report is not None:
                try:
                    args.report.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise _unwritable_report(args.report, exc) from None
                recording = partial(ShardRecording, args.report)
            sharded = ShardedBacktest(operation, args.processes, shutdown.requested, args.log_level, recording)
            cleanup.callback(sharded.abort)  # whatever happens next, no shard outlives the daemon
            sharded.prepare()
            shutdown.loading = False
            return _Loaded(sharded, ShardedReport(args.report, sharded) if args.report is not None else None, None)
        if args.processes > 1:  # asked for, but these runs stay in this process: say why
            reason = ("the operation has live or paper links" if not shardable(operation)
                      else "the status server (--http) sees the runs of its own process only" if args.http
                      else "the operation has one strategy link")
            log.warning("option_ignored", option="--processes", reason=reason)
        store = None
        if any(isinstance(link.environment, LiveEnvironment) for link in operation.links):
            store = cleanup.enter_context(closing(StateStore.open(args.data_dir, operation.path.stem,
                                                                    new_state=args.new_state)))
            log.info("state_store_opened", path=str(store.path))
        service = OperationService(operation, stop_event=shutdown.requested, store=store)
        report = None
        if args.report is not None:
            try:  # before anything starts: a DIR that cannot be written is found now
                report = Report.for_operation(args.report, service)
            except OSError as exc:
                raise _unwritable_report(args.report, exc) from None
            cleanup.callback(report.close)
            service.when_link_built(report.record)  # a link a reload adds or restarts is reported too
    except ConfigError as exc:
        _report_config_error(exc)
        return EXIT_CONFIG
    except ExchangeError as exc:  # unreachable at start (1), or a refusal a person must fix (2)
        log.error("exchange_unavailable" if not isinstance(exc, FatalExchangeError) else "exchange_refused",
                  error=str(exc))
        _say(f"run-operation: exchange error: {exc}", sys.stderr)
        return EXIT_CONFIG if isinstance(exc, FatalExchangeError) else EXIT_FAILED
    shutdown.loading = False
    return _Loaded(service, report, service)


def _unwritable_report(directory: Path, exc: OSError) -> "ConfigError":
    from backend.errors import ConfigError

    return ConfigError(f"--report {directory}", f"cannot write the report there: {exc}")


def _inspect(args: argparse.Namespace, shutdown: Shutdown) -> int:
    """`validate` or `--print-config`: load and check, print, start nothing."""
    # Imported here, after the signal handlers, as in _load.
    from backend.config import load_operation
    from backend.errors import ConfigError
    from services.config_check import summary_line, validate_operation
    from services.config_view import render, resolved_config
    from services.logging_setup import configure_logging

    configure_logging(args.log_format, args.log_level, on_broken=lambda: shutdown.request("log_stream_closed"))
    try:
        if args.command == "validate":
            operation = validate_operation(args.operation, timerange=args.timerange)
            report = summary_line(operation)
        else:
            operation = load_operation(args.operation, args.timerange)
            report = render(resolved_config(operation), args.print_config)
        _warn_if_timerange_ignored(operation)
    except ConfigError as exc:
        _report_config_error(exc)
        return EXIT_CONFIG
    _say(report, sys.stdout)
    return EXIT_OK


def _new_plugin(args: argparse.Namespace) -> int:
    """`new-plugin NAME`: the files written and how to check them; 2 (nothing written) when one exists."""
    from services.plugin_scaffold import NewPlugin, ScaffoldError, write_plugin

    plugin = NewPlugin(args.name, args.category)
    try:
        written = write_plugin(plugin, args.dir)
    except (ScaffoldError, OSError) as exc:
        _say(f"run-operation: new-plugin: {exc}", sys.stderr)
        return EXIT_CONFIG
    operation = plugin.operation_file
    _say("\n".join([
        f"Wrote {plugin.category} worker {plugin.import_path} in {args.dir}:",
        *(f"  {path}" for path in written),
        f"Next, in {args.dir}:",
        f"  PYTHONPATH=. run-operation validate {operation}",
        f"  PYTHONPATH=. python -m pytest tests/test_{plugin.name}.py",
        f"  PYTHONPATH=. run-operation {operation} --report report",
    ]), sys.stdout)
    return EXIT_OK


def _check(args: argparse.Namespace, shutdown: Shutdown) -> int:
    """`check PATH`: one line per problem; 0 none, 1 some, 2 a config error (services.blueprint_check)."""
    from backend.errors import ConfigError
    from services.blueprint_check import check_operation
    from services.config_check import validate_operation
    from services.logging_setup import configure_logging

    configure_logging(args.log_format, args.log_level, on_broken=lambda: shutdown.request("log_stream_closed"))
    try:
        operation = validate_operation(args.operation, timerange=args.timerange)
        shutdown.loading = False
        problems = 0
        for problem in check_operation(operation, args.seed):
            problems += 1
            _say(f"run-operation: check: {problem}", sys.stdout)
    except ConfigError as exc:
        _report_config_error(exc)
        return EXIT_CONFIG
    if problems:
        return EXIT_FAILED
    _say(f"run-operation: check: OK: {operation.path}: every backtest link's blueprint passed", sys.stdout)
    return EXIT_OK


def _warn_if_timerange_ignored(operation: "LoadedOperation") -> None:
    """Live and paper environments run on the exchange's clock: --timerange never reaches them."""
    from backend.config import LiveEnvironment

    ignored = list(dict.fromkeys(link.link.execution_environment_id for link in operation.links
                                 if isinstance(link.environment, LiveEnvironment)))
    if operation.timerange is not None and ignored:
        _log().warning(
            "option_ignored", option="--timerange", environments=ignored,
            reason="live and paper environments trade on the exchange's current candles")


def _sweep(args: argparse.Namespace, shutdown: Shutdown) -> int:
    """`sweep FILE`: every combination (and the walk-forward), results written, the best printed.
    Exit 0 once the results are written (failed combinations are rows of their own, and a stop on
    request writes what completed), 1 when every combination failed, 2 on a config or data error."""
    # Imported here, after the signal handlers, as in _load.
    from backend.errors import ConfigError
    from services.logging_setup import configure_logging
    from services.research.command import load_checked_sweep, make_executor, quiet_runs

    configure_logging(args.log_format, args.log_level, on_broken=lambda: shutdown.request("log_stream_closed"))
    quiet_runs()
    try:
        sweep = load_checked_sweep(args.sweep, args.executor, args.timerange)
        executor = make_executor(args, shutdown.requested)
    except ConfigError as exc:
        _report_config_error(exc)
        return EXIT_CONFIG
    shutdown.loading = False
    from services.research.command import run_and_write
    from services.research.results import partial_banner

    out = args.out or Path("sweeps") / sweep.path.stem
    rows, walk_forward, coverage, page = run_and_write(sweep, executor, shutdown.requested, out)
    if coverage.partial:
        _say(f"\n{partial_banner(coverage)}", sys.stdout)
    _say(format_sweep_table(rows, sweep.config.metric), sys.stdout)
    if walk_forward is not None:
        _say(format_walk_forward(walk_forward), sys.stdout)
    _say(f"Results: {page} (and the CSV and JSON files beside it)", sys.stdout)
    if rows and all(row.status != "completed" for row in rows) and not shutdown.requested.is_set():
        return EXIT_FAILED
    return EXIT_OK


def _download_data(args: argparse.Namespace, shutdown: Shutdown) -> int:
    """`download-data`: 0 once every symbol is downloaded or on a stop on request (what was read
    is saved), 1 when the exchange failed (likewise saved), 2 on a bad argument or state file."""
    from backend.errors import ConfigError, ExchangeError
    from services.download_data import DataDownload
    from services.logging_setup import configure_logging

    configure_logging(args.log_format, args.log_level, on_broken=lambda: shutdown.request("log_stream_closed"))
    prefix = "run-operation: download-data: "
    download = None
    try:
        download = DataDownload.prepare(args, shutdown.requested)
        if download is None:
            return EXIT_OK  # stopped while a request was retried: nothing was read
        shutdown.loading = False  # from here a signal stops the download after its current page, saved
        finished = download.run()
    except ConfigError as exc:
        _report_config_error(exc, "download-data")
        return EXIT_CONFIG
    except ExchangeError as exc:
        saved = f"; saved: {download.progress_words()}: run the same command again to resume" if download else ""
        _say(f"{prefix}exchange error: {exc}{saved}", sys.stderr)
        return EXIT_FAILED
    for line in download.summary():
        _say(line, sys.stdout)
    if not finished:
        _say(f"{prefix}stopped by {', '.join(shutdown.reasons)}; saved: {download.progress_words()}: run the same "
             "command again to resume", sys.stderr)
    return EXIT_FAILED if shutdown.log_stream_closed else EXIT_OK


def _report_config_error(exc: "ConfigError", command: str = "config error") -> None:
    """One line on stderr; the `config_error` event goes to the log files (--log-dir) only."""
    from services.logging_setup import hidden_on_stderr

    with hidden_on_stderr({"config_error"}):
        _log().error("config_error", file=exc.file, key=exc.key, reason=exc.reason)
    _say(f"run-operation: {command}: {exc}", sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
