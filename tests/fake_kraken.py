"""A small fake of Kraken's REST API on 127.0.0.1, for driving the real ccxt client in tests.

Implements what ccxt's kraken uses for load_markets, fetch_ohlcv, create_order, fetch_order and
fetch_balance:

    GET  /0/public/Assets        GET  /0/public/AssetPairs    GET /0/public/OHLC   GET /0/public/Time
    GET  /0/public/Trades        (the trade history, paged by a nanosecond cursor; see `_trades`)
    POST /0/private/AddOrder     POST /0/private/QueryOrders
    POST /0/private/Balance      POST /0/private/BalanceEx

Private calls are authenticated like Kraken does it: API-Key must be the test key, API-Sign must be
base64(HMAC-SHA512(base64decode(secret), path + SHA256(nonce + body))) and nonces must increase;
otherwise the answer is Kraken's error envelope, e.g. {"error": ["EAPI:Invalid key"], "result": {}}.

It is not polite: rows are served as scripted, bad numbers and repeated rows included, and
`echo_key_in_errors` makes it quote the API key it received in its error text, as some servers do.

Usage:
    with running_fake_kraken() as fake:
        fake.set_candles("XXBTZUSD", [candle(t, 100.0), sent_as(candle(t + 60, 101.0), high="nan"), ...])
                                                                # last row = the forming candle
        fake.set_candles("XXBTZUSD", rows, interval=60)         # served for interval=60 only
        fake.fail_next(3)                                       # next 3 requests answer HTTP 503
        fake.garble_next(1, b"")                                # next request: HTTP 200, empty body
        fake.delay_replies("public/OHLC", 0.5)                  # the next OHLC answered 0.5 s late
        fake.clock = lambda: time.time() + 30                   # Kraken's Time runs 30 s ahead
        fake.set_trades("XXBTZUSD", [trade(1672531200.5, 16500.0, 0.1, 1), ...])  # the trade history
        fake.repeat_trade_next(1)                               # the next Trades page repeats a trade
        fake.refuse_next(2, "EAPI:Rate limit exceeded", "public/Trades")  # Kraken's error envelope
        ... fake.url is the environment's api_url; fake.requests holds what was received

For start-up failures on real sockets: `refused_url()` (nothing listens there), `silent_url()`
(accepts connections, never answers) and `fake.url` with https:// (a TLS handshake with a plain
HTTP server fails).
"""

import base64
import hashlib
import hmac
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tests.fake_kraken_book import (
    MAKER_FEE_RATE,
    RESTING_TYPES,
    TAKER_FEE_RATE,
    TIME_IN_FORCE,
    TRAILING_PRICE,
    TRIGGER_SIGNALS,
    TRIGGER_TYPES,
    Candle,
    LimitFill,
    OrderRateCounter,
    crosses,
    description,
    fires_now,
    limit_fill_at,
    rfc3339,
    trailing_fill_at,
    trailing_trigger,
    triggered_at,
)

TEST_API_KEY = "FAKE-TEST-KEY-not-a-real-kraken-key"
TEST_API_SECRET = base64.b64encode(b"fake test secret, not a real kraken secret!!").decode()

ASSETS = {
    "XXBT": {"aclass": "currency", "altname": "XBT", "decimals": 10, "display_decimals": 5, "status": "enabled"},
    "XETH": {"aclass": "currency", "altname": "ETH", "decimals": 10, "display_decimals": 5, "status": "enabled"},
    "ZUSD": {"aclass": "currency", "altname": "USD", "decimals": 4, "display_decimals": 2, "status": "enabled"},
}
_FEES_TAKER = [[0, 0.26], [50000, 0.24], [100000, 0.22]]
_FEES_MAKER = [[0, 0.16], [50000, 0.14], [100000, 0.12]]


def _pair(altname: str, wsname: str, base: str, quote: str, pair_decimals: int, ordermin: str) -> dict:
    """An AssetPairs entry (docs.kraken.com/api-reference/market-data/get-tradable-asset-pairs), whose
    rules AddOrder and AmendOrder enforce: `lot_decimals` and `pair_decimals` (`_checked_volume`,
    `_checked_price`), `tick_size` (`_checked_price`), `ordermin` and `costmin` (`_add_order`).
    Both pairs have a 0.1 tick: XBT/USD's is its one decimal; ETH/USD's is coarser than its two
    decimals, so that a price on the decimals but off the tick (ccxt's precision alone) is refused."""
    return {
        "altname": altname, "wsname": wsname, "aclass_base": "currency", "base": base,
        "aclass_quote": "currency", "quote": quote, "lot": "unit", "cost_decimals": 5,
        "pair_decimals": pair_decimals, "lot_decimals": 8, "lot_multiplier": 1,
        "leverage_buy": [], "leverage_sell": [], "fees": _FEES_TAKER, "fees_maker": _FEES_MAKER,
        "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
        "ordermin": ordermin, "costmin": "0.5", "tick_size": "0.1", "status": "online",
    }


ASSET_PAIRS = {
    "XXBTZUSD": _pair("XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1, "0.00005"),
    "XETHZUSD": _pair("ETHUSD", "ETH/USD", "XETH", "ZUSD", 2, "0.002"),
}
FEE_RATE = TAKER_FEE_RATE  # market orders pay the first tier's taker fee


TRADES_PAGE_SIZE = 1000  # Get Recent Trades: "count: Return specific number of trades, up to 1000"


def trade(time_: float, price: float, volume: float, trade_id: int, side: str = "b") -> list:
    """A Trades row in Kraken's shape: [price, volume, time, buy/sell, market/limit, misc, trade_id]."""
    return [f"{price:.1f}", f"{volume:.8f}", time_, side, "l", "", trade_id]


def trade_nanoseconds(row: list) -> int:
    """A Trades row's time in nanoseconds, from its decimal text (as Kraken counts `since`)."""
    return int(Decimal(repr(row[2])) * 1_000_000_000)


OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)  # Get OHLC Data: `interval`, in minutes
OHLC_WINDOW = 720  # Get OHLC Data: "Returns up to 720 of the most recent entries"
OHLC_FIELDS = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 6}


def candle(open_time: int, close: float, volume: float = 1.0) -> list:
    """An OHLC row in Kraken's shape: [time, open, high, low, close, vwap, volume, count]."""
    open_ = close - 1
    return [open_time, f"{open_:.1f}", f"{close + 2:.1f}", f"{open_ - 2:.1f}", f"{close:.1f}",
            f"{close:.1f}", f"{volume:.8f}", 3]


def sent_as(row: list, **texts: str) -> list:
    """A copy of an OHLC row with fields replaced by the exact text sent, e.g. sent_as(row, high="nan")."""
    row = list(row)
    for name, text in texts.items():
        row[OHLC_FIELDS[name]] = text
    return row


