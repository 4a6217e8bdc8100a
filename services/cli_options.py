"""Option types the command line's subcommands share (argparse `type=` callables).

Invariant: imports nothing but the standard library at the top (the command line parses its
arguments before anything heavy is imported), and a bad value is an argparse error naming it.
"""

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.config.timerange import Timerange

LOG_LEVELS = ("debug", "info", "warning", "error")


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
