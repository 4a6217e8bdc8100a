"""One measured case of the full service, run in its own process (a fresh interpreter: RSS and
caches are its own). Writes a config tree into a temporary directory: N links of one blueprint on
one backtest environment reading DATA (a candle CSV), with the given fee and no slippage; builds
the OperationService (the CSV is parsed then, outside the timing, as a peer loads its DataFrame
before it runs), times `run()` and prints one JSON object.

It only uses the service's public entry points (load_operation, OperationService), so the same
script measures an older checkout of opdaemon too (`PYTHONPATH=that/checkout`).

    python bench/service_case.py BLUEPRINT.yaml DATA.csv [--runs N] [--fee RATE] [--memory]
                                 [--also SYMBOL=DATA.csv ...]

--also: more symbols of the same environment (its `symbols` and `data_files`; DATA is BTC/USD's),
each traded by the blueprint too.
"""

import argparse
import gc
import inspect
import json
import logging
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import structlog
import yaml


def data_range(data: Path) -> tuple[str, str]:
    """[first candle, an hour after the last) of an hourly CSV: the whole file, nothing partial."""
    with data.open() as handle:
        lines = [line for line in handle.read().splitlines()[1:] if line]
    first = datetime.fromisoformat(lines[0].split(",")[0])
    last = datetime.fromisoformat(lines[-1].split(",")[0])
    return first.isoformat(), (last + timedelta(hours=1)).isoformat()


def write_tree(root: Path, blueprint: Path, data: Path, runs: int, fee: float,
               also: dict[str, Path] | None = None) -> Path:
    spec = yaml.safe_load(blueprint.read_text())
    start, end = data_range(data)
    if also:
        spec["assets"] = ["BTC/USD", *also]
    for index in range(runs):
        path = root / "config" / "strategies" / f"bench_{index}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(spec))
    environment = {
        "type": "backtest", "display_name": "bench", "data_file": str(data.resolve()), "symbol": "BTC/USD",
        "timeframe": "1h", "start": start, "end": end,
        "starting_capital": 10_000, "fee_rate": fee, "slippage_bps": 0,
    }
    if also:
        del environment["data_file"], environment["symbol"]
        environment["symbols"] = spec["assets"]
        environment["data_files"] = {"BTC/USD": str(data.resolve()),
                                     **{symbol: str(path.resolve()) for symbol, path in also.items()}}
    (root / "config" / "environments").mkdir(parents=True)
    (root / "config" / "environments" / "bench.yaml").write_text(yaml.safe_dump(environment))
    operation = {
        "display_name": "bench",
        "strategy_links": [
            {"strategy_blueprint_id": f"bench_{index}", "execution_environment_id": "bench", "is_active": True}
            for index in range(runs)
        ],
    }
    (root / "config" / "operations").mkdir(parents=True)
    path = root / "config" / "operations" / "bench.yaml"
    path.write_text(yaml.safe_dump(operation))
    return path


def deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of obj and of everything it refers to that is not in seen (classes, modules and
    functions are shared code, not counted)."""
    size, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | type(sys) | type(deep_size)):
            continue
        seen.add(id(item))
        size += sys.getsizeof(item)
        stack.extend(gc.get_referents(item))
    return size


def full_cache_bytes(run: object) -> int:
    """The run's tick cache at its fullest: at the end of one more tick (a repeat of its last
    candle, an hour later), with every DTO its workforce writes."""
    from datetime import timedelta

    from backend.market_data import RawTick
    from backend.market_data.raw_tick import columns_of

    manager = run.tick_manager  # type: ignore[attr-defined]
    context, sizes = manager._context, []
    clear = context.clear

    def measured_clear() -> None:
        sizes.append(deep_size(context, set()))
        clear()

    context.clear = measured_clear
    symbol = next(iter(manager._assets))
    last = manager._history.latest(symbol)
    tick = RawTick.trusted(symbol=symbol, timestamp=last.open_time + timedelta(hours=1), open=last.open,
                           high=last.high, low=last.low, close=last.close, volume=last.volume)
    if "stop" in inspect.signature(manager.process).parameters:  # blocks from source to run
        manager.process(columns_of((tick,)), threading.Event(), columnar=False)  # a tick's whole frame
    else:  # an older checkout: ticks one by one
        manager.process(tick)
    context.clear = clear
    return sizes[0]


def run_memory(runs: list) -> dict[str, int]:
    """Mean bytes per run of its parts, each counted once (what two parts share goes to the first)."""
    shared: set[int] = set()
    for run in runs[:1]:  # what every run refers to but does not own: the operation's config and loggers
        for name in ("_stop",):
            deep_size(getattr(run, name), shared)
    totals = {"provider": 0, "cache": 0, "history": 0, "account": 0, "workers": 0, "run": 0}
    for run in runs:
        manager = run.tick_manager
        seen = set(shared)
        totals["provider"] += deep_size(manager._context, seen)
        totals["cache"] += full_cache_bytes(run) - deep_size(manager._context, set())
        totals["history"] += deep_size(manager._history, seen)
        totals["account"] += deep_size(manager.account, seen)
        totals["workers"] += deep_size(manager._workforce, seen)
        totals["run"] += deep_size(run, seen)
    return {name: total // len(runs) for name, total in totals.items()}


def peak_rss() -> int:
    """The process's peak resident set (VmHWM: since its exec, unlike ru_maxrss, which counts the
    parent's pages copied at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("blueprint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--fee", type=float, default=0.0)
    parser.add_argument("--memory", action="store_true", help="also report memory per run and the process RSS")
    parser.add_argument("--also", action="append", default=[], metavar="SYMBOL=DATA",
                        help="another symbol of the environment and its candle CSV")
    args = parser.parse_args()
    # Warnings and errors only, as a quiet production run: no line per order filled.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from backend.config import load_operation
    from services.operation_service import OperationService

    with tempfile.TemporaryDirectory() as tmp:
        also = {symbol: Path(path) for symbol, path in (item.split("=", 1) for item in args.also)}
        operation = write_tree(Path(tmp), args.blueprint, args.data, args.runs, args.fee, also)
        service = OperationService(load_operation(operation))
        started = time.perf_counter()
        summaries = service.run()
        seconds = time.perf_counter() - started
    import backend

    result: dict[str, object] = {
        "code": str(Path(backend.__file__).resolve().parents[1]),
        "seconds": seconds,
        "candles": summaries[0].ticks_processed,
        "statuses": sorted({summary.status.value for summary in summaries}),
        "trades": summaries[0].account.trades,
        "final_equity": summaries[0].account.final_equity,
    }
    if args.memory:
        result["per_run_bytes"] = run_memory(service.runs)
        result["max_rss_bytes"] = peak_rss()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