@dataclass
class ReceivedRequest:
    method: str
    endpoint: str  # "public/OHLC", "private/AddOrder", ...
    params: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class FakeKraken:
    api_key: str = TEST_API_KEY
    api_secret: str = TEST_API_SECRET
    candles: dict[str, list[list]] = field(default_factory=dict)  # pair id -> OHLC rows of any interval, oldest first
    # (pair id, interval in minutes) -> OHLC rows of that interval only, served before `candles`
    interval_candles: dict[tuple[str, int], list[list]] = field(default_factory=dict)
    trades: dict[str, list[list]] = field(default_factory=dict)  # pair id -> Trades rows (`trade`), oldest first
    prices: dict[str, float] = field(default_factory=lambda: {"XXBTZUSD": 50_000.0, "XETHZUSD": 3_000.0})
    balances: dict[str, float] = field(default_factory=lambda: {"ZUSD": 10_000.0, "XXBT": 0.0, "XETH": 0.0})
    open_polls: int = 0  # QueryOrders answers "open" this many times before the order shows closed
    hidden_lookups: int = 0  # a new order is not listed by the next this-many order lookups (lag)
    fill_slippage: float = 0.0  # market orders fill at price * (1 + slippage) for buys (- for sells)
    executed_fraction: float = 1.0  # of each market order's volume: below 1, it closes partly filled
    end_status: str = "closed"  # "canceled" / "expired": orders end with nothing executed
    fee_in_base: bool = False  # charge the fee in base whatever oflags asked (oflags says fcib; fee stays quote)
    orders: dict[str, dict] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    echo_key_in_errors: bool = False  # a rude server: quotes the API-Key header in auth errors
    # Kraken's REST call counter (docs.kraken.com, "Spot REST Rate Limits"): None leaves it off, for
    # the tests that speed ccxt's pacing up; (maximum, decay per second), e.g. Starter's (15, 0.33).
    call_counter: tuple[float, float] | None = None
    clock: Callable[[], float] = time.time  # the exchange's clock (seconds since the epoch), for `Time`
    # Resting orders are matched by trade_candle: "through" fills a limit when the candle trades
    # strictly beyond it, "touch" as soon as the candle reaches it (the daemon's FillRules.limit_fill).
    limit_fill: LimitFill = "through"
    # Kraken's per-pair trading rate counter for AddOrder / AmendOrder / CancelOrder ("Spot Trading
    # Limits"): None leaves it off; (threshold, decay per second) turns it on.
    order_rate_counter: tuple[float, float] | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures_left = 0
        self._failure_status = 503
        self._failing_endpoint: str | None = None  # None: any
        self._garbled_left = 0
        self._garbled_body = b""
        self._last_nonce = 0
        self._refusals: list[str] = []
        self._envelope_errors: dict[str, list[str]] = {}  # endpoint -> errors its next requests answer
        self._repeated_trades = 0  # Trades pages still to start with the trade before them
        self._answers_without_id = 0
        self._reply_delays: dict[str, list[float]] = {}  # endpoint -> delays of its next replies
        self.nonce_errors = 0
        self.rate_limited = 0
        self._counter, self._counter_at = 0.0, time.monotonic()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._lost_replies: dict[str, int] = {}  # endpoint -> replies still to lose
        self._partial_fills: list[float] = []  # fractions of the next resting fills
        self._order_rates = None if self.order_rate_counter is None else OrderRateCounter(*self.order_rate_counter)
        self.tokens: list[str] = []  # websocket tokens issued by GetWebSocketsToken
        # Called (under the fake's lock, so in order) with each executions report the fake produces;
        # the websocket fake (tests/fake_kraken_ws.py) listens here.
        self.execution_listeners: list[Callable[[dict], None]] = []

    # --- scripting -------------------------------------------------------------------------

    def set_candles(self, pair_id: str, rows: list[list], interval: int | None = None) -> None:
        """The pair's OHLC rows (the last one the forming candle): for every interval asked, or only
        for `interval` (minutes) when given."""
        with self._lock:
            if interval is None:
                self.candles[pair_id] = [list(row) for row in rows]
            else:
                self.interval_candles[pair_id, interval] = [list(row) for row in rows]

    def set_trades(self, pair_id: str, rows: list[list]) -> None:
        with self._lock:
            self.trades[pair_id] = [list(row) for row in rows]

    def add_trades(self, pair_id: str, rows: list[list]) -> None:
        """Trades made since: appended to the pair's history."""
        with self._lock:
            self.trades.setdefault(pair_id, []).extend(list(row) for row in rows)

    def repeat_trade_next(self, count: int = 1) -> None:
        """The next `count` Trades pages also start with the trade the previous page ended with (a
        repeated trade id across pages, as a `since` at a trade's own timestamp may give)."""
        with self._lock:
            self._repeated_trades = count

    def refuse_next(self, count: int, error: str, endpoint: str) -> None:
        """The next `count` requests to endpoint are answered with Kraken's error envelope (HTTP 200,
        {"error": [error]}), e.g. "EAPI:Rate limit exceeded" or "EGeneral:Too many requests"."""
        with self._lock:  # served in the order scripted (the list is popped from its end)
            self._envelope_errors[endpoint] = [error] * count + self._envelope_errors.get(endpoint, [])

    def fail_next(self, count: int, status: int = 503, endpoint: str | None = None) -> None:
        """The next `count` requests (to endpoint, e.g. "private/OpenOrders", or to any) answer HTTP status."""
        with self._lock:
            self._failures_left, self._failure_status, self._failing_endpoint = count, status, endpoint

    def garble_next(self, count: int, body: bytes = b"") -> None:
        """The next `count` requests are answered HTTP 200 with `body` (empty, or not JSON) instead
        of Kraken's JSON envelope, as a broken proxy or a half-deployed server may answer."""
        with self._lock:
            self._garbled_left, self._garbled_body = count, body

    def lose_next_add_order_reply(self, count: int = 1) -> None:
        """The next AddOrder(s) execute, but the connection closes before the reply is sent."""
        self.lose_next_reply("private/AddOrder", count)

    def lose_next_reply(self, endpoint: str, count: int = 1) -> None:
        """The next `count` requests to endpoint ("private/CancelOrder", ...) are carried out, but the
        connection closes before the reply is sent."""
        with self._lock:
            self._lost_replies[endpoint] = count

    def partial_fill_next(self, fraction: float, count: int = 1) -> None:
        """The next `count` fills of resting orders execute only `fraction` of what is left; the
        rest stays open, for a later candle (or never)."""
        with self._lock:
            self._partial_fills = [fraction] * count

    def trade_candle(self, pair_id: str, open_time: int, open_: float, high: float, low: float,
                     close: float) -> None:
        """The market trades this candle: every open order of the pair is matched against it (see
        `_match`), GTD orders whose expiretm the candle's open time reached expire first, and the
        pair's price becomes the close."""
        with self._lock:
            bar = Candle(open_time, open_, high, low, close)
            for order in [o for o in self.orders.values() if o["status"] == "open" and o["_pair"] == pair_id]:
                self._match(order, bar)
            self.prices[pair_id] = close

    def delay_replies(self, endpoint: str, seconds: float, count: int = 1) -> None:
        """The next `count` requests to endpoint ("private/AddOrder", "public/OHLC") are carried out
        at once, but their replies leave `seconds` later (a slow exchange)."""
        with self._lock:
            self._reply_delays[endpoint] = [seconds] * count

    def answer_next_add_order_without_id(self, count: int = 1) -> None:
        """The next AddOrder(s) execute, but the answer names no txid (a truncated reply)."""
        with self._lock:
            self._answers_without_id = count

    def refuse_next_add_order(self, error: str, count: int = 1) -> None:
        """The next AddOrder(s) are refused with Kraken's error text, e.g. "EOrder:Rate limit exceeded"."""
        with self._lock:
            self._refusals = [error] * count

    def listen_to_executions(self, listener: Callable[[dict], None], listening: bool = True) -> None:
        """Add (or, listening=False, remove) a callable that gets every executions report, in order."""
        with self._lock:
            if listening:
                self.execution_listeners.append(listener)
            else:
                self.execution_listeners.remove(listener)

    def orders_of(self, cl_ord_id_prefix: str = "") -> list[dict]:
        """The orders whose cl_ord_id starts with the prefix (e.g. a link's tag), oldest first."""
        with self._lock:
            return [o for o in self.orders.values() if (o["cl_ord_id"] or "").startswith(cl_ord_id_prefix)]

    def received(self, endpoint: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    # --- server ----------------------------------------------------------------------------

    def start(self) -> "FakeKraken":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         name="fake-kraken", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        body = ""
        if method == "POST":
            body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)).decode()
        if method == "POST" and handler.headers.get("Content-Type", "").startswith("application/json"):
            # The REST reference sends private calls' bodies as JSON too (Content-Type application/json),
            # signed as "SHA256(nonce + POST data)" like a form ("Spot REST Authentication"); ccxt does
            # so for a price ending in "%" (a trailing stop's percentage).
            params = {key: str(value) for key, value in json.loads(body or "{}").items()}
        else:
            params = dict(parse_qsl(parts.query if method == "GET" else body))
        endpoint = parts.path.removeprefix("/0/")
        with self._lock:
            self.requests.append(ReceivedRequest(method, endpoint, params, dict(handler.headers.items())))
            if self._failures_left > 0 and self._failing_endpoint in (None, endpoint):
                self._failures_left -= 1
                status = self._failure_status
                return _send(handler, status, b"<html><body>503 Service Unavailable</body></html>", "text/html")
            if self._garbled_left > 0:
                self._garbled_left -= 1
                return _send(handler, 200, self._garbled_body, "text/html")
            refusals = self._envelope_errors.get(endpoint)
            if refusals:
                self.rate_limited += "Rate limit" in refusals[-1] or "Too many requests" in refusals[-1]
                return _send_json(handler, {"error": [refusals.pop()], "result": {}})
            if endpoint.startswith("private/"):
                auth_error = self._check_auth(handler, parts.path, params, body) or self._count_call(endpoint)
                if auth_error:
                    return _send_json(handler, {"error": [auth_error], "result": {}})
            route = self._routes().get((method, endpoint))
            if route is None:
                return _send_json(handler, {"error": ["EGeneral:Unknown method"]}, status=404)
            try:
                result = route(params)
            except KrakenError as error:
                return _send_json(handler, {"error": [str(error)], "result": {}})
            if self._lost_replies.get(endpoint, 0) > 0:
                self._lost_replies[endpoint] -= 1
                handler.close_connection = True  # executed; the reply is lost on the way back
                return None
            delays = self._reply_delays.get(endpoint)
            delay = delays.pop() if delays else 0.0
        time.sleep(delay)  # outside the lock: the exchange answers other requests meanwhile
        _send_json(handler, {"error": [], "result": result})

    def _routes(self) -> dict:
        return {
            ("GET", "public/Time"): self._time,
            ("GET", "public/Assets"): lambda _: ASSETS,
            ("GET", "public/AssetPairs"): lambda _: ASSET_PAIRS,
            ("GET", "public/OHLC"): self._ohlc,
            ("GET", "public/Trades"): self._trades,
            ("POST", "private/Balance"): lambda _: {k: f"{v:.8f}" for k, v in self.balances.items()},
            # BalanceEx: "hold_trade: Amount held in open orders" (what resting orders hold, see _held).
            ("POST", "private/BalanceEx"): lambda _: {
                k: {"balance": f"{v:.8f}", "hold_trade": f"{self._held(k):.8f}"} for k, v in self.balances.items()},
            ("POST", "private/AddOrder"): self._add_order,
            ("POST", "private/CancelOrder"): self._cancel_order,
            ("POST", "private/AmendOrder"): self._amend_order,
            ("POST", "private/GetWebSocketsToken"): self._websockets_token,
            ("POST", "private/QueryOrders"): self._query_orders,
            ("POST", "private/OpenOrders"): lambda p: {"open": self._listed(p, open_=True)},
            ("POST", "private/ClosedOrders"): lambda p: {"closed": (closed := self._listed(p, open_=False)),
                                                         "count": len(closed)},
        }

    def _check_auth(self, handler: BaseHTTPRequestHandler, path: str, params: dict, body: str) -> str | None:
        error = self._auth_error(handler, path, params, body)
        if error and self.echo_key_in_errors:
            return f"{error} (API-Key: {handler.headers.get('API-Key')})"
        return error

    def _count_call(self, endpoint: str) -> str | None:
        """"Every REST API user has a 'call counter' which starts at 0. Ledger/trade history calls
        increase the counter by 2. All other API calls increase this counter by 1 (except AddOrder,
        CancelOrder which operate on a different limiter)"; over the tier's maximum:
        "EAPI:Rate limit exceeded"."""
        if self.call_counter is None or endpoint in ("private/AddOrder", "private/CancelOrder"):
            return None
        maximum, decay = self.call_counter
        now = time.monotonic()
        self._counter = max(0.0, self._counter - (now - self._counter_at) * decay)
        self._counter_at = now
        cost = 2 if endpoint in ("private/Ledgers", "private/QueryLedgers", "private/TradesHistory",
                                 "private/QueryTrades") else 1
        if self._counter + cost > maximum:
            self.rate_limited += 1
            return "EAPI:Rate limit exceeded"
        self._counter += cost
        return None

    def _auth_error(self, handler: BaseHTTPRequestHandler, path: str, params: dict, body: str) -> str | None:
        if handler.headers.get("API-Key") != self.api_key:
            return "EAPI:Invalid key"
        nonce = params.get("nonce", "")
        digest = hashlib.sha256((nonce + body).encode()).digest()
        expected = base64.b64encode(
            hmac.new(base64.b64decode(self.api_secret), path.encode() + digest, hashlib.sha512).digest()
        ).decode()
        if not hmac.compare_digest(handler.headers.get("API-Sign", ""), expected):
            return "EAPI:Invalid signature"
        if not nonce.isdigit() or int(nonce) <= self._last_nonce:
            self.nonce_errors += 1
            return "EAPI:Invalid nonce"
        self._last_nonce = int(nonce)
        return None

    # --- endpoints -------------------------------------------------------------------------

    def _time(self, _: dict) -> dict:
        # docs.kraken.com/api-reference/market-data/get-server-time: whole seconds, and RFC 1123.
        now = self.clock()
        return {"unixtime": int(now), "rfc1123": formatdate(now, usegmt=True)}

    def _ohlc(self, params: dict) -> dict:
        """Get OHLC Data (docs.kraken.com/api-reference/market-data/get-ohlc-data): `interval` "Time
        frame interval in minutes", one of "1, 5, 15, 30, 60, 240, 1440, 10080, 21600" (default 1);
        rows [time, open, high, low, close, vwap, volume, count], oldest first. An interval without a
        trade is sent as a row of count 0 and volume 0 at the previous close, when scripted so
        (Kraken does: `[1627084800,"1.024497",...,"0.000000","0.00000000",0]`, github.com/dominiktraxl/
        pykrakenapi issue 55)."""
        pair = _pair_id(params.get("pair", ""))
        interval = int(params.get("interval", 1))
        if interval not in OHLC_INTERVALS:
            raise KrakenError("EGeneral:Invalid arguments:interval")
        all_rows = self.interval_candles.get((pair, interval), self.candles.get(pair, []))
        rows = all_rows
        if "since" in params:  # a row without a numeric time is never "after" anything
            # The same page: since "Return OHLC entries since the given timestamp (intended for
            # incremental updates)": the rows after it.
            rows = [row for row in rows if isinstance(row[0], int) and row[0] > int(params["since"])]
            # docs.kraken.com/api-reference/market-data/get-ohlc-data: "The last entry in the OHLC array
            # is for the current, not-yet-committed timeframe, and will always be present, regardless
            # of the value of `since`."
            if all_rows and (not rows or rows[-1] is not all_rows[-1]):
                rows = [*rows, all_rows[-1]]
        # The same page: "Returns up to 720 of the most recent entries (older data cannot be
        # retrieved, regardless of the value of `since`)": the forming entry is one of them.
        rows = rows[-OHLC_WINDOW:]
        last = rows[-2][0] if len(rows) > 1 else (rows[-1][0] if rows else 0)  # last committed candle
        return {pair: rows, "last": last}

    def _trades(self, params: dict) -> dict:
        """Get Recent Trades (docs.kraken.com/api-reference/market-data/get-recent-trades): "Returns
        the last 1000 trades by default"; `count` "up to 1000"; each row [price, volume, time,
        buy/sell, market/limit, miscellaneous, trade_id], oldest first, and `last`, the "ID to be
        used as since when polling for new trade data". `since` is a Unix time in nanoseconds
        (support.kraken.com, "How to retrieve historical time and sales ... Trades endpoint": "a
        UNIX timestamp at nanosecond resolution"); `last` is the nanosecond time of the page's last
        trade, so a page starts with the trades after it (here) and the history is read page by page."""
        pair = _pair_id(params.get("pair", ""))
        count = int(params.get("count", TRADES_PAGE_SIZE))
        if not 1 <= count <= TRADES_PAGE_SIZE:
            raise KrakenError("EGeneral:Invalid arguments:count")
        since = int(params.get("since", 0))
        history = self.trades.get(pair, [])
        first = next((index for index, row in enumerate(history) if trade_nanoseconds(row) > since), len(history))
        if self._repeated_trades and first > 0:
            self._repeated_trades -= 1
            first -= 1
        if "since" not in params:
            first = max(0, len(history) - count)  # no since: the latest trades
        page = history[first:first + count]
        return {pair: page, "last": str(trade_nanoseconds(page[-1]) if page else since)}

    def _add_order(self, params: dict) -> dict:
        """AddOrder, refusing what Kraken documents it refuses (doc lines cited); market orders
        execute at once, the others rest (`_add_resting_order`)."""
        pair = _pair_id(params.get("pair", ""))
        info = ASSET_PAIRS[pair]
        side, oflags, order_type = params.get("type"), params.get("oflags", ""), params.get("ordertype")
        self._charge_order_rate(pair, "AddOrder")
        if self._refusals:
            raise KrakenError(self._refusals.pop())
        if order_type not in ("market", *RESTING_TYPES) or side not in ("buy", "sell"):
            raise KrakenError("EGeneral:Invalid arguments")
        client_id = params.get("cl_ord_id")
        _check_order_identifiers(client_id, params.get("userref"))
        if client_id and any(o["cl_ord_id"] == client_id and o["status"] == "open" for o in self.orders.values()):
            # clordid guide: "Kraken verifies cl_ord_id uniqueness across open orders for each client."
            raise KrakenError("EOrder:Duplicate order")
        _check_order_flags(oflags)
        if order_type != "market":
            return self._add_resting_order(params, pair, order_type)
        volume = _checked_volume(params.get("volume", ""), info, quote="viqc" in oflags)
        price = self.prices[pair] * (1 + (self.fill_slippage if side == "buy" else -self.fill_slippage))
        if "viqc" in oflags:
            # AddOrder, oflags: "viqc = volume in quote currency (not available for leveraged orders)";
            # Kraken takes it on market buys only and refuses it elsewhere.
            if side != "buy":
                raise KrakenError("EGeneral:Invalid arguments:viqc")
            cost, volume = volume, round(volume / price, info["lot_decimals"])  # executed in whole lots
        else:
            cost = volume * price
        # AssetPairs: "ordermin: Minimum order size (in terms of base currency)",
        # "costmin: Minimum order cost (in terms of quote currency)".
        if volume < float(info["ordermin"]):
            raise KrakenError("EOrder:Order minimum not met")
        if cost < float(info["costmin"]):
            raise KrakenError("EOrder:Cost minimum not met")
        requested = volume
        # QueryOrders: status "pending", "open", "closed", "canceled" or "expired"; vol: "Volume of
        # order", vol_exec: "Volume executed". end_status canceled / expired: nothing executed. A market
        # order cut short (support.kraken.com, "What is Market Price Protection?": it "will cancel any
        # market order as soon as the bid/ask spread gets unusually wide") keeps what executed; with
        # executed_fraction the fake reports it `closed` all the same, so only vol_exec < vol tells.
        volume = 0.0 if self.end_status != "closed" else round(volume * self.executed_fraction, info["lot_decimals"])
        cost = volume * price
        # QueryOrders / OpenOrders / ClosedOrders, fee: "total fee (quote currency)", whichever currency
        # paid it: Kraken's own example lists an `oflags: fcib` sell of cost 7500.0 with fee 7.5.
        fee = round(cost * FEE_RATE, 4)
        base, quote = info["base"], info["quote"]
        if self.fee_in_base:  # AddOrder, oflags: "fcib = prefer fee in base currency": paid in base
            oflags = oflags.replace("fciq", "fcib")
        base_fee, quote_fee = (round(volume * FEE_RATE, 8), 0.0) if self.fee_in_base else (0.0, fee)
        if side == "buy":
            if self.balances.get(quote, 0.0) - self._held(quote) < cost + quote_fee:
                raise KrakenError("EOrder:Insufficient funds")
            self._credit(quote, -(cost + quote_fee))
            self._credit(base, volume - base_fee)
        else:
            if self.balances.get(base, 0.0) - self._held(base) < volume:
                raise KrakenError("EOrder:Insufficient funds")
            self._credit(base, -(volume + base_fee))
            self._credit(quote, cost - quote_fee)
        txid = f"O{next(self._ids):05d}-FAKEK-RAKEN"
        description = f"{side} {requested:.8f} {info['altname']} @ market"
        self.orders[txid] = {
            "refid": None, "userref": int(params["userref"]) if "userref" in params else None, "cl_ord_id": client_id,
            "status": self.end_status, "reason": None if self.end_status == "closed" else "User requested",
            "opentm": time.time(), "closetm": time.time(), "starttm": 0, "expiretm": 0,
            "descr": {"pair": info["altname"], "type": side, "ordertype": "market", "price": "0",
                      "price2": "0", "leverage": "none", "order": description, "close": ""},
            "vol": f"{requested:.8f}", "vol_exec": f"{volume:.8f}", "cost": f"{cost:.5f}",
            "fee": f"{fee:.5f}", "price": f"{price:.1f}" if volume else "0.0",
            "stopprice": "0.00000", "limitprice": "0.00000", "misc": "",
            "oflags": oflags, "trades": [f"T{txid[1:]}"],
            "_open_polls": self.open_polls, "_hidden_lookups": self.hidden_lookups,
            "_pair": pair, "_side": side, "_type": "market", "_volume": requested, "_trigger": None,
            "_limit": None, "_triggered": True, "_filled": volume, "_cost": cost, "_fee": fee, "_tif": "GTC",
            "_expires": None, "_post": False, "_placed": time.monotonic(), "_fills": 1 if volume else 0,
        }
        order = self.orders[txid]
        self._report(order, txid, "pending_new")
        self._report(order, txid, "new")
        if volume:
            self._report(order, txid, "trade", last_qty=volume, last_price=price, fee=fee,
                         exec_id=f"T{txid[1:]}", liquidity_ind="t")
        self._report(order, txid, "filled" if self.end_status == "closed" else self.end_status,
                     **({} if self.end_status == "closed" else {"reason": order["reason"]}))
        if self._answers_without_id > 0:
            self._answers_without_id -= 1
            return {"descr": {"order": description}}
        return {"descr": {"order": description}, "txid": [txid]}

    # --- resting orders --------------------------------------------------------------------

    def _add_resting_order(self, params: dict, pair: str, order_type: str) -> dict:
        """A limit, stop-loss, take-profit, stop-loss-limit, take-profit-limit or trailing-stop order.

        AddOrder, price: "Limit price for limit orders; trigger price for stop-loss, stop-loss-limit,
        take-profit, take-profit-limit ... orders"; price2: "Limit price for stop-loss-limit and
        take-profit-limit orders"; a trailing-stop's price is its offset (`_checked_trail`). A limit
        that crosses the market executes at once (taker), what is left rests; a trigger order holds
        nothing until it fires; a trailing stop tracks the peak (a sell) or trough (a buy) from the
        market price at placement.
        """
        info = ASSET_PAIRS[pair]
        side, oflags = params["type"], params.get("oflags", "")
        if "viqc" in oflags:  # "viqc = volume in quote currency": market buys only (see above)
            raise KrakenError("EGeneral:Invalid arguments:viqc")
        volume = _checked_volume(params.get("volume", ""), info, quote=False)
        market = self.prices[pair]
        trail = _checked_trail(params, info, pair) if order_type == "trailing-stop" else None
        # A trailing stop's price is an offset: its size is measured at the market.
        price = market if trail is not None else _checked_price(params.get("price"), info, pair, "price")
        limit2 = _checked_price(params.get("price2"), info, pair, "price2") if order_type.endswith("-limit") else None
        if price is None or (order_type.endswith("-limit") and order_type != "limit" and limit2 is None):
            raise KrakenError("EGeneral:Invalid arguments:price")
        post = "post" in oflags.split(",")
        if post and order_type != "limit":
            # support.kraken.com "Other order options": "the Post limit order option is not currently
            # available for Take profit limit and Stop loss limit order types".
            raise KrakenError("EGeneral:Invalid arguments:oflags")
        tif = params.get("timeinforce", "GTC")
        expires = _expiry(tif, params.get("expiretm"), self.clock())
        limit = price if order_type == "limit" else limit2
        trigger = price if order_type in TRIGGER_TYPES else None
        if trail is not None:
            trigger = trailing_trigger(side, market, *trail)
        if volume < float(info["ordermin"]):
            raise KrakenError("EOrder:Order minimum not met")
        if volume * (limit if limit is not None else price) < float(info["costmin"]):
            raise KrakenError("EOrder:Cost minimum not met")
        if post and crosses(side, price, market):
            # A post-only limit that would take liquidity: "The order will either get posted to the
            # order book or be cancelled" (support.kraken.com, "Post limit order"); AddOrder answers
            # with Kraken's error text for it.
            raise KrakenError("EOrder:Post only order")
        if order_type == "limit":
            self._check_funds(pair, side, volume, limit)  # type: ignore[arg-type]
        txid = f"O{next(self._ids):05d}-FAKEK-RAKEN"
        words = description(side, volume, info["altname"], order_type, params["price"], params.get("price2", "0"))
        order = {
            "refid": None, "userref": int(params["userref"]) if "userref" in params else None,
            "cl_ord_id": params.get("cl_ord_id"), "status": "open", "reason": None,
            "opentm": time.time(), "starttm": 0, "expiretm": expires or 0,
            "descr": {"pair": info["altname"], "type": side, "ordertype": order_type, "price": params["price"],
                      "price2": params.get("price2", "0") if order_type != "limit" else "0",
                      "leverage": "none", "order": words, "close": ""},
            "vol": f"{volume:.8f}", "vol_exec": "0.00000000", "cost": "0.00000", "fee": "0.00000",
            "price": "0.00000", "stopprice": f"{trigger:.5f}" if trigger else "0.00000",
            "limitprice": "0.00000", "misc": "", "oflags": oflags or "fciq", "trades": [],
            "_pair": pair, "_side": side, "_type": order_type, "_volume": volume, "_trigger": trigger,
            "_limit": limit, "_triggered": trigger is None, "_filled": 0.0, "_cost": 0.0, "_fee": 0.0,
            "_tif": tif, "_expires": expires, "_post": post, "_placed": time.monotonic(), "_fills": 0,
            "_open_polls": 0, "_hidden_lookups": self.hidden_lookups, "_trail": trail, "_extreme": market,
            "_signal": params.get("trigger", "last"),
        }
        self.orders[txid] = order
        self._report(order, txid, "pending_new")
        self._report(order, txid, "new")
        if trail is None and trigger is not None and fires_now(order_type, side, trigger, market):
            self._fire(order, txid, market)
        elif order_type == "limit" and crosses(side, limit, market):  # type: ignore[arg-type]
            self._fill(order, txid, market, liquidity="t")  # a marketable limit takes at the market
        if order["status"] == "open" and tif == "IOC":
            # timeinforce IOC: "immediate-or-cancel": what did not execute at once does not rest.
            self._close(order, txid, "expired", "Immediate or cancel")
        if self._answers_without_id > 0:
            self._answers_without_id -= 1
            return {"descr": {"order": words}}
        return {"descr": {"order": words}, "txid": [txid]}

    def _match(self, order: dict, bar: Candle) -> None:
        """One candle against one open order, by the daemon's simulator rules: a limit buy L fills
        at the open when it opens at or below L, else at L when the low goes through L (or touches
        it, limit_fill="touch"), maker fee; a sell limit mirrors on the high. A stop-loss sell T
        fires at the open when it opens at or below T, else at T when the low reaches it; a
        take-profit sell T at the open when it opens at or above T, else at T when the high
        reaches it (buys mirror), and executes as a market order, taker fee. A *-limit order that
        fires becomes a limit at price2, matched from the next candle on. GTD orders expire first
        once the candle's open time reaches expiretm."""
        txid = next(t for t, o in self.orders.items() if o is order)
        if order["_expires"] is not None and bar.open_time >= order["_expires"]:
            # timeinforce GTD: "good-'til-date, if specified, must coincide with a desired expiretm".
            self._close(order, txid, "expired", "Order expired")
            return
        if not order["_triggered"]:
            if order.get("_trail") is not None:
                at, order["_extreme"] = trailing_fill_at(order["_side"], order["_extreme"], *order["_trail"], bar)
                order["_trigger"] = trailing_trigger(order["_side"], order["_extreme"], *order["_trail"])
                order["stopprice"] = f"{order['_trigger']:.5f}"
            else:
                at = triggered_at(order["_type"], order["_side"], order["_trigger"], bar)
            if at is not None:
                self._fire(order, txid, at)
            return
        if order["_limit"] is None:  # a fired stop-loss / take-profit whose market order is not done
            self._fill(order, txid, bar.open, liquidity="t")
            return
        at = limit_fill_at(order["_side"], order["_limit"], bar, self.limit_fill)
        if at is not None:
            self._fill(order, txid, at, liquidity="m")

    def _fire(self, order: dict, txid: str, at: float) -> None:
        """A trigger order reaches its trigger. support.kraken.com "Other order options": "trigger
        orders will only be checked for their quantity once they are triggered": without the funds
        then, it is cancelled."""
        remaining = order["_volume"] - order["_filled"]
        price = order["_limit"] if order["_limit"] is not None else at
        try:  # before it counts as triggered, so that it does not count its own hold
            self._check_funds(order["_pair"], order["_side"], remaining, price, fee_rate=TAKER_FEE_RATE)
        except KrakenError:
            self._close(order, txid, "canceled", "Insufficient funds")
            return
        order["_triggered"] = True
        if order["_limit"] is not None:
            order["limitprice"] = f"{order['_limit']:.5f}"  # "limitprice: Triggered limit price"
            self._report(order, txid, "status")
            return
        self._fill(order, txid, at, liquidity="t")

    def _fill(self, order: dict, txid: str, price: float, liquidity: str) -> None:
        """Execute what is left of the order (or the scripted part of it) at `price`; balances move
        as for a market order. liquidity "m" (maker, resting limit) or "t" (taker)."""
        info = ASSET_PAIRS[order["_pair"]]
        remaining = order["_volume"] - order["_filled"]
        if self._partial_fills:
            remaining = round(remaining * self._partial_fills.pop(), info["lot_decimals"])
        side, base, quote = order["_side"], info["base"], info["quote"]
        cost = remaining * price
        fee = round(cost * (MAKER_FEE_RATE if liquidity == "m" else TAKER_FEE_RATE), 4)
        if side == "buy":
            self._credit(quote, -(cost + fee))
            self._credit(base, remaining)
        else:
            self._credit(base, -remaining)
            self._credit(quote, cost - fee)
        order["_filled"] = round(order["_filled"] + remaining, info["lot_decimals"])
        order["_cost"] += cost
        order["_fee"] += fee
        order["_fills"] += 1
        trade_id = f"T{txid[1:6]}-{order['_fills']:05d}-FAKEK"
        order["trades"].append(trade_id)
        order.update(vol_exec=f"{order['_filled']:.8f}", cost=f"{order['_cost']:.5f}", fee=f"{order['_fee']:.5f}",
                     price=f"{order['_cost'] / order['_filled']:.5f}")
        self._report(order, txid, "trade", last_qty=remaining, last_price=price, fee=fee, exec_id=trade_id,
                     liquidity_ind=liquidity)
        if order["_filled"] >= order["_volume"]:
            order.update(status="closed", closetm=time.time())
            self._report(order, txid, "filled")

    def _close(self, order: dict, txid: str, status: str, reason: str) -> None:
        """The order ends without executing what is left: canceled or expired, with Kraken's reason."""
        order.update(status=status, reason=reason, closetm=time.time())
        self._report(order, txid, status, reason=reason)

    def _held(self, asset: str) -> float:
        """What open orders hold of the asset: an open limit buy its remaining volume at the limit
        plus the maker fee in quote, an open limit sell its remaining base; a trigger order holds
        nothing until it fires ("trigger orders will only be checked for their quantity once they
        are triggered")."""
        held = 0.0
        for order in self.orders.values():
            if order["status"] != "open" or order.get("_limit") is None or not order["_triggered"]:
                continue
            info = ASSET_PAIRS[order["_pair"]]
            remaining = order["_volume"] - order["_filled"]
            if order["_side"] == "buy" and info["quote"] == asset:
                held += remaining * order["_limit"] * (1 + MAKER_FEE_RATE)
            elif order["_side"] == "sell" and info["base"] == asset:
                held += remaining
        return held

    def _check_funds(self, pair: str, side: str, volume: float, price: float, fee_rate: float = MAKER_FEE_RATE,
                     already_held: float = 0.0) -> None:
        """AddOrder answers "EOrder:Insufficient funds" when the balance not held by open orders
        does not cover the order (a buy: volume * price + fee in quote; a sell: volume in base)."""
        info = ASSET_PAIRS[pair]
        asset = info["quote"] if side == "buy" else info["base"]
        need = volume * price * (1 + fee_rate) if side == "buy" else volume
        if self.balances.get(asset, 0.0) - self._held(asset) + already_held < need - 1e-9:
            raise KrakenError("EOrder:Insufficient funds")

    def _open_order_named(self, params: dict, transaction: str) -> tuple[str, dict]:
        """The open order a CancelOrder / AmendOrder names by txid (or userref) or by cl_ord_id,
        counted on the pair's rate counter by its age; "EOrder:Unknown order" when none is open."""
        found = None
        for txid, order in self.orders.items():
            if params.get("cl_ord_id") is not None:
                if order["cl_ord_id"] == params["cl_ord_id"] and order["status"] == "open":
                    found = txid, order
            elif params.get("txid") in (txid, str(order["userref"])):
                found = txid, order
        if found is not None:
            self._charge_order_rate(found[1]["_pair"], transaction, time.monotonic() - found[1]["_placed"])
        if found is None or found[1]["status"] != "open":
            raise KrakenError("EOrder:Unknown order")
        return found

    def _cancel_order(self, params: dict) -> dict:
        """CancelOrder: "Cancel a particular open order (or set of open orders) by txid, userref or
        cl_ord_id"; an order that is not open (filled, cancelled, expired, or never known) is
        answered "EOrder:Unknown order" (the error ccxt's cancel_order turns into OrderNotFound)."""
        txid, order = self._open_order_named(params, "CancelOrder")
        self._close(order, txid, "canceled", "User requested")
        return {"count": 1}

    def _amend_order(self, params: dict) -> dict:
        """AmendOrder (docs.kraken.com/api-reference/trading/amend-order): changes order_qty,
        limit_price or trigger_price of an open order in place: "The order identifiers assigned by
        Kraken and/or client will stay the same", the spot amends guide: "Keep the execution
        information on the order for any previous fills"; "If an amend request will reduce the
        order quantity below the existing filled quantity, the remaining quantity will be cancelled".
        limit_price: "Condition: For order types that support limit price only"."""
        txid, order = self._open_order_named(params, "AmendOrder")
        info = ASSET_PAIRS[order["_pair"]]
        quantity = _checked_volume(params["order_qty"], info, quote=False) if "order_qty" in params else None
        limit = _checked_price(params.get("limit_price"), info, order["_pair"], "limit_price")
        trigger = _checked_price(params.get("trigger_price"), info, order["_pair"], "trigger_price")
        if limit is not None and order["_limit"] is None:
            raise KrakenError("EGeneral:Invalid arguments:limit_price")
        if trigger is not None and (order["_trigger"] is None or order["_triggered"]):
            raise KrakenError("EGeneral:Invalid arguments:trigger_price")
        if quantity is not None and quantity <= order["_filled"]:
            order.update(vol=f"{quantity:.8f}")
            self._close(order, txid, "canceled", "Order quantity below filled quantity")
            return {"amend_id": f"TA{next(self._ids):05d}-FAKEK"}
        new_quantity = quantity if quantity is not None else order["_volume"]
        new_limit = limit if limit is not None else order["_limit"]
        if order["_post"] and params.get("post_only", "true") != "false" and crosses(
                order["_side"], new_limit, self.prices[order["_pair"]]):
            raise KrakenError("EOrder:Post only order")
        if order["_limit"] is not None and order["_triggered"]:  # it holds funds: the new hold must fit
            mine = (order["_volume"] - order["_filled"]) * (order["_limit"] * (1 + MAKER_FEE_RATE)
                                                           if order["_side"] == "buy" else 1)
            self._check_funds(order["_pair"], order["_side"], new_quantity - order["_filled"], new_limit,
                              already_held=mine)
        order.update(_volume=new_quantity, _limit=new_limit, vol=f"{new_quantity:.8f}")
        if trigger is not None:
            order.update(_trigger=trigger, stopprice=f"{trigger:.5f}")
        descr = order["descr"]
        if order["_type"] == "limit":
            descr["price"] = params.get("limit_price", descr["price"])
        else:
            descr["price"] = params.get("trigger_price", descr["price"])
            descr["price2"] = params.get("limit_price", descr["price2"])
        descr["order"] = description(order["_side"], new_quantity, info["altname"], order["_type"],
                                     descr["price"], descr["price2"])
        order["_placed"] = time.monotonic()  # the decaying counts run from the amend ("created or amended")
        self._report(order, txid, "amended", reason="User requested")
        return {"amend_id": f"TA{next(self._ids):05d}-FAKEK"}

    def _charge_order_rate(self, pair: str, transaction: str, order_age: float | None = None) -> None:
        if self._order_rates is not None and not self._order_rates.charge(pair, transaction, order_age):
            self.rate_limited += 1
            raise KrakenError("EOrder:Rate limit exceeded")

    def _websockets_token(self, _: dict) -> dict:
        """GetWebSocketsToken: {"token": ..., "expires": 900} ("expires: Time (in seconds) after
        which the token expires"); the websocket fake accepts only tokens issued here."""
        token = base64.b64encode(f"fake-ws-token-{len(self.tokens) + 1}".encode()).decode()
        self.tokens.append(token)
        return {"token": token, "expires": 900}

    # --- executions reports (websocket v2 "executions" channel) ---------------------------------

    def open_order_reports(self) -> list[dict]:
        """The open orders as the executions snapshot lists them ("snap_orders: If true, open
        orders will be included in snapshot")."""
        with self._lock:
            return [self._execution(o, t, "new") for t, o in self.orders.items() if o["status"] == "open"]

    def _report(self, order: dict, txid: str, exec_type: str, **extra: object) -> None:
        report = self._execution(order, txid, exec_type, **extra)
        for listener in self.execution_listeners:
            listener(report)

    def _execution(self, order: dict, txid: str, exec_type: str, **extra: object) -> dict:
        """One executions report, in the shape of docs.kraken.com/api-reference/websocket-v2/executions
        (and the examples ccxt's pro/kraken.py quotes): exec_type pending_new, new, trade, filled,
        canceled, expired, amended, status; order_status pending_new, new, partially_filled, filled,
        canceled, expired. A trade reports order_status partially_filled even when it completes the
        order ("A trade event can report order_status: partially_filled even when that trade fills
        the entire order. A separate exec_type: filled update reports completion")."""
        info = ASSET_PAIRS[order["_pair"]]
        status = {"pending_new": "pending_new", "trade": "partially_filled"}.get(exec_type, order["status"])
        if status == "open":
            status = "partially_filled" if order["_filled"] > 0 else "new"
        elif status == "closed":
            status = "filled"
        report: dict = {
            "order_id": txid, "symbol": info["wsname"].replace("XBT", "BTC"), "side": order["_side"],
            "order_type": order["_type"], "order_qty": order["_volume"], "exec_type": exec_type,
            "order_status": status, "time_in_force": order["_tif"], "timestamp": rfc3339(time.time()),
            "cum_qty": order["_filled"], "cum_cost": round(order["_cost"], 8),
            "avg_price": round(order["_cost"] / order["_filled"], 8) if order["_filled"] else 0.0,
            "fee_usd_equiv": round(order["_fee"], 8), "fee_ccy_pref": "fciq",
            "post_only": order["_post"], "order_userref": order["userref"] or 0,
        }
        if order["cl_ord_id"] is not None:
            report["cl_ord_id"] = order["cl_ord_id"]
        if order["_limit"] is not None:
            report["limit_price"] = order["_limit"]
        if order["_trigger"] is not None:
            # add_order (websocket v2), triggers.price_type: "static", "pct" (a percentage offset from
            # the reference price) or "quote" (a notional offset in the quote currency).
            amount, percent = order.get("_trail") or (None, None)
            offset = ("pct", percent) if percent is not None else ("quote", amount) if amount is not None else None
            report["triggers"] = {"reference": order.get("_signal", "last"),
                                  "price": order["_trigger"] if offset is None else offset[1],
                                  "price_type": "static" if offset is None else offset[0],
                                  "status": "triggered" if order["_triggered"] else "untriggered"}
            report["stop_price"] = order["_trigger"]
        if order["_expires"] is not None:
            report["expire_time"] = rfc3339(order["_expires"])
        if exec_type == "trade":
            fee = extra.pop("fee")
            cost = round(float(extra["last_qty"]) * float(extra["last_price"]), 8)  # type: ignore[arg-type]
            report.update(trade_id=order["_fills"], cost=cost,
                          fees=[{"asset": info["quote"].removeprefix("Z"), "qty": fee}])
        if exec_type in ("canceled", "expired"):
            report["cancel_reason"] = extra.get("reason")
        if exec_type == "amended":
            report["amended"] = True
        report.update(extra)
        return report

    def _credit(self, asset: str, amount: float) -> None:
        """Kraken keeps balances in the asset's decimals (Assets: "decimals"), never a float's residue."""
        self.balances[asset] = round(self.balances.get(asset, 0.0) + amount, ASSETS[asset]["decimals"])

    def _visible(self, order: dict) -> dict | None:
        """The order as a lookup sees it now: None while the exchange lags, open while it works."""
        if order["_hidden_lookups"] > 0:
            order["_hidden_lookups"] -= 1
            return None
        public = {k: v for k, v in order.items() if not k.startswith("_")}
        if order["_open_polls"] > 0:  # still working (QueryOrders status "open"): nothing executed yet
            order["_open_polls"] -= 1
            public.update(status="open", vol_exec="0.00000000", cost="0.00000", fee="0.00000", price="0.0")
        return public

    def _query_orders(self, params: dict) -> dict:
        result = {}
        for txid in params.get("txid", "").split(","):
            order = self.orders.get(txid)
            public = None if order is None else self._visible(order)
            if public is None:
                raise KrakenError("EOrder:Unknown order")
            result[txid] = public
        return result

    def _listed(self, params: dict, open_: bool) -> dict:
        """OpenOrders / ClosedOrders, filtered by cl_ord_id and userref as Kraken does."""
        listed = {}
        for txid, order in self.orders.items():
            if params.get("cl_ord_id") and order["cl_ord_id"] != params["cl_ord_id"]:
                continue
            if params.get("userref") and order["userref"] != int(params["userref"]):
                continue
            public = self._visible(order)
            if public is not None and (public["status"] == "open") == open_:
                listed[txid] = public
        return listed


