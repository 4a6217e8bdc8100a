"""One strategy run: its own bounded tick queue, consumed in its own thread."""

import queue
import threading
from dataclasses import asdict, dataclass
from enum import StrEnum

import structlog

from backend.config import StrategyLink
from backend.market_data import RawTick
from backend.portfolio import AccountSummary, Ledger
from services.tick_cache_manager import TickCacheManager

log = structlog.get_logger(__name__)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # its environment's data ended
    STOPPED = "stopped"  # shut down on request, after finishing every queued tick
    FAILED = "failed"  # a worker raised; the run stopped, the others go on


@dataclass(frozen=True)
class _End:
    status: RunStatus


@dataclass(frozen=True)
class RunSummary:
    strategy_link: str
    blueprint: str
    environment: str
    status: RunStatus
    ticks_processed: int
    account: AccountSummary
    error: str | None

    def as_log_fields(self) -> dict:
        fields = asdict(self)
        fields.update(fields.pop("account"))
        fields["status"] = self.status.value
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in fields.items()}


class StrategyRun:
    def __init__(
        self,
        link: StrategyLink,
        tick_manager: TickCacheManager,
        ledger: Ledger,
        queue_size: int = 1024,
    ) -> None:
        self.blueprint_id = link.strategy_blueprint_id
        self.environment_id = link.execution_environment_id
        self.link_id = link.link_id
        self.tick_manager = tick_manager
        self._ledger = ledger
        self._queue: queue.Queue[RawTick | _End] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._consume, name=f"strategy:{self.link_id}", daemon=True)
        self.status = RunStatus.PENDING
        self.ticks_processed = 0
        self.error: str | None = None

    def start(self) -> None:
        self.status = RunStatus.RUNNING
        self._thread.start()

    def submit(self, tick: RawTick) -> bool:
        """Queue tick, waiting while the queue is full; False once the run has failed."""
        return self._put(tick)

    def finish(self, status: RunStatus) -> None:
        """No more ticks will come: the run ends with status once the queue is drained."""
        self._put(_End(status))

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def summary(self) -> RunSummary:
        return RunSummary(
            strategy_link=self.link_id,
            blueprint=self.blueprint_id,
            environment=self.environment_id,
            status=self.status,
            ticks_processed=self.ticks_processed,
            account=self._ledger.summary(),
            error=self.error,
        )

    def _put(self, item: RawTick | _End) -> bool:
        while self.status is not RunStatus.FAILED:
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self) -> None:
        structlog.contextvars.bind_contextvars(
            strategy_link=self.link_id, blueprint=self.blueprint_id, environment=self.environment_id
        )
        log.info("strategy_run_started")
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                self.status = item.status
                break
            try:
                if self.tick_manager.process(item):
                    self.ticks_processed += 1
            except Exception as exc:  # a strategy's bug must not reach the other runs
                self.error = f"{type(exc).__name__}: {exc}"
                self.status = RunStatus.FAILED
                log.exception("strategy_run_failed", tick_time=item.timestamp.isoformat(), error=self.error)
                break
        log.info("strategy_summary", **self.summary().as_log_fields())
