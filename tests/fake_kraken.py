"""A small fake of Kraken's REST API on 127.0.0.1, for driving the real ccxt client in tests.

Implements what ccxt's kraken uses for load_markets, fetch_ohlcv, create_order, fetch_order and
fetch_balance:

    GET  /0/public/Assets        GET  /0/public/AssetPairs    GET /0/public/OHLC   GET /0/public/Time
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
        fake.fail_next(3)                                       # next 3 requests answer HTTP 503
        fake.garble_next(1, b"")                                # next request: HTTP 200, empty body
        fake.delay_replies("public/OHLC", 0.5)                  # the next OHLC answered 0.5 s late
        fake.clock = lambda: time.time() + 30                   # Kraken's Time runs 30 s ahead
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
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

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
FEE_RATE = 0.0026  # taker fee of the first tier


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


@dataclass
class FakeKraken:
    api_key: str = TEST_API_KEY
    api_secret: str = TEST_API_SECRET
    candles: dict[str, list[list]] = field(default_factory=dict)  # pair id -> OHLC rows, oldest first
    prices: dict[str, float] = field(default_factory=lambda: {"XXBTZUSD": 50_000.0, "XETHZUSD": 3_000.0})
    balances: dict[str, float] = field(default_factory=lambda: {"ZUSD": 10_000.0, "XXBT": 0.0, "XETH": 0.0})
    open_polls: int = 0  # QueryOrders answers "open" this many times before the order shows closed
    hidden_lookups: int = 0  # a new order is not listed by the next this-many order lookups (lag)
    fill_slippage: float = 0.0  # market orders fill at price * (1 + slippage) for buys (- for sells)
    executed_fraction: float = 1.0  # of each market order's volume: below 1, it closes partly filled
    end_status: str = "closed"  # "canceled" / "expired": orders end with nothing executed
    fee_in_base: bool = False  # charge the fee in the base currency whatever oflags asked (and say so)
    orders: dict[str, dict] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    echo_key_in_errors: bool = False  # a rude server: quotes the API-Key header in auth errors
    # Kraken's REST call counter (docs.kraken.com, "Spot REST Rate Limits"): None leaves it off, for
    # the tests that speed ccxt's pacing up; (maximum, decay per second), e.g. Starter's (15, 0.33).
    call_counter: tuple[float, float] | None = None
    clock: Callable[[], float] = time.time  # the exchange's clock (seconds since the epoch), for `Time`
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures_left = 0
        self._failure_status = 503
        self._failing_endpoint: str | None = None  # None: any
        self._garbled_left = 0
        self._garbled_body = b""
        self._last_nonce = 0
        self._replies_to_lose = 0
        self._refusals: list[str] = []
        self._answers_without_id = 0
        self._reply_delays: dict[str, list[float]] = {}  # endpoint -> delays of its next replies
        self.nonce_errors = 0
        self.rate_limited = 0
        self._counter, self._counter_at = 0.0, time.monotonic()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # --- scripting -------------------------------------------------------------------------

    def set_candles(self, pair_id: str, rows: list[list]) -> None:
        with self._lock:
            self.candles[pair_id] = [list(row) for row in rows]

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
        with self._lock:
            self._replies_to_lose = count

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
            if endpoint == "private/AddOrder" and self._replies_to_lose > 0:
                self._replies_to_lose -= 1
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
            ("POST", "private/Balance"): lambda _: {k: f"{v:.8f}" for k, v in self.balances.items()},
            ("POST", "private/BalanceEx"): lambda _: {
                k: {"balance": f"{v:.8f}", "hold_trade": "0.0000"} for k, v in self.balances.items()},
            ("POST", "private/AddOrder"): self._add_order,
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
        pair = _pair_id(params.get("pair", ""))
        all_rows = self.candles.get(pair, [])
        rows = all_rows
        if "since" in params:  # a row without a numeric time is never "after" anything
            rows = [row for row in rows if isinstance(row[0], int) and row[0] > int(params["since"])]
            # docs.kraken.com/api-reference/market-data/get-ohlc-data: "The last entry in the OHLC array
            # is for the current, not-yet-committed timeframe, and will always be present, regardless
            # of the value of `since`."
            if all_rows and (not rows or rows[-1] is not all_rows[-1]):
                rows = [*rows, all_rows[-1]]
        last = rows[-2][0] if len(rows) > 1 else (rows[-1][0] if rows else 0)  # last committed candle
        return {pair: rows[-720:], "last": last}

    def _add_order(self, params: dict) -> dict:
        """AddOrder for market orders, refusing what Kraken documents it refuses (doc lines cited)."""
        pair = _pair_id(params.get("pair", ""))
        info = ASSET_PAIRS[pair]
        side, oflags = params.get("type"), params.get("oflags", "")
        if self._refusals:
            raise KrakenError(self._refusals.pop())
        if params.get("ordertype") != "market" or side not in ("buy", "sell"):
            raise KrakenError("EGeneral:Invalid arguments")
        client_id = params.get("cl_ord_id")
        _check_order_identifiers(client_id, params.get("userref"))
        if client_id and any(o["cl_ord_id"] == client_id and o["status"] == "open" for o in self.orders.values()):
            # clordid guide: "Kraken verifies cl_ord_id uniqueness across open orders for each client."
            raise KrakenError("EOrder:Duplicate order")
        _check_order_flags(oflags)
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
        volume = 0.0 if self.end_status != "closed" else round(volume * self.executed_fraction, info["lot_decimals"])
        cost = volume * price
        fee = round(cost * FEE_RATE, 4)
        base, quote = info["base"], info["quote"]
        if self.fee_in_base:
            fee, oflags = round(volume * FEE_RATE, 8), oflags.replace("fciq", "fcib")
        base_fee, quote_fee = (fee, 0.0) if self.fee_in_base else (0.0, fee)
        if side == "buy":
            if self.balances.get(quote, 0.0) < cost + quote_fee:
                raise KrakenError("EOrder:Insufficient funds")
            self._credit(quote, -(cost + quote_fee))
            self._credit(base, volume - base_fee)
        else:
            if self.balances.get(base, 0.0) < volume:
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
            "fee": f"{fee:.8f}" if self.fee_in_base else f"{fee:.5f}", "price": f"{price:.1f}" if volume else "0.0",
            "stopprice": "0.00000", "limitprice": "0.00000", "misc": "",
            "oflags": oflags, "trades": [f"T{txid[1:]}"],
            "_open_polls": self.open_polls, "_hidden_lookups": self.hidden_lookups,
        }
        if self._answers_without_id > 0:
            self._answers_without_id -= 1
            return {"descr": {"order": description}}
        return {"descr": {"order": description}, "txid": [txid]}

    def _credit(self, asset: str, amount: float) -> None:
        """Kraken keeps balances in the asset's decimals (Assets: "decimals"), never a float's residue."""
        self.balances[asset] = round(self.balances.get(asset, 0.0) + amount, ASSETS[asset]["decimals"])

    def _visible(self, order: dict) -> dict | None:
        """The order as a lookup sees it now: None while the exchange lags, open while it works."""
        if order["_hidden_lookups"] > 0:
            order["_hidden_lookups"] -= 1
            return None
        public = {k: v for k, v in order.items() if not k.startswith("_")}
        if order["_open_polls"] > 0:  # still working: nothing executed yet
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
