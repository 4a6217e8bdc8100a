"""The status server (`run-operation PATH --http HOST:PORT`): health, readiness, Prometheus
metrics, each strategy link's status, pause/resume/stop/start of one link and reload of the
operation file, served by aiohttp in its own thread and event loop beside the strategy threads.

Invariants: nothing here runs on the hot path: a run is read only through its snapshot (the
frozen RunSnapshot its own thread publishes: the server is given an OperationView, which has
no run, account or ledger to reach into), feeds through their counters, at scrape time, into a
registry of this server's own (never the global one); every answer is JSON (or Prometheus
text), a bad request included, never a traceback; the POST endpoints need `Authorization:
Bearer <token>`, the token read from the environment variable the operation file names in
`control_token_env`, and are refused (403) without one; a request that waits on the runs
(stop, start, reload) never blocks the event loop;
`stop()` returns within its timeout whatever a client does.

Hostile clients: a connection that has not sent a whole request within `idle_timeout` (idle, or
sending its header slowly) is closed (aiohttp's keep-alive timeout, which counts from the
connection's start); at most `max_connections` are open at once, a new one closing the oldest
that is not in a request, so /healthz answers however many a client opens and the process never
reaches its file descriptor limit through this server; a request aiohttp cannot parse gets a
JSON 400 that does not echo it, and no answer names aiohttp's or Python's version.
"""

import asyncio
import contextlib
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Protocol

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from backend.config import LoadedOperation
from backend.core.event_loops import new_event_loop
from backend.dtos import FillDTO
from backend.errors import ConfigError, ExchangeError
from services.link_lifecycle import LinkStateError, UnknownLinkError
from services.operation_reload import ReloadFailedError, ReloadPlan
from services.order_view import describe_order, describe_protection, oldest_order_age_seconds, unprotected_positions
from services.strategy_run import LATENCY_BUCKETS, RunSnapshot, RunStatus

log = structlog.get_logger(__name__)

DEFAULT_HOST = "127.0.0.1"
IDLE_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 32
# asyncio accepts up to `backlog` connections at once before it makes their handlers (and so
# before any is closed to make room): the descriptors this server holds stay below
# MAX_CONNECTIONS + ACCEPT_BACKLOG, however many clients connect.
ACCEPT_BACKLOG = 64
SERVER_HEADER = "opdaemon"  # never aiohttp's default, which names its and Python's versions


class FeedView(Protocol):
    """What the server reads of an environment's feed: counters its thread keeps."""

    @property
    def environment_id(self) -> str: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def gaps(self) -> int: ...
    @property
    def ticks_sent(self) -> int: ...
    def last_candle_age(self, now: float) -> float | None: ...
    def stale_reason(self, now: float, margin_seconds: float) -> str | None: ...


class OperationView(Protocol):
    """What the server may see of an operation (OperationService is one): its runs as snapshots
    only, its feeds, and the control calls, whose answers are read from the snapshots too."""

    @property
    def operation(self) -> LoadedOperation: ...
    @property
    def feeds(self) -> Sequence[FeedView]: ...
    def snapshots(self) -> list[RunSnapshot]: ...
    def snapshot_of(self, link_id: str) -> RunSnapshot: ...
    def pause_link(self, link_id: str) -> object: ...
    def resume_link(self, link_id: str) -> object: ...
    def stop_link(self, link_id: str) -> object: ...
    def start_link(self, link_id: str) -> object: ...
    def force_exit(self, link_id: str, asset: str | None = None) -> list[FillDTO | None]: ...
    def force_entry(self, link_id: str, asset: str) -> None: ...
    def reload(self, trigger: str) -> ReloadPlan: ...


