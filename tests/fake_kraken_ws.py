"""A small fake of Kraken's websocket API v2 (public `ohlc` channel) on 127.0.0.1, for driving
ccxt.pro's real Kraken client in tests. An aiohttp server in its own thread and event loop.

Speaks what ccxt uses: `{"method": "subscribe", "params": {"channel": "ohlc", "symbol": [...],
"interval": N}, "req_id": N}` is acknowledged, then answered with a `snapshot` of the candles
the fake holds for that symbol; `{"method": "ping"}` is answered with `pong`. Candles pushed with
`send` go to every connection subscribed to their symbol as one `update` message and replace the
fake's own version of that candle (so a later snapshot carries the latest one).

It is not polite: `send` takes candles in any order, repeated, or revising a candle long closed
(or skips one, or sends one from the future); `send_raw` sends any text frame (a malformed one)
to every socket; `drop_connections()` closes every socket; `silent = True` keeps sockets open
and pings answered but sends no candle (no snapshot either), the stalled feed ccxt cannot
notice; `refuse = True` answers subscriptions with Kraken's error reply (ccxt then waits
forever). `clock` is Kraken's clock, which stamps every message (`timestamp`).

Private `executions` channel (docs.kraken.com/api-reference/websocket-v2/executions), when linked
to a REST fake (`running_fake_kraken_ws(rest=fake)`): a subscription must carry a token the REST
fake issued (GetWebSocketsToken); it is acknowledged, answered with a `snapshot` of the open orders
(unless `snap_orders` is false), then every order event the REST fake produces (pending_new, new,
trade, filled, canceled, expired, amended, status) is sent as an `update`, one report a message,
in the order they happened. Misbehaviour: `duplicate_executions = True` sends each message twice,
`reorder_executions = True` holds each message back until the next one has gone out (pairs
swapped), `drop_executions(n)` loses the next n messages, `deliver_late(n)` keeps the next n back
until the next executions subscription (a reconnect) and sends them after its snapshot.

Usage:
    with running_fake_kraken_ws() as stream:          # stream.url is the environment's ws_url
        stream.send(ws_candle("BTC/USD", t, 100.0), ws_candle("BTC/USD", t + 60, 101.0))
        stream.wait_for_subscriptions(2)
    with running_fake_kraken() as fake, running_fake_kraken_ws(rest=fake) as stream:
        exchange.urls["api"]["ws"]["privateV2"] = stream.url   # what ccxt.pro's watch_orders connects to
"""

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from aiohttp import WSMsgType, web

from tests.fake_kraken import FakeKraken


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def ws_candle(symbol: str, open_time: int, close: float, volume: float = 1.0, interval_minutes: int = 1) -> dict:
    """One candle as Kraken's v2 `ohlc` channel sends it (same prices as fake_kraken.candle)."""
    open_ = close - 1
    return {
        "symbol": symbol, "open": open_, "high": close + 2, "low": open_ - 2, "close": close,
        "trades": 3, "volume": volume, "vwap": close, "interval_begin": _iso(open_time),
        "interval": interval_minutes, "timestamp": _iso(open_time + interval_minutes * 60),
    }


