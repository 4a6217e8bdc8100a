"""Kraken's authenticated websocket `executions` channel (API v2) for one venue account: the latest
state Kraken reported of each of the account's orders, so that KrakenOrderGateway.poll knows which
orders changed without asking REST about every open order on every candle.

Invariants:
- One feed per venue account (AccountClient), started once (`start`), on its own thread and asyncio
  loop (`new_event_loop`); it ends within STOP_CHECK_SECONDS (+ closing the socket) of `stop`.
- Per order it keeps the most advanced report heard (`Execution.ahead_of`): a done state over a
  working one, else the higher cumulative quantity; so a duplicated, reordered or late message
  never moves an order back. It only says *which* orders moved: the gateway reads their cumulative
  fill, price and fee from REST (QueryOrders), the one source of exact cumulative fees.
- `epoch` counts subscriptions Kraken confirmed (each answered with its snapshot); `connected` is
  False from a connection's failure until the next subscription is confirmed. What happened between
  two connections is never streamed, so a gateway checks every order over REST at each new epoch.
- Each connection asks a fresh token (GetWebSocketsToken) through the account's client, so one
  nonce source signs every request of the key. docs.kraken.com/exchange/api-reference/spot-websocket:
  "Private channels require a WebSocket token, retrieved via the Spot REST endpoint
  GetWebSocketsToken. Tokens are short-lived; obtain a fresh token on each connection."
- ccxt's errors stop here: network trouble is logged (`order_updates_unavailable`) and the channel
  subscribed again after a backoff; the gateway meanwhile falls back to REST.
"""

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import ccxt
import structlog

from backend.core.event_loops import new_event_loop
from backend.venues.kraken.client import AccountClient, describe_error, root_cause
from backend.venues.kraken.streaming import STOP_CHECK_SECONDS, reconnect_backoff

log = structlog.get_logger(__name__)

# executions, order_status: "pending_new", "new", "partially_filled", "filled", "canceled", "expired"
# (docs.kraken.com/exchange/api-reference/spot-websocket-v2/executions); the last three are final.
DONE_ORDER_STATUSES = ("filled", "canceled", "expired")


@dataclass(frozen=True)
class Execution:
    """What the channel last said of one order that matters: its status and cumulative quantity."""

    order_id: str
    client_order_id: str | None
    status: str  # Kraken's order_status
    cumulative_quantity: float
    heard_at: float  # time.monotonic() of the latest message about the order (any message)

    @property
    def done(self) -> bool:
        return self.status in DONE_ORDER_STATUSES

    def ahead_of(self, other: "Execution") -> bool:
        """Further along than other: done where other works, else more executed. A trade message
        says partially_filled even when it completes the order (its `filled` follows), so at equal
        quantities only a done state moves an order on."""
        if self.done != other.done:
            return self.done
        return self.cumulative_quantity > other.cumulative_quantity


class ExecutionFeed:
    def __init__(self, client: AccountClient, url: str | None, stop: threading.Event) -> None:
        self._client = client
        self._url = url  # None: Kraken's own (ccxt's urls["api"]["ws"]["privateV2"])
        self._stop = stop
        self._lock = threading.Lock()
        self._latest: dict[str, Execution] = {}  # by Kraken's order id
        self._by_client_id: dict[str, str] = {}  # cl_ord_id -> order id
        self._thread: threading.Thread | None = None
        self.connected = False
        self.epoch = 0
        self.reconnects = 0

    def start(self) -> None:
        """Subscribe in the background (once; later calls do nothing)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="kraken-executions", daemon=True)
            self._thread.start()

    def latest(self, order_id: str | None, client_order_id: str) -> Execution | None:
        """The most advanced state heard of the order (by Kraken's id, else by its cl_ord_id)."""
        with self._lock:
            key = order_id or self._by_client_id.get(client_order_id)
            return self._latest.get(key) if key else None

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the feed's thread -------------------------------------------------------------------------

    def _run(self) -> None:
        loop = new_event_loop()
        follower = loop.create_task(self._follow())
        try:
            loop.run_until_complete(self._until_stopped(follower))
        except Exception as error:  # a bug, never a traceback on stderr: the gateways go on over REST
            log.error("order_updates_failed", exchange="kraken", channel="executions",
                      error=describe_error(error, self._client), exc_info=error,
                      action="working orders are checked over REST on every candle")
        finally:
            follower.cancel()
            loop.run_until_complete(asyncio.gather(follower, return_exceptions=True))
            loop.close()
            self.connected = False

    async def _until_stopped(self, follower: asyncio.Task) -> None:
        while not self._stop.is_set() and not follower.done():
            await asyncio.sleep(STOP_CHECK_SECONDS)
        if follower.done():
            follower.result()

    async def _follow(self) -> None:
        failures = 0
        while True:
            epoch_before = self.epoch
            try:
                await self._connection()
            except (ccxt.BaseError, OSError) as error:  # ccxt passes a failed send's OSError on as is
                self.connected = False
                failures = 1 if self.epoch != epoch_before else failures + 1
                delay = reconnect_backoff(failures)
                self.reconnects += 1
                log.warning("order_updates_unavailable", exchange="kraken", channel="executions",
                            cause=root_cause(error, self._client), error=describe_error(error, self._client),
                            attempt=failures, retry_in_seconds=round(delay, 3),
                            action="working orders are checked over REST until the channel is back")
                await asyncio.sleep(delay)

    async def _connection(self) -> None:
        """Subscribe and keep a watch pending (ccxt fails it when the connection is lost)."""
        await asyncio.to_thread(self._client.load_markets)  # cached by the account's client after the first
        from backend.venues.kraken.websocket_clients import ExecutionsClient  # ccxt.pro: only once it connects

        exchange = ExecutionsClient(self._config(), self._fresh_token, self._heard)
        exchange.set_markets(self._client.markets, self._client.currencies)  # it makes no REST request
        try:
            while True:
                await exchange.watch_orders()
        finally:
            with contextlib.suppress(Exception):
                await exchange.close()

    def _config(self) -> dict[str, Any]:
        api = {"public": self._client.urls["api"]["public"], "private": self._client.urls["api"]["private"]}
        if self._url:
            api["ws"] = {"privateV2": self._url}
        return {"enableRateLimit": True, "urls": {"api": api}}

    def _fresh_token(self) -> str:
        answer = self._client.privatePostGetWebSocketsToken()
        token = (answer.get("result") or {}).get("token")
        if not token:
            raise ccxt.AuthenticationError("kraken GetWebSocketsToken answered without a token")
        return str(token)

    def _heard(self, reports: list[dict], snapshot: bool) -> None:
        now = time.monotonic()
        with self._lock:
            for report in reports:
                order_id = report.get("order_id")
                if not order_id:
                    continue
                client_order_id = report.get("cl_ord_id")
                if client_order_id:
                    self._by_client_id[client_order_id] = order_id
                heard = Execution(order_id, client_order_id, str(report.get("order_status") or ""),
                                  float(report.get("cum_qty") or 0.0), now)
                known = self._latest.get(order_id)
                if known is None or heard.ahead_of(known):
                    self._latest[order_id] = heard
                else:  # reported again, nothing new: only when it was last heard of moves
                    self._latest[order_id] = Execution(known.order_id, known.client_order_id or client_order_id,
                                                       known.status, known.cumulative_quantity, now)
        if snapshot:
            self.epoch += 1
            self.connected = True
            log.info("order_updates_connected", exchange="kraken", channel="executions", epoch=self.epoch,
                     open_orders=len(reports))
