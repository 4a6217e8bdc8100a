"""The arguments of `run-operation sweep FILE` (see services/research/command.py for the rest).

Invariant: imports nothing heavy at the top: it is parsed before pydantic, numpy and the runs load.
"""

import argparse
import os
from pathlib import Path

from services.cli_options import LOG_LEVELS, process_count, timerange_option


def parse_sweep_args(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run-operation sweep",
        description="Run every combination of a sweep file (and its walk-forward, if it has one); write the "
                    "ranked results as CSV, JSON and HTML.",
    )
    parser.add_argument("sweep", type=Path, help="path to config/sweeps/<name>.yaml")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where results.csv, results.json and results.html go (default: sweeps/<name> "
                             "in the current directory)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local (default): processes on this machine; ray: a Ray task per CPU of the cluster, "
                             "each a slice of the combinations")
    parser.add_argument("--processes", type=process_count, default=os.cpu_count() or 1, metavar="N|auto",
                        help="--executor local: the combinations dealt over this many processes, each "
                             "running its share in one pass (default: one per CPU core; 1: all in this process)")
    parser.add_argument("--address", metavar="ADDRESS",
                        help="--executor ray: the cluster to join (e.g. ray://head:10001 or auto); "
                             "default: start a local Ray")
    parser.add_argument("--timerange", type=timerange_option, metavar="START-END",
                        help="as for a run: every combination (and a walk-forward's windows) on this range")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = parser.parse_args(arguments)
    args.command = "sweep"
    return args