class FakeKrakenStream:
    def __init__(self, rest: FakeKraken | None = None) -> None:
        self.url = ""
        self.silent = False
        self.refuse = False
        self.rest = rest  # the REST fake whose tokens and order events the executions channel serves
        self.duplicate_executions = False
        self.reorder_executions = False
        self.executions_sent: list[dict] = []  # every executions update message sent, in order
        self._drops = 0
        self._late_count = 0
        self._late: list[dict] = []
        self._held_back: dict | None = None
        self._sequence = 0
        self._execution_sockets: set[web.WebSocketResponse] = set()
        self._outbox: asyncio.Queue[dict] | None = None
        self._pump: asyncio.Task | None = None
        self._listener: Callable[[dict], None] | None = None
        self.clock: Callable[[], float] = time.time
        self.subscriptions: list[dict] = []  # every subscribe request received, in order
        self._candles: dict[str, dict[str, dict]] = {}  # symbol -> interval_begin -> latest candle
        self._sockets: dict[web.WebSocketResponse, set[str]] = {}  # open socket -> symbols subscribed
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-kraken-ws", daemon=True)

    # --- scripting (from the test's thread) ---------------------------------------------------

    def send(self, *candles: dict) -> None:
        """Push candles, as one update per symbol, in the order given; waits until they are sent."""
        self._call(self._send(list(candles)))

    def send_raw(self, text: str) -> None:
        """Send `text` as it is, one text frame, to every open socket (e.g. a frame that is not JSON)."""
        self._call(self._send_raw(text))

    def drop_executions(self, count: int) -> None:
        """The next `count` executions messages are lost (the daemon must fall back to REST)."""
        self._call(self._set(_drops=count))

    def deliver_late(self, count: int) -> None:
        """The next `count` executions messages are kept back and sent after the next executions
        subscription's snapshot (late, after a reconnect)."""
        self._call(self._set(_late_count=count))

    def wait_for_executions(self, count: int, timeout: float = 5.0) -> list[dict]:
        """Wait until `count` executions update messages were sent; they are returned."""
        deadline = time.monotonic() + timeout
        while len(self.executions_sent) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.executions_sent) >= count, f"{len(self.executions_sent)} of {count} executions messages"
        return list(self.executions_sent)

    def drop_connections(self) -> None:
        """Close every open socket (the client sees the connection closed by the server)."""
        self._call(self._drop())

    def newest_candle_time(self) -> float | None:
        """Open time (epoch seconds) of the latest candle the fake holds, of any symbol."""
        begins = [begin for held in list(self._candles.values()) for begin in list(held)]
        return max((datetime.fromisoformat(begin[:26] + "+00:00").timestamp() for begin in begins), default=None)

    def wait_for_subscriptions(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.subscriptions) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.subscriptions) >= count, f"{len(self.subscriptions)} of {count} subscriptions"

    # --- server -------------------------------------------------------------------------------

    def start(self) -> "FakeKrakenStream":
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2)

    def _call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(5)  # type: ignore[arg-type]

    async def _set(self, **values: object) -> None:  # runs on the loop: no race with the sender
        for name, value in values.items():
            setattr(self, name, value)

    async def _start(self) -> None:
        self._outbox = asyncio.Queue()
        self._pump = self._loop.create_task(self._send_executions())
        if self.rest is not None:
            outbox = self._outbox
            self._listener = lambda report: self._loop.call_soon_threadsafe(outbox.put_nowait, report)
            self.rest.listen_to_executions(self._listener)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/v2"

    async def _stop(self) -> None:
        if self.rest is not None and self._listener is not None:
            self.rest.listen_to_executions(self._listener, listening=False)  # the REST fake may outlive this
        if self._pump is not None:
            self._pump.cancel()
        await self._drop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _drop(self) -> None:
        for socket in list(self._sockets):
            await socket.close(code=1011, message=b"fake kraken went away")
        self._sockets.clear()

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets[socket] = set()
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            await self._answer(socket, json.loads(message.data))
        self._sockets.pop(socket, None)
        self._execution_sockets.discard(socket)
        return socket

    async def _answer(self, socket: web.WebSocketResponse, request: dict) -> None:
        now = _iso(self.clock())
        method, req_id = request.get("method"), request.get("req_id")
        if method == "ping":
            await socket.send_json({"method": "pong", "req_id": req_id, "time_in": now, "time_out": now})
        elif method == "subscribe" and request.get("params", {}).get("channel") == "executions":
            with self._lock:
                self.subscriptions.append(request)
            await self._subscribe_executions(socket, request, now)
        elif method == "subscribe":
            params = request.get("params", {})
            with self._lock:
                self.subscriptions.append(request)
            for symbol in params.get("symbol", []):
                if self.refuse:
                    await socket.send_json({"error": f"Currency pair not supported {symbol}", "method": "subscribe",
                                            "req_id": req_id, "success": False, "symbol": symbol,
                                            "time_in": now, "time_out": now})
                    continue
                await socket.send_json({"method": "subscribe", "req_id": req_id, "success": True,
                                        "result": {"channel": params.get("channel"), "symbol": symbol,
                                                   "interval": params.get("interval"), "snapshot": True},
                                        "time_in": now, "time_out": now})
                self._sockets.setdefault(socket, set()).add(symbol)
                held = [self._candles.get(symbol, {})[begin] for begin in sorted(self._candles.get(symbol, {}))]
                if held and not self.silent:
                    await socket.send_json({"channel": "ohlc", "type": "snapshot", "timestamp": now, "data": held})

    async def _subscribe_executions(self, socket: web.WebSocketResponse, request: dict, now: str) -> None:
        """executions: "This channel contains account specific data, an authentication token is
        required in the request" (a token from GetWebSocketsToken); "By default, the snapshot
        response contains all open orders" ("snap_orders", default true)."""
        params, req_id = request.get("params", {}), request.get("req_id")
        if self.rest is None or params.get("token") not in self.rest.tokens:
            await socket.send_json({"error": "EAPI:Invalid token (the fake issued no such token)",
                                    "method": "subscribe", "req_id": req_id, "success": False,
                                    "time_in": now, "time_out": now})
            return
        snap_orders = params.get("snap_orders", True) is not False
        await socket.send_json({"method": "subscribe", "req_id": req_id, "success": True,
                                "result": {"channel": "executions", "maxratecount": 125,
                                           "snap_orders": snap_orders,
                                           "snap_trades": bool(params.get("snap_trades", False))},
                                "time_in": now, "time_out": now})
        snapshot = self.rest.open_order_reports() if snap_orders else []
        await socket.send_json({"channel": "executions", "type": "snapshot", "data": snapshot,
                                "sequence": self._next_sequence()})
        self._execution_sockets.add(socket)
        late, self._late = self._late, []
        for report in late:
            await self._broadcast_execution(report)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _send_executions(self) -> None:
        """The one sender of executions updates: reports leave in the order the REST fake made them,
        unless a misbehaviour switch says otherwise."""
        assert self._outbox is not None
        while True:
            report = await self._outbox.get()
            if self._drops > 0:
                self._drops -= 1
                continue
            if self._late_count > 0:
                self._late_count -= 1
                self._late.append(report)
                continue
            if self.reorder_executions and self._held_back is None:
                self._held_back = report
                continue
            await self._broadcast_execution(report)
            if self._held_back is not None:
                held, self._held_back = self._held_back, None
                await self._broadcast_execution(held)

    async def _broadcast_execution(self, report: dict) -> None:
        message = {"channel": "executions", "type": "update", "data": [report], "sequence": self._next_sequence()}
        for _ in range(2 if self.duplicate_executions else 1):
            self.executions_sent.append(message)
            for socket in list(self._execution_sockets):
                if not socket.closed:
                    await socket.send_json(message)

    async def _send_raw(self, text: str) -> None:
        for socket in list(self._sockets):
            if not socket.closed:
                await socket.send_str(text)

    async def _send(self, candles: list[dict]) -> None:
        by_symbol: dict[str, list[dict]] = {}
        for candle in candles:
            by_symbol.setdefault(candle["symbol"], []).append(candle)
            self._candles.setdefault(candle["symbol"], {})[candle["interval_begin"]] = candle
        if self.silent:
            return
        for symbol, data in by_symbol.items():
            # Stamped by Kraken's clock, RFC 3339 (docs.kraken.com/exchange/api-reference/spot-websocket-v2/ohlc;
            # the shape ccxt's pro/kraken.py handle_ohlcv quotes: {"channel", "type", "timestamp", "data"}).
            message = {"channel": "ohlc", "type": "update", "timestamp": _iso(self.clock()), "data": data}
            for socket, symbols in list(self._sockets.items()):
                if symbol in symbols and not socket.closed:
                    await socket.send_json(message)


@contextmanager
def running_fake_kraken_ws(rest: FakeKraken | None = None) -> Iterator[FakeKrakenStream]:
    """A started FakeKrakenStream; with `rest`, its executions channel serves that REST fake."""
    stream = FakeKrakenStream(rest).start()
    try:
        yield stream
    finally:
        stream.stop()
