"""Builders shared by the tests: ticks, CSV files, config trees and a recording worker."""

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import DTO
from backend.interfaces import IWorker, WorkerCategory, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data import RawTick, TickSource
from backend.market_data.raw_tick import columns_of, ticks_of
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from services.tick_cache_manager import TickCacheManager

REPO = Path(__file__).resolve().parents[1]
START = datetime(2024, 1, 1, tzinfo=UTC)


def tick(
    index: int,
    close: float,
    *,
    open: float | None = None,
    high: float | None = None,
    low: float | None = None,
    symbol: str = "BTC/USD",
    volume: float = 1.0,
    missing_before: int = 0,
) -> RawTick:
    open_ = close if open is None else open
    return RawTick(
        symbol=symbol,
        timestamp=START + timedelta(hours=index),
        open=open_,
        high=max(open_, close) if high is None else high,
        low=min(open_, close) if low is None else low,
        close=close,
        volume=volume,
        missing_before=missing_before,
    )


def ticks_from_closes(closes: Iterable[float], symbol: str = "BTC/USD") -> list[RawTick]:
    return [tick(i, c, symbol=symbol) for i, c in enumerate(closes)]


def write_csv(path: Path, ticks: Sequence[RawTick]) -> Path:
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [
        f"{t.timestamp.isoformat().replace('+00:00', 'Z')},{t.open},{t.high},{t.low},{t.close},{t.volume}"
        for t in ticks
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def backtest_environment(data_file: str = "../../data/ticks.csv", **overrides: Any) -> dict:
    return {
        "type": "backtest",
        "display_name": "test data",
        "data_file": data_file,
        "symbol": "BTC/USD",
        "timeframe": "1h",
        "start": "2024-01-01T00:00:00Z",
        "end": "2025-01-01T00:00:00Z",
        "starting_capital": 10_000,
        "fee_rate": 0.001,
        **overrides,
    }


def write_config_tree(
    root: Path,
    links: Sequence[tuple[str, str]],
    blueprints: dict[str, dict],
    environments: dict[str, dict],
    ticks: Sequence[RawTick] = (),
    operation_settings: dict | None = None,
) -> Path:
    """config/{operations,strategies,environments} plus data/ticks.csv under root; returns the
    operation file's path. links are (blueprint id, environment id) pairs, all active;
    operation_settings are extra keys of the operation file (e.g. stall_timeout_seconds)."""
    for blueprint_id, blueprint in blueprints.items():
        write_yaml(root / "config" / "strategies" / f"{blueprint_id}.yaml", blueprint)
    for environment_id, environment in environments.items():
        write_yaml(root / "config" / "environments" / f"{environment_id}.yaml", environment)
    if ticks:
        write_csv(root / "data" / "ticks.csv", ticks)
    operation = {
        "display_name": "test operation",
        "strategy_links": [
            {"strategy_blueprint_id": b, "execution_environment_id": e, "is_active": True}
            for b, e in links
        ],
        **(operation_settings or {}),
    }
    return write_yaml(root / "config" / "operations" / "op.yaml", operation)


def blueprint(workforce: dict, assets: Sequence[str] = ("BTC/USD",)) -> dict:
    base = {"execution": [{"plugin": "market_order_executor"}]}
    return {"display_name": "test", "assets": list(assets), "timeframe": "1h", "workforce": {**base, **workforce}}


def simulated_account(ledger: Ledger, fee_rate: float = 0.0, slippage_bps: float = 0.0) -> StrategyAccount:
    """A backtest's account: simulated fills, nothing journaled."""
    return StrategyAccount(ledger, SimulatedGateway(FillRules(fee_rate, fee_rate, slippage_bps)))


class Recorder(IWorker):
    """Test worker that runs last and copies the DTOs of the watched types each tick."""

    plugin_name = "recorder"
    category = WorkerCategory.EXECUTION

    def __init__(self, services: WorkerServices, watched: Sequence[type[DTO]]) -> None:
        super().__init__(IWorker.Params(), services)
        self.watched = list(watched)
        self.ticks: list[dict[type[DTO], DTO]] = []

    def process(self, asset: str) -> None:
        self.ticks.append({t: self._optional(asset, t) for t in self.watched if self.context.has_dto(asset, t)})


class Pipeline:
    """A real tick pipeline (tick cache, candle history sized by the workers' declared need, account
    with simulated fills unless one is given, tick manager) around workers."""

    def __init__(
        self,
        workers: Sequence[tuple[type[IWorker], dict]],
        watched: Sequence[type[DTO]],
        starting_capital: float = 10_000,
        fee_rate: float = 0.0,
        slippage_bps: float = 0.0,
        account: StrategyAccount | None = None,
    ) -> None:
        self.context = TradingContextProvider()
        self.account = account or simulated_account(Ledger(starting_capital), fee_rate, slippage_bps)
        self.ledger = self.account.ledger
        validated = [(worker_class, worker_class.Params(**params)) for worker_class, params in workers]
        self.history = OhlcvProvider(max((params.history_needed() for _, params in validated), default=0))
        services = WorkerServices(self.context, self.account, self.history, timedelta(hours=1))  # as `tick` makes them
        built = [worker_class(params, services) for worker_class, params in validated]
        self.recorder = Recorder(services, watched)
        self.manager = TickCacheManager(
            self.context, self.history, [*built, self.recorder], self.account, ["BTC/USD"]
        )

    def feed(self, ticks: Iterable[RawTick]) -> list[dict[type[DTO], DTO]]:
        for raw in ticks:
            process_tick(self.manager, raw)
        return self.recorder.ticks


def one_row(tick: RawTick) -> CandleColumns:
    """tick as the block of one row a live source hands on."""
    return columns_of((tick,))


def process_tick(manager: TickCacheManager, tick: RawTick) -> bool:
    """manager.process for one tick (a block of one row, replayed as a tick): whether it was processed."""
    return manager.process(one_row(tick), threading.Event(), columnar=False).processed == 1


def source_ticks(source: TickSource, stop: threading.Event | None = None) -> list[RawTick]:
    """Every candle source yields, as ticks."""
    return [tick for block in source.blocks(stop or threading.Event()) for tick in ticks_of(block)]


def candle_at(moment: datetime, close: float, symbol: str = "BTC/USD") -> RawTick:
    """A candle of one price (open, high, low and close alike) opened at moment."""
    return RawTick(symbol=symbol, timestamp=moment, open=close, high=close, low=close, close=close, volume=1.0)