class KrakenError(Exception):
    """An error Kraken reports in its JSON envelope (HTTP 200, {"error": [...]})."""


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}")
_DECIMAL = re.compile(r"\d+(\.\d+)?")


def _check_order_identifiers(client_id: str | None, userref: str | None) -> None:
    """Kraken's rules for an order's own identifiers (docs.kraken.com, "Spot Client Order Identifiers")."""
    if client_id is not None and userref is not None:
        # "The cl_ord_id and userref are mutually exclusive—they cannot both be used on the same order."
        raise KrakenError("EGeneral:Invalid arguments")
    if client_id is not None and not (_UUID.fullmatch(client_id) or 0 < len(client_id) <= 18):
        # "cl_ord_id supports 3 different formats": a long UUID (32 hex characters with 4 dashes),
        # a short UUID (32 hex characters) or free text of up to 18 characters.
        raise KrakenError("EGeneral:Invalid arguments:cl_ord_id")
    if userref is not None and not (userref.lstrip("-").isdigit() and -2**31 <= int(userref) < 2**31):
        # AddOrder: "userref: integer <int32>".
        raise KrakenError("EGeneral:Invalid arguments:userref")


ORDER_FLAGS = {"post", "fcib", "fciq", "nompp", "viqc"}


def _check_order_flags(oflags: str) -> None:
    """AddOrder, oflags: "Comma delimited list of order flags" among post, fcib, fciq, nompp and viqc;
    "fciq = prefer fee in quote currency (... mutually exclusive with fcib)"."""
    flags = set(oflags.split(",")) - {""}
    if not flags <= ORDER_FLAGS or {"fcib", "fciq"} <= flags:
        raise KrakenError("EGeneral:Invalid arguments:oflags")


