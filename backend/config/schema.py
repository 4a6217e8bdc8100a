"""The shape of every YAML file under config/, as strict pydantic models."""

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$", min_length=1)]
Timeframe = Annotated[str, Field(pattern=r"^[1-9][0-9]*[mhd]$")]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")]
# A built-in plugin's short name, or a class by import path: `package.module:ClassName`.
PluginName = Annotated[str, Field(
    pattern=r"^([A-Za-z0-9_\-]+|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*)$"
)]

# The name of an environment variable: what a key, secret or token pasted in its place never is
# (Kraken's keys are longer and base64, with + / =). The value is never repeated in the message.
ENVIRONMENT_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def _is_variable_name(name: str) -> str:
    if not ENVIRONMENT_VARIABLE_NAME.fullmatch(name):
        raise ValueError("must be the name of an environment variable (letters, digits and _, not starting with a "
                         "digit, at most 48 characters), never the key, secret or token itself; the value given is "
                         "not shown")
    return name


EnvironmentVariableName = Annotated[str, AfterValidator(_is_variable_name)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- config/operations/*.yaml ---------------------------------------------------------------


class StrategyLink(StrictModel):
    strategy_blueprint_id: Identifier
    execution_environment_id: Identifier
    is_active: bool = True

    @property
    def link_id(self) -> str:
        return f"{self.strategy_blueprint_id}@{self.execution_environment_id}"


# What a notification target can be sent (see services/notifications.py for the log events behind them).
NotificationEvent = Literal[
    "fill", "run_failed", "run_stalled", "feed_stale", "reconciliation_mismatch", "daemon_started", "daemon_stopped",
]
EnvironmentVariable = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class NotificationTarget(StrictModel):
    # The name of the environment variable holding an apprise URL (never the URL: it holds secrets).
    url_env: EnvironmentVariable
    events: list[NotificationEvent] = Field(default_factory=lambda: list(get_args(NotificationEvent)), min_length=1)
    # More in any 60 s are held back and announced as one summary once the minute allows.
    max_per_minute: int = Field(default=20, gt=0)
    timeout_seconds: float = Field(default=5, gt=0)  # one send: connecting, and again waiting for the answer


class OperationConfig(StrictModel):
    display_name: str
    description: str = ""
    strategy_links: list[StrategyLink] = Field(min_length=1)
    # A tick one strategy spends longer on marks that run stalled; the others go on without it.
    stall_timeout_seconds: float = Field(default=60, gt=0)
    # After SIGINT/SIGTERM, how long runs may take to finish their current tick before the
    # daemon reports them stalled and exits anyway.
    shutdown_timeout_seconds: float = Field(default=5, gt=0)
    # The status server (--http): the name of the environment variable holding the bearer token
    # its POST endpoints require (never the token); unset: those endpoints are disabled.
    control_token_env: EnvironmentVariableName | None = None
    # The status server's /readyz: a live feed is stale once its last candle is older than its
    # timeframe plus this margin.
    freshness_margin_seconds: float = Field(default=60, gt=0)
    notifications: list[NotificationTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _links_are_unique_and_one_is_active(self) -> "OperationConfig":
        seen: set[str] = set()
        for link in self.strategy_links:
            if link.link_id in seen:
                raise ValueError(f"strategy link {link.link_id} is listed twice")
            seen.add(link.link_id)
        if not any(link.is_active for link in self.strategy_links):
            raise ValueError("no strategy link has is_active: true; nothing to run")
        return self


# --- config/strategies/<id>.yaml ------------------------------------------------------------


class WorkerSpec(StrictModel):
    plugin: PluginName
    params: dict[str, Any] = Field(default_factory=dict)


class Workforce(StrictModel):
    """Workers per category, in the order they run within the category."""

    context: list[WorkerSpec] = Field(default_factory=list)
    opportunity: list[WorkerSpec] = Field(default_factory=list)
    threat: list[WorkerSpec] = Field(default_factory=list)
    planning: list[WorkerSpec] = Field(default_factory=list)
    execution: list[WorkerSpec] = Field(min_length=1)


class StrategyBlueprint(StrictModel):
    display_name: str
    description: str = ""
    assets: list[Symbol] = Field(min_length=1)
    timeframe: Timeframe
    workforce: Workforce


# --- config/environments/<id>.yaml ----------------------------------------------------------


MAX_FEE_RATE = 0.05  # 5 %: far above any exchange's fee, far below a percentage written by mistake


class AccountSettings(StrictModel):
    starting_capital: float = Field(gt=0)  # quote currency
    fee_rate: float = Field(ge=0)  # fraction of notional, e.g. 0.0026 = 0.26 %; at most MAX_FEE_RATE
    slippage_bps: float = Field(default=0, ge=0)

    @field_validator("fee_rate")
    @classmethod
    def _fee_rate_is_a_fraction(cls, fee_rate: float) -> float:
        """0.26 meant as 0.26 % would silently charge 26 % of every order."""
        if fee_rate > MAX_FEE_RATE:
            raise ValueError(f"{fee_rate:g} looks like a percentage; write {fee_rate / 100:g} "
                             f"(fee_rate is a fraction of the notional, at most {MAX_FEE_RATE:g})")
        return fee_rate


class BacktestEnvironment(AccountSettings):
    type: Literal["backtest"]
    display_name: str
    data_file: Path  # relative paths are relative to the environment file
    symbol: Symbol
    timeframe: Timeframe
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        """A bound without an offset is UTC, as CSV timestamps are."""
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> "BacktestEnvironment":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def symbols(self) -> list[str]:
        return [self.symbol]


class LiveEnvironment(AccountSettings):
    type: Literal["live"]
    display_name: str
    exchange: Literal["kraken"]
    symbols: list[Symbol] = Field(min_length=1)
    timeframe: Timeframe
    mode: Literal["paper", "live"] = "paper"
    allow_live_orders: StrictBool = False  # a safety switch: the literal `true` only, never yes, on, True or 1
    api_key_env: EnvironmentVariableName = "KRAKEN_API_KEY"  # names of environment variables, never the keys
    api_secret_env: EnvironmentVariableName = "KRAKEN_API_SECRET"
    # websocket: candles streamed (REST backfills what a reconnect missed); rest: polled.
    market_data: Literal["websocket", "rest"] = "websocket"
    poll_interval_seconds: float = Field(default=15, gt=0)  # market_data: rest
    # market_data: websocket: a symbol's stream silent this long is reconnected (backoff, jitter);
    # silent this long the environment reports itself stale until candles flow again.
    stream_silence_seconds: float = Field(default=60, gt=0)
    stale_after_seconds: float = Field(default=180, gt=0)
    # Closed candles replayed at start so indicators are warm; only context workers see them.
    warmup_candles: int = Field(default=0, ge=0, le=700)
    api_url: str | None = None  # base URL override (a local fake exchange in tests)
    ws_url: str | None = None  # websocket URL override (a local fake exchange in tests)
    # At start: how long the exchange may take to answer (and, for mode: live, accept the key).
    startup_timeout_seconds: float = Field(default=30, gt=0)
    # mode: live: how long a placed order's fill is awaited before it is journaled as unknown
    # (it is then settled by looking it up, never sent again).
    order_wait_seconds: float = Field(default=3, gt=0)
    # How far the local clock may be from Kraken's (measured from its `Time`): above the first it
    # is a warning; above the second no candle is handed out (nothing trades) until it is back.
    max_clock_skew_warn_seconds: float = Field(default=2, gt=0)
    max_clock_skew_seconds: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _skew_limits_in_order(self) -> "LiveEnvironment":
        if self.max_clock_skew_warn_seconds > self.max_clock_skew_seconds:
            raise ValueError("max_clock_skew_warn_seconds must not exceed max_clock_skew_seconds")
        return self

    @field_validator("allow_live_orders", mode="before")
    @classmethod
    def _switch_is_a_literal_boolean(cls, switch: Any) -> Any:
        """The loader reads only `true`/`false` as booleans (yes, on, True stay text): refuse the rest."""
        if not isinstance(switch, bool):
            raise ValueError(f"write true or false, unquoted, not {switch!r} "
                             "(a safety switch takes the literal true alone)")
        return switch

    @model_validator(mode="after")
    def _live_orders_are_explicit(self) -> "LiveEnvironment":
        if self.mode == "live" and not self.allow_live_orders:
            raise ValueError("mode: live places real orders and needs allow_live_orders: true")
        return self

    @model_validator(mode="after")
    def _overrides_point_at_one_exchange(self) -> "LiveEnvironment":
        # A REST override alone would stream from the real Kraken next to a fake (or other) REST host.
        if self.market_data == "websocket" and (self.api_url is None) != (self.ws_url is None):
            raise ValueError("api_url and ws_url are overridden together with market_data: websocket")
        return self


EnvironmentConfig = BacktestEnvironment | LiveEnvironment
ENVIRONMENT_TYPES: dict[str, type[BacktestEnvironment] | type[LiveEnvironment]] = {
    "backtest": BacktestEnvironment,
    "live": LiveEnvironment,
}
