"""Kraken's keys of a live environment file (`exchange: kraken`), next to the ones every exchange
has (backend.config.schema.LiveEnvironment).

Invariant: pydantic and the config schema alone are imported here (never ccxt): the loader
imports this model for every live environment on Kraken, validation included.
"""

from typing import Literal

from pydantic import Field, model_validator

from backend.config.schema import EnvironmentVariableName, LiveEnvironment


class KrakenSettings(LiveEnvironment):
    api_key_env: EnvironmentVariableName = "KRAKEN_API_KEY"  # names of environment variables, never the keys
    api_secret_env: EnvironmentVariableName = "KRAKEN_API_SECRET"
    # websocket: candles streamed (REST backfills what a reconnect missed); rest: polled.
    market_data: Literal["websocket", "rest"] = "websocket"
    poll_interval_seconds: float = Field(default=15, gt=0)  # market_data: rest
    # market_data: websocket: a symbol's stream silent this long is reconnected (backoff, jitter);
    # silent this long the environment reports itself stale until candles flow again.
    stream_silence_seconds: float = Field(default=60, gt=0)
    stale_after_seconds: float = Field(default=180, gt=0)
    api_url: str | None = None  # base URL override (a local fake exchange in tests)
    ws_url: str | None = None  # websocket URL override (a local fake exchange in tests)
    # At start: how long the exchange may take to answer (and, for mode: live, accept the key).
    startup_timeout_seconds: float = Field(default=30, gt=0)
    # mode: live: how long a placed order's fill is awaited before it is journaled as unknown
    # (it is then settled by looking it up, never sent again).
    order_wait_seconds: float = Field(default=3, gt=0)
    # mode: live: how Kraken's reports of resting orders (limits, stops) reach the daemon. websocket:
    # the authenticated `executions` channel says which orders moved, REST (QueryOrders) reads their
    # cumulative fills, and checks every working order after each (re)connect and while the channel is
    # down; rest: every working order is checked over REST on each candle of its symbol.
    order_updates: Literal["websocket", "rest"] = "websocket"
    # The private websocket URL override (a local fake exchange in tests). With api_url overridden and
    # this not, order updates come over REST only: a fake REST host never pairs with Kraken's websocket.
    private_ws_url: str | None = None
    # A working order the channel has not reported on since the last candle is still checked over
    # REST at least this often (a lost message cannot hide a fill for longer).
    order_check_seconds: float = Field(default=60, gt=0)
    # How far the local clock may be from Kraken's (measured from its `Time`): above the first it
    # is a warning; above the second no candle is handed out (nothing trades) until it is back.
    max_clock_skew_warn_seconds: float = Field(default=2, gt=0)
    max_clock_skew_seconds: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _skew_limits_in_order(self) -> "KrakenSettings":
        if self.max_clock_skew_warn_seconds > self.max_clock_skew_seconds:
            raise ValueError("max_clock_skew_warn_seconds must not exceed max_clock_skew_seconds")
        return self

    @model_validator(mode="after")
    def _overrides_point_at_one_exchange(self) -> "KrakenSettings":
        # A REST override alone would stream from the real Kraken next to a fake (or other) REST host.
        if self.market_data == "websocket" and (self.api_url is None) != (self.ws_url is None):
            raise ValueError("api_url and ws_url are overridden together with market_data: websocket")
        return self

    @property
    def order_updates_url(self) -> str | None:
        """The executions websocket to follow ("" for Kraken's own), or None: REST only."""
        if self.order_updates == "rest" or (self.api_url is not None and self.private_ws_url is None):
            return None
        return self.private_ws_url or ""
