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

Usage:
    with running_fake_kraken_ws() as stream:          # stream.url is the environment's ws_url
        stream.send(ws_candle("BTC/USD", t, 100.0), ws_candle("BTC/USD", t + 60, 101.0))
        stream.wait_for_subscriptions(2)
"""

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from aiohttp import WSMsgType, web


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
    def __init__(self) -> None:
        self.url = ""
        self.silent = False
        self.refuse = False
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

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/v2"

    async def _stop(self) -> None:
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
        return socket

    async def _answer(self, socket: web.WebSocketResponse, request: dict) -> None:
        now = _iso(self.clock())
        method, req_id = request.get("method"), request.get("req_id")
        if method == "ping":
            await socket.send_json({"method": "pong", "req_id": req_id, "time_in": now, "time_out": now})
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
def running_fake_kraken_ws() -> Iterator[FakeKrakenStream]:
    stream = FakeKrakenStream().start()
    try:
        yield stream
    finally:
        stream.stop()
