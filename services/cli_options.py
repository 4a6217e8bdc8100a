"""Option types the command line's subcommands share (argparse `type=` callables).

Invariant: imports nothing but the standard library at the top (the command line parses its
arguments before anything heavy is imported), and a bad value is an argparse error naming it.
"""

import argparse
import math
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from backend.config.timerange import Timerange

LOG_LEVELS = ("debug", "info", "warning", "error")
# The shapes the config schema gives a symbol and a timeframe (backend.config.schema: Symbol, Timeframe).
SYMBOL = re.compile(r"[A-Z0-9]+/[A-Z0-9]+")
TIMEFRAME = re.compile(r"[1-9][0-9]*[mhd]")


def timerange_option(text: str) -> "Timerange":
    from backend.config.timerange import Timerange

    try:
        return Timerange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def process_count(text: str) -> int:
    """N, or auto: one per CPU core."""
    return (os.cpu_count() or 1) if text == "auto" else positive_int(text)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(text)


def moment_option(text: str) -> "datetime":
    """YYYYMMDD or an ISO date (and time), UTC unless it has an offset."""
    from backend.config.timerange import parse_moment

    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def symbol_option(text: str) -> str:
    """BASE/QUOTE (any case: BTC/USD)."""
    if not SYMBOL.fullmatch(text.upper()):
        raise argparse.ArgumentTypeError(f"not BASE/QUOTE: {text!r}")
    return text.upper()


def timeframe_option(text: str) -> str:
    if not TIMEFRAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a timeframe: {text!r} (a number and m, h or d: 1m, 5m, 1h, 1d)")
    return text


def seconds_option(text: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds (0 or more): {text!r}")
    return seconds