def _checked_volume(text: str, info: dict, quote: bool) -> float:
    """An order's volume as Kraken accepts it: a plain decimal with at most `lot_decimals` places
    (AssetPairs: "lot_decimals: Scaling decimal places for volume"), or `cost_decimals` when it is
    a quote amount (viqc: "cost_decimals: Scaling decimal places for cost")."""
    places = info["cost_decimals"] if quote else info["lot_decimals"]
    if not _DECIMAL.fullmatch(text) or float(text) <= 0:
        raise KrakenError("EGeneral:Invalid arguments:volume")
    if len(text.partition(".")[2]) > places:
        raise KrakenError("EGeneral:Invalid arguments:volume")
    return float(text)


def _checked_price(text: str | None, info: dict, pair: str, name: str) -> float | None:
    """A price as Kraken accepts it: at most `pair_decimals` places (AssetPairs: "pair_decimals:
    Scaling decimal places for pair"); more is refused with Kraken's text, e.g.
    "EOrder:Invalid price:XXBTZUSD price can only be specified up to 1 decimals."; and a whole
    number of the pair's `tick_size` (docs.kraken.com/exchange/api-reference/unified-ws/instrument,
    price_increment: "Minimum price increment for new orders. Order prices must be a multiple of
    this value"; unified-fix/sl, TickSize: "Specifies the price increment allowed on the asset
    pair"), refused with the same error category (Kraken documents no text for it)."""
    if text is None:
        return None
    if not _DECIMAL.fullmatch(text) or float(text) <= 0:
        raise KrakenError(f"EGeneral:Invalid arguments:{name}")
    if len(text.partition(".")[2]) > info["pair_decimals"]:
        raise KrakenError(f"EOrder:Invalid price:{pair} price can only be specified up to "
                          f"{info['pair_decimals']} decimals.")
    if Decimal(text) % Decimal(info["tick_size"]):
        raise KrakenError(f"EOrder:Invalid price:{pair} price must be a multiple of the tick size {info['tick_size']}.")
    return float(text)


