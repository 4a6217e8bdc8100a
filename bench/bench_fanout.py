"""Throughput of the daemon as the number of strategy runs on one environment grows.

Replays the bundled Q1 2024 sample (repeated to `--ticks`) from memory through 1, 2 and 4
copies of each shipped blueprint, all in one run, and prints ticks per second per strategy
plus each case's wall time as a ratio of the single-run case. The "direct" row calls the same
workforce in a plain loop (no thread, queue or fan-out): the daemon's own overhead.

    python bench/bench_fanout.py [--ticks 20000]
"""

import argparse
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import structlog

from backend.config import load_operation
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data import RawTick, TickSource
from backend.market_data.backtest_source import BLOCK_CANDLES, BacktestSource
from backend.market_data.raw_tick import columns_of, ticks_of
from services.operation_service import OperationService

REPO = Path(__file__).resolve().parents[1]


class MemorySource(TickSource):
    def __init__(self, ticks: list[RawTick]) -> None:
        self._blocks = blocks_of(ticks)
        self.total_ticks = len(ticks)

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        yield from self._blocks


def blocks_of(ticks: list[RawTick]) -> list[CandleColumns]:
    return [columns_of(ticks[start:start + BLOCK_CANDLES]) for start in range(0, len(ticks), BLOCK_CANDLES)]


def sample_ticks(count: int) -> list[RawTick]:
    operation = load_operation(REPO / "config/operations/backtest_demo.yaml")
    base = [tick for block in BacktestSource(operation.links[0].environment).blocks(threading.Event())
            for tick in ticks_of(block)]
    hour = timedelta(hours=1)
    return [
        t.model_copy(update={"timestamp": base[0].timestamp + i * hour})
        for i, t in zip(range(count), itertools.cycle(base))
    ]


def service_for(blueprint_id: str, copies: int, ticks: list[RawTick]) -> OperationService:
    operation = load_operation(REPO / "config/operations/backtest_demo.yaml")
    template = next(x for x in operation.links if x.link.strategy_blueprint_id == blueprint_id)
    links = [
        replace(template, link=template.link.model_copy(update={"strategy_blueprint_id": f"{blueprint_id}_{i}"}))
        for i in range(copies)
    ]
    return OperationService(replace(operation, links=links), source_factory=lambda env: MemorySource(ticks))


def timed_run(blueprint_id: str, copies: int, ticks: list[RawTick]) -> float:
    service = service_for(blueprint_id, copies, ticks)
    started = time.perf_counter()
    service.run()
    return time.perf_counter() - started


def timed_direct(blueprint_id: str, ticks: list[RawTick]) -> float:
    manager = service_for(blueprint_id, 1, ticks).runs[0].tick_manager
    started = time.perf_counter()
    for block in blocks_of(ticks):
        manager.process(block, threading.Event())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=20_000)
    args = parser.parse_args()
    # Quiet: logging is not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    ticks = sample_ticks(args.ticks)
    print(f"{args.ticks} ticks per strategy run")
    print(f"{'blueprint':<18}{'runs':>7}{'seconds':>10}{'ticks/s/run':>14}{'time vs 1 run':>15}")
    for blueprint_id in ("ict_smc_strategy", "smart_dca_btc"):
        single = timed_run(blueprint_id, 1, ticks)
        cases = [("direct", timed_direct(blueprint_id, ticks)), ("1", single)]
        cases += [(str(copies), timed_run(blueprint_id, copies, ticks)) for copies in (2, 4)]
        for runs, seconds in cases:
            rate = args.ticks / seconds
            print(f"{blueprint_id:<18}{runs:>7}{seconds:>10.2f}{rate:>14,.0f}{seconds / single:>14.2f}x")


if __name__ == "__main__":
    main()
