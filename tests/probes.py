"""Test-only worker plugins that record what a strategy run saw, or misbehave on purpose."""

import gc
import os
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import structlog

from backend.dtos import MarketRegimeDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.registry import PLUGINS
from tests.columnar import NotColumnar


@dataclass(frozen=True)
class Seen:
    timestamp: object
    close: float
    regime: MarketRegimeDTO | None
    context_id: int
    thread: str


RECORDS: dict[str, list[Seen]] = defaultdict(list)
HANG_SECONDS = 3600.0  # "forever" for a test; the daemon thread dies with its process


class ProbeParams(WorkerParams):
    tag: str
    crash_at_tick: int | None = None  # raise on this (1-based) tick
    sleep_seconds: float = 0.0
    hang_at_tick: int | None = None  # block on this (1-based) tick, like a call that never returns
    kill_process_at_tick: int | None = None  # SIGKILL its own process on this tick (an out-of-memory kill)
    kill_once_file: str | None = None  # with kill_process_at_tick: kill only if this file is absent (creating it)


class Probe(IWorker):
    plugin_name = "probe"
    category = WorkerCategory.OPPORTUNITY
    Params = ProbeParams
    optional = (MarketRegimeDTO,)
    params: ProbeParams

    def process(self, asset: str) -> None:
        records = RECORDS[self.params.tag]
        self.ticks_seen = getattr(self, "ticks_seen", 0) + 1  # this worker's own ticks, whatever its tag
        if self.params.crash_at_tick == self.ticks_seen:
            raise ZeroDivisionError("probe crashed on purpose")
        if self.params.kill_process_at_tick == self.ticks_seen and self._first_kill():
            os.kill(os.getpid(), signal.SIGKILL)
        if self.params.sleep_seconds:
            time.sleep(self.params.sleep_seconds)
        if self.params.hang_at_tick == self.ticks_seen:
            structlog.get_logger(__name__).info("probe_hanging", tag=self.params.tag)
            threading.Event().wait(HANG_SECONDS)
        base = self._base(asset)
        records.append(Seen(
            base.timestamp, base.close, self._optional(asset, MarketRegimeDTO),
            id(self.context), threading.current_thread().name,
        ))


    def _first_kill(self) -> bool:
        """True unless kill_once_file says this kill already happened (in an earlier attempt)."""
        if self.params.kill_once_file is None:
            return True
        marker = Path(self.params.kill_once_file)
        if marker.exists():
            return False
        marker.touch()
        return True


class CountedEma(EmaDetector):
    """The EMA detector, counting the blocks its instances prepare (all of them, in this process)."""

    prepared = 0

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        type(self).prepared += 1
        super().prepare_block(asset, candles)


PLUGINS_WITH_PROBE = {**PLUGINS, "probe": Probe}


def probe_blueprint(tag: str, regime: dict | None = None, **probe_params) -> dict:
    context = []
    if regime is not None:
        context = [
            {"plugin": "ema_detector", "params": {"fast_period": 3, "slow_period": 8}},
            {"plugin": "market_regime_classifier", "params": regime},
        ]
    return {
        "display_name": tag,
        "assets": ["BTC/USD"],
        "timeframe": "1h",
        "workforce": {
            "context": context,
            "opportunity": [{"plugin": "probe", "params": {"tag": tag, **probe_params}}],
            "execution": [{"plugin": "market_order_executor"}],
        },
    }


class CollectorWatch(NotColumnar):
    """Notes how the cyclic garbage collector is set, on each tick whose thresholds it has not
    seen yet (counting the frozen objects walks them all)."""

    seen: ClassVar[set[tuple[tuple[int, ...], bool]]] = set()

    def process(self, asset: str) -> None:
        thresholds = gc.get_threshold()
        if not any(seen == thresholds for seen, _ in type(self).seen):
            type(self).seen.add((thresholds, gc.get_freeze_count() > 0))