def _checked_trail(params: dict, info: dict, pair: str) -> tuple[float | None, float | None]:
    """A trailing-stop's offset (quote amount, percent) from its price, as AddOrder takes it: "+"
    then the offset, "%" after a percentage (TRAILING_PRICE); a quote amount with at most
    `pair_decimals` places, as any price; trigger index or last (TRIGGER_SIGNALS)."""
    if params.get("trigger", "last") not in TRIGGER_SIGNALS:
        raise KrakenError("EGeneral:Invalid arguments:trigger")
    matched = TRAILING_PRICE.fullmatch(params.get("price") or "")
    if matched is None or float(matched[1]) <= 0:
        raise KrakenError("EGeneral:Invalid arguments:price")
    if matched[2]:
        return None, float(matched[1])
    return _checked_price(matched[1], info, pair, "price"), None


def _expiry(time_in_force: str, expiretm: str | None, now: float) -> float | None:
    """When a GTD order expires. AddOrder, expiretm: "+<n> = expire <n> seconds from now, minimum
    5 seconds; <n> = unix timestamp of expiration time"; timeinforce: "GTD (good-'til-date, if
    specified, must coincide with a desired expiretm)"."""
    if time_in_force not in TIME_IN_FORCE:
        raise KrakenError("EGeneral:Invalid arguments:timeinforce")
    if time_in_force != "GTD":
        return None
    if expiretm is None:
        raise KrakenError("EGeneral:Invalid arguments:expiretm")
    relative = expiretm.startswith("+")
    text = expiretm.removeprefix("+")
    if not _DECIMAL.fullmatch(text) or (relative and float(text) < 5):
        raise KrakenError("EGeneral:Invalid arguments:expiretm")
    return now + float(text) if relative else float(text)


def _pair_id(name: str) -> str:
    for pair_id, info in ASSET_PAIRS.items():
        if name in (pair_id, info["altname"]):
            return pair_id
    raise KrakenError("EQuery:Unknown asset pair")


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _send_json(handler: BaseHTTPRequestHandler, payload: dict, status: int = 200) -> None:
    _send(handler, status, json.dumps(payload).encode(), "application/json")


@contextmanager
def running_fake_kraken(**settings: object) -> Iterator[FakeKraken]:
    """A started FakeKraken (settings are FakeKraken fields), shut down on exit."""
    fake = FakeKraken(**settings).start()  # type: ignore[arg-type]
    try:
        yield fake
    finally:
        fake.stop()


def refused_url() -> str:
    """A local URL where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_url() -> Iterator[str]:
    """A local URL whose server accepts every connection and never answers a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)  # so the accepting thread notices the end of the test
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept_and_hold() -> None:
        while not closing.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_hold, name="silent-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        closing.set()
        thread.join()
        server.close()
        for connection in held:
            connection.close()