class OperationCollector:
    """Prometheus metrics of one operation, read from its runs and feeds at each scrape."""

    def __init__(self, service: OperationView) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        link = ["strategy_link"]
        ticks = CounterMetricFamily("opdaemon_ticks_processed", "Ticks a strategy run has processed", labels=link)
        latency = HistogramMetricFamily("opdaemon_tick_latency_seconds", "Time one tick took a strategy run",
                                        labels=link)
        depth = GaugeMetricFamily("opdaemon_queue_depth", "Ticks waiting in a strategy run's queue", labels=link)
        equity = GaugeMetricFamily("opdaemon_equity", "Account equity (quote currency)", labels=link)
        pnl = GaugeMetricFamily("opdaemon_pnl", "Equity minus starting capital (quote currency)", labels=link)
        drawdown = GaugeMetricFamily("opdaemon_drawdown_pct", "Drawdown from the equity peak now (%)", labels=link)
        max_drawdown = GaugeMetricFamily("opdaemon_max_drawdown_pct", "Deepest drawdown so far (%)", labels=link)
        position = GaugeMetricFamily("opdaemon_position", "Quantity held", labels=[*link, "asset"])
        trades = CounterMetricFamily("opdaemon_trades", "Fills booked", labels=link)
        per_asset = [*link, "asset"]
        asset_trades = CounterMetricFamily("opdaemon_asset_trades", "Fills booked of the asset since the start",
                                           labels=per_asset)
        asset_fees = CounterMetricFamily("opdaemon_asset_fees", "Fees paid on the asset's fills since the start "
                                         "(quote currency)", labels=per_asset)
        asset_value = GaugeMetricFamily("opdaemon_position_value", "Value held of the asset at its last close "
                                        "(quote currency)", labels=per_asset)
        asset_pnl = GaugeMetricFamily("opdaemon_asset_pnl", "The asset's PnL since the start: its fills' cash, "
                                      "the value held now, less the cost held at the start (quote currency)",
                                      labels=per_asset)
        orders = CounterMetricFamily("opdaemon_orders", "Orders by outcome", labels=[*link, "outcome"])
        errors = CounterMetricFamily("opdaemon_errors", "Strategy run failures (failed or stalled)", labels=link)
        paused = GaugeMetricFamily("opdaemon_paused", "1 while the account takes no new buys", labels=link)
        status = GaugeMetricFamily("opdaemon_run_status", "1 for the run's current status",
                                   labels=[*link, "status"])
        open_orders = GaugeMetricFamily("opdaemon_open_orders", "Orders not done yet", labels=link)
        reserved = GaugeMetricFamily("opdaemon_reserved_cash", "Cash open buys may still spend (quote currency)",
                                     labels=link)
        oldest = GaugeMetricFamily("opdaemon_oldest_open_order_age_seconds",
                                   "Seconds since the oldest open order was journaled (0 when none)", labels=link)
        unprotected = GaugeMetricFamily("opdaemon_unprotected_positions",
                                        "Positions with a stop asked for them but none open on the venue",
                                        labels=link)
        now = datetime.now(UTC)
        for run in self._service.snapshots():
            name = [run.strategy_link]
            ticks.add_metric(name, run.ticks_processed)
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, LATENCY_BUCKETS), "+Inf"], run.latency_counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric(name, buckets, run.latency_sum)
            depth.add_metric(name, run.queue_depth)
            account = run.account
            equity.add_metric(name, account.equity)
            pnl.add_metric(name, account.pnl)
            drawdown.add_metric(name, account.drawdown_pct)
            max_drawdown.add_metric(name, account.max_drawdown_pct)
            for held in account.positions:
                position.add_metric([run.strategy_link, held.asset], held.quantity)
            trades.add_metric(name, account.trades)
            for figures in account.assets:
                asset = [run.strategy_link, figures.asset]
                asset_trades.add_metric(asset, figures.trades)
                asset_fees.add_metric(asset, figures.fees_paid)
                asset_value.add_metric(asset, figures.position_value)
                asset_pnl.add_metric(asset, figures.pnl)
            for outcome, count in account.order_outcomes.items():
                orders.add_metric([run.strategy_link, outcome], count)
            errors.add_metric(name, 1 if run.status in (RunStatus.FAILED, RunStatus.STALLED) else 0)
            paused.add_metric(name, 1 if run.paused else 0)
            status.add_metric([run.strategy_link, run.status.value], 1)
            open_orders.add_metric(name, len(account.open_orders))
            reserved.add_metric(name, account.reserved_cash)
            oldest.add_metric(name, oldest_order_age_seconds(account, now) or 0.0)
            unprotected.add_metric(name, len(unprotected_positions(account)))
        yield from (ticks, latency, depth, equity, pnl, drawdown, max_drawdown, position, trades, asset_trades,
                    asset_fees, asset_value, asset_pnl, orders, errors, paused, status, open_orders, reserved, oldest,
                    unprotected)

        env = ["environment"]
        age = GaugeMetricFamily("opdaemon_environment_last_candle_age_seconds",
                                "Seconds since the environment's last candle (since its start before the first)",
                                labels=env)
        reconnects = CounterMetricFamily("opdaemon_environment_reconnects", "Market data connections replaced",
                                         labels=env)
        gaps = CounterMetricFamily("opdaemon_environment_gaps", "Candles that came after a hole in the data",
                                   labels=env)
        sent = CounterMetricFamily("opdaemon_environment_ticks", "Base candles the feed has sent", labels=env)
        monotonic_now = time.monotonic()
        for feed in self._service.feeds:
            name = [feed.environment_id]
            since = feed.last_candle_age(monotonic_now)
            age.add_metric(name, math.nan if since is None else since)
            reconnects.add_metric(name, feed.reconnects)
            gaps.add_metric(name, feed.gaps)
            sent.add_metric(name, feed.ticks_sent)
        yield from (age, reconnects, gaps, sent)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse (or a failure outside the
    application) with a JSON error that does not echo the request, logged at debug level only:
    any client can send one, and the log must not fill with them."""

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.debug("status_server_bad_request", status=status, error=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:  # the answer had begun: only closing is left
            raise ConnectionError("the answer had begun; the connection is closed")
        response = _error(status, HTTPStatus(status).phrase)
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure answered as JSON: unknown paths and methods too, and never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception as exc:
        log.exception("status_server_error", path=request.path)
        return _error(500, f"internal error: {type(exc).__name__}")


class StatusServer:
    """Start with `start()` (returns once it listens; `port` is the one bound), end with `stop()`."""

    def __init__(self, service: OperationView, host: str = DEFAULT_HOST, port: int = 0,
                 token: str | None = None, idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        """token: the bearer token the POST endpoints require; None disables them."""
        self._service = service
        self.host, self.port = host, port
        self._token = token
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._busy: set[web.RequestHandler] = set()  # connections in a request: never closed to make room
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(OperationCollector(service))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="status-server", daemon=True)
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    @classmethod
    def for_operation(cls, service: OperationView, host: str, port: int) -> "StatusServer":
        """The token from the environment variable the operation names (`control_token_env`)."""
        variable = service.operation.config.control_token_env
        # Stripped: a token read from a secret file keeps its newline, which no client sends.
        token = os.environ.get(variable, "").strip() if variable else None
        return cls(service, host, port, token or None)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> None:
        """Listen; OSError if the address cannot be bound."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise OSError(f"status server did not start within {timeout:g} s")
        if self._start_error is not None:
            raise self._start_error
        log.info("status_server_started", host=self.host, port=self.port,
                 control="enabled" if self._token else "disabled")

    def stop(self, timeout: float = 2) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopped.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("status_server_not_stopped", waited_seconds=timeout)
        else:
            log.info("status_server_stopped")

    def _serve(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        app = web.Application(middlewares=[_json_errors, self._mark_busy])
        app.on_response_prepare.append(_set_server_header)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/strategies", self._strategies)
        app.router.add_get("/strategies/{link}", self._strategy)
        app.router.add_post("/strategies/{link}/force-exit", self._force_exit)
        app.router.add_post("/strategies/{link}/force-exit/{asset:.+}", self._force_exit)
        app.router.add_post("/strategies/{link}/force-entry/{asset:.+}", self._force_entry)
        app.router.add_post("/strategies/{link}/{action}", self._control)
        app.router.add_post("/reload", self._reload)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)  # its connections are made in _accept
        try:
            await self._runner.setup()
            # Not a TCPSite: aiohttp has no connection cap, so connections are made here (_accept).
            listener = await asyncio.get_running_loop().create_server(
                self._accept, self.host, self.port, reuse_address=True, backlog=ACCEPT_BACKLOG)
            self.port = listener.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._start_error = exc
            await self._runner.cleanup()
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        listener.close()
        await self._runner.cleanup()

    def _accept(self) -> web.RequestHandler:
        """The handler of a new connection, once there is room for it: the oldest connection not in
        a request is closed when `max_connections` are open."""
        assert self._runner is not None and self._runner.server is not None
        server = self._runner.server
        # Oldest first; one closed a moment ago stays listed until its task has ended.
        open_connections = [handler for handler in server.connections if handler.transport is not None]
        if len(open_connections) >= self._max_connections:
            idle = [handler for handler in open_connections if handler not in self._busy]
            for handler in idle[:len(open_connections) - self._max_connections + 1]:
                handler.force_close()
        # access_log None: no access log (aiohttp's own way to turn it off; its hint says Logger).
        return _JsonErrorHandler(server, loop=asyncio.get_running_loop(), keepalive_timeout=self._idle_timeout,
                                 access_log=None)  # type: ignore[arg-type]

    @web.middleware
    async def _mark_busy(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        connection = request.protocol
        self._busy.add(connection)
        try:
            return await handler(request)
        finally:
            self._busy.discard(connection)

    # --- endpoints -----------------------------------------------------------------------------

    def not_ready_reasons(self) -> list[str]:
        now = time.monotonic()
        margin = self._service.operation.config.freshness_margin_seconds  # a reload may change it
        reasons = [reason for feed in self._service.feeds
                   if (reason := feed.stale_reason(now, margin)) is not None]
        for run in self._service.snapshots():
            if run.status in (RunStatus.FAILED, RunStatus.STALLED):
                reasons.append(f"strategy link {run.strategy_link} {run.status.value}: {run.error}")
            reasons += [f"strategy link {run.strategy_link}: {why}" for _, why in unprotected_positions(run.account)]
        return reasons

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reasons = self.not_ready_reasons()
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _strategies(self, _request: web.Request) -> web.Response:
        return web.json_response([_describe(run) for run in self._service.snapshots()], dumps=_dumps)

    async def _strategy(self, request: web.Request) -> web.Response:
        try:
            run = self._service.snapshot_of(request.match_info["link"])
        except UnknownLinkError as exc:
            return _error(404, str(exc))
        return web.json_response(_describe(run), dumps=_dumps)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why a POST is refused (control disabled, no or a wrong bearer token), or None."""
        if self._token is None:
            return _error(403, "control endpoints are disabled: set control_token_env in the operation file "
                               "and that environment variable")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # surrogateescape: aiohttp (and os.environ) keep bytes that are not UTF-8 as lone surrogates.
        given, expected = (text.encode("utf-8", "surrogateescape") for text in (token.strip(), self._token))
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
            return web.json_response({"error": "a valid bearer token is required"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _control(self, request: web.Request) -> web.Response:
        actions = {"pause": self._service.pause_link, "resume": self._service.resume_link,
                   "stop": self._service.stop_link, "start": self._service.start_link}
        action = actions.get(request.match_info["action"])
        if action is None:
            known = ", ".join([*actions, "force-exit[/{asset}]", "force-entry/{asset}"])
            return _error(404, f"no such action {request.match_info['action']!r} ({known})")
        refused = self._refusal(request)
        if refused is not None:
            return refused
        link = request.match_info["link"]
        try:
            # stop waits for the run's current tick: in a thread, never in the event loop
            await asyncio.get_running_loop().run_in_executor(None, action, link)
        except UnknownLinkError as exc:
            return _error(404, str(exc))
        except LinkStateError as exc:
            return _error(409, str(exc))
        return web.json_response(_describe(self._service.snapshot_of(link)), dumps=_dumps)

    async def _force_exit(self, request: web.Request) -> web.Response:
        """Sell at market now what the link holds (of one asset, or of all)."""
        link, asset = request.match_info["link"], request.match_info.get("asset")
        return await self._operator_order(request, lambda: self._service.force_exit(link, asset))

    async def _force_entry(self, request: web.Request) -> web.Response:
        """A buy opportunity on the asset's next candle, sized by the link's planners."""
        link, asset = request.match_info["link"], request.match_info["asset"]
        return await self._operator_order(request, lambda: self._service.force_entry(link, asset))

    async def _operator_order(self, request: web.Request, order: Callable[[], object]) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:  # carried out by the run's thread, after its tick in progress: never in the event loop
            placed = await asyncio.get_running_loop().run_in_executor(None, order)
        except UnknownLinkError as exc:
            return _error(404, str(exc))
        except LinkStateError as exc:
            return _error(409, str(exc))
        except TimeoutError as exc:
            return web.json_response({"status": "queued", "detail": str(exc)}, status=202)
        # The run published its snapshot before the call returned: the answer shows what it did.
        answer = _describe(self._service.snapshot_of(request.match_info["link"]))
        if isinstance(placed, list):  # force-exit: each sell's fill, or null (its order's log line says why)
            answer["fills"] = [None if fill is None else {"asset": fill.asset, "quantity": fill.quantity,
                                                          "price": fill.price, "fee": fill.fee,
                                                          "order_id": fill.order_id} for fill in placed]
        else:
            answer["force_entry"] = {"asset": request.match_info["asset"], "status": "planned on its next candle"}
        return web.json_response(answer, dumps=_dumps)

    async def _reload(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            plan = await asyncio.get_running_loop().run_in_executor(None, self._service.reload, "http")
        except ConfigError as exc:
            return web.json_response({"error": str(exc), "file": exc.file, "key": exc.key, "reason": exc.reason},
                                     status=400)
        except LinkStateError as exc:
            return _error(409, str(exc))
        except ExchangeError as exc:
            return _error(502, f"exchange error: {exc}")
        except ReloadFailedError as exc:
            return _error(500, f"the reload failed part way, see the log (operation_reload_failed): {exc}")
        return web.json_response({"status": "reloaded", **plan.as_log_fields()})


def _describe(run: RunSnapshot) -> dict[str, Any]:
    """A link's status answer, from one snapshot."""
    account = run.account
    now = datetime.now(UTC)
    return {
        "strategy_link": run.strategy_link,
        "blueprint": run.blueprint,
        "environment": run.environment,
        "status": run.status.value,
        "paused": run.paused,
        "ticks_processed": run.ticks_processed,
        "queue_depth": run.queue_depth,
        "last_tick": {"candle_time": run.last_tick_time.isoformat() if run.last_tick_time else None,
                      "processed_at": run.last_tick_at},
        "last_error": run.error,
        "account": {
            "equity": account.equity, "pnl": account.pnl, "drawdown_pct": account.drawdown_pct,
            "max_drawdown_pct": account.max_drawdown_pct, "cash": account.cash, "trades": account.trades,
            "fees_paid": account.fees_paid,
            "positions": {p.asset: {"quantity": p.quantity, "average_entry_price": p.average_entry_price,
                                    "price": p.price, "unrealised_pnl": p.unrealised_pnl,
                                    "unrealised_pnl_pct": p.unrealised_pnl_pct, "dust": p.dust,
                                    "protection": describe_protection(account, p.asset)}
                          for p in account.positions},
            "per_asset": {f.asset: {"trades": f.trades, "fees_paid": f.fees_paid, "volume": f.volume,
                                    "position_value": f.position_value, "pnl": f.pnl} for f in account.assets},
            "orders": dict(account.order_outcomes), "unsettled_orders": account.unsettled_orders,
            "open_orders": [describe_order(order, now) for order in account.open_orders],
            "open_orders_count": len(account.open_orders), "reserved_cash": account.reserved_cash,
            "oldest_open_order_age_seconds": oldest_order_age_seconds(account, now),
        },
    }


async def _set_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


def _dumps(value: Any) -> str:
    """JSON without NaN or infinities (not JSON): such a value is null."""
    return json.dumps(_clean(value), default=str)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
