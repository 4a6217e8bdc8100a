"""The arguments of `run-operation download-data` (see services/download_data.py for the rest).

Invariant: imports nothing heavy at the top (it is parsed before ccxt, pyarrow and numpy load),
and a bad argument is one line on stderr, `run-operation: download-data: --flag: reason`, exit 2.
"""

import argparse
from pathlib import Path
from typing import NoReturn

from backend.venues import VENUES
from services.cli_options import (
    LOG_LEVELS,
    moment_option,
    seconds_option,
    symbol_option,
    timeframe_option,
)

PROG = "run-operation download-data"
ERROR_PREFIX = "run-operation: download-data: "


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but an error is the one line the command line's other errors are (no usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{ERROR_PREFIX}{message.removeprefix('argument ')}\n")


def parse_download_args(arguments: list[str]) -> argparse.Namespace:
    exchanges = [name for name, entry in VENUES.items() if entry.trade_history is not None]
    parser = _OneLineErrors(
        prog=PROG,
        description="Download an exchange's trade history and write candle files a backtest environment can name "
                    "(data_file), one per symbol and timeframe; a second run appends what is new, an interrupted "
                    "one goes on where it stopped.",
    )
    parser.add_argument("--symbols", nargs="+", required=True, type=symbol_option, metavar="BASE/QUOTE",
                        help="the markets, e.g. BTC/USD ETH/USD")
    parser.add_argument("--timeframes", nargs="+", required=True, type=timeframe_option, metavar="TIMEFRAME",
                        help="the candle files' timeframes, all built from the same trades, e.g. 1m 5m 1h")
    parser.add_argument("--since", required=True, type=moment_option, metavar="DATE",
                        help="the first trade's time: YYYYMMDD or an ISO date and time, UTC (e.g. 2023-01-01)")
    parser.add_argument("--until", type=moment_option, metavar="DATE",
                        help="write only candles that ended by then (default: the exchange's clock at the start)")
    parser.add_argument("--out", type=Path, default=Path("data"), metavar="DIR",
                        help="where the files go (default: data)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                        help="the candle files' format (default: parquet)")
    parser.add_argument("--exchange", choices=exchanges, default="kraken", help="the exchange (default: kraken)")
    parser.add_argument("--api-url", metavar="URL",
                        help="the exchange's REST base URL (default: its own; tests point it at a local fake)")
    parser.add_argument("--save-every", type=seconds_option, default=60.0, metavar="SECONDS",
                        help="write the files and the progress at least this often while downloading "
                             "(default 60; 0: after every page)")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = parser.parse_args(arguments)
    if args.until is not None and args.until <= args.since:
        parser.error(f"--until: {args.until.isoformat()} is not after --since")
    args.symbols = list(dict.fromkeys(args.symbols))
    args.timeframes = list(dict.fromkeys(args.timeframes))
    args.command = "download-data"
    return args

