"""The shape of every YAML file under config/, as strict pydantic models."""

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backend.portfolio.fill_rules import FillRules

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
FEE_RATE_KEYS = ("maker_fee_rate", "taker_fee_rate", "fee_rate")


class AccountSettings(StrictModel):
    """The account and how the simulator (backtests, paper trading) fills its orders.

    Invariant: once validated, maker_fee_rate and taker_fee_rate are the rates that apply: as given,
    else `fee_rate` (which sets both, and is refused beside either), else Kraken's entry tier; `fee_rate`
    stays as written (None: not given). `fill_rules` is what the simulator is built from."""

    starting_capital: float = Field(gt=0)  # quote currency
    # Fractions of the notional, e.g. 0.0026 = 0.26 %; each at most MAX_FEE_RATE.
    # None only while validating: not given (see the invariant).
    maker_fee_rate: float | None = Field(default=None, ge=0)  # an order that rested on the book
    taker_fee_rate: float | None = Field(default=None, ge=0)  # a market order, a triggered stop
    fee_rate: float | None = Field(default=None, ge=0)  # both of the above (after them: see the check)
    # Basis points of the price, against the order: 1000 (10 %) is already far beyond any market order.
    slippage_bps: float = Field(default=0, ge=0, le=1000)
    limit_fill: Literal["touch", "through"] = "through"  # FillRules.limit_fill

    @field_validator(*FEE_RATE_KEYS)
    @classmethod
    def _fee_rate_is_a_fraction(cls, rate: float | None, info: ValidationInfo) -> float | None:
        """0.26 meant as 0.26 % would silently charge 26 % of every order."""
        if rate is not None and rate > MAX_FEE_RATE:
            # The fraction it most likely stands for: a percentage (0.26 -> 0.0026), or a percentage
            # of a percentage written without its point (26 -> 0.0026).
            meant = rate / 100 if rate / 100 <= MAX_FEE_RATE else rate / 10_000
            raise ValueError(f"{rate:g} looks like a percentage; write {meant:g} "
                             f"({info.field_name} is a fraction of the notional, at most {MAX_FEE_RATE:g})")
        # The maker and taker rates are validated before fee_rate (field order): info.data has them.
        if info.field_name == "fee_rate" and rate is not None and any(
                info.data.get(key) is not None for key in FEE_RATE_KEYS[:2]):
            raise ValueError("sets both the maker and the taker rate: give it or maker_fee_rate/taker_fee_rate, "
                             "not both")
        return rate

    def model_post_init(self, context: Any, /) -> None:
        """The rates not given filled in (the model is frozen: set once, here), so that every reader
        and --print-config see the rates that apply."""
        rules = self.fill_rules
        object.__setattr__(self, "maker_fee_rate", rules.maker_fee_rate)
        object.__setattr__(self, "taker_fee_rate", rules.taker_fee_rate)

    @property
    def fill_rules(self) -> FillRules:
        kraken = FillRules()
        return FillRules(_first_given(self.maker_fee_rate, self.fee_rate, kraken.maker_fee_rate),
                         _first_given(self.taker_fee_rate, self.fee_rate, kraken.taker_fee_rate),
                         self.slippage_bps, self.limit_fill)


def _first_given(*rates: float | None) -> float:
    return next(rate for rate in rates if rate is not None)


class BacktestEnvironment(AccountSettings):
    """A backtest on candle files. Invariant: once validated, `symbols` lists the symbols replayed
    (`[symbol]` for the one-symbol form) and `data_file_of(symbol)` names each one's file, from
    exactly one of the two forms: `symbol` + `data_file`, or `symbols` + `data_files` (a file per
    symbol) or a `data_file` pattern with `{base}` and `{quote}` (the symbol's parts, lower-cased).
    Each key's own problem is reported at that key (field validators, in field order)."""

    type: Literal["backtest"]
    display_name: str
    symbol: Symbol | None = None
    symbols: list[Symbol] = Field(default_factory=list)  # set from `symbol` in the one-symbol form
    # Relative paths are relative to the environment file. With `symbols`: a pattern, e.g.
    # data/kraken_{base}{quote}_1h.parquet (BTC/USD -> data/kraken_btcusd_1h.parquet).
    data_file: Path | None = None
    data_files: dict[Symbol, Path] | None = None  # with `symbols`: each symbol's file
    # A finer candle file of the same symbol (e.g. 5m under 1h): what happened inside a candle, for
    # the simulator's resting orders (backend.market_data.detail_candles). Relative as data_file.
    detail_data_file: Path | None = None
    # The exchange's market rules (lot, tick, minimum order and cost) orders are rounded and checked
    # by: a markets.json (backend.market_data.market_rules). Relative as data_file; not given: the
    # markets.json beside the (first symbol's) data file if there is one, else no rules (logged:
    # market_rules_defaulted).
    markets_file: Path | None = None
    timeframe: Timeframe
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        """A bound without an offset is UTC, as CSV timestamps are."""
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @field_validator("symbols")
    @classmethod
    def _symbols_once_each(cls, symbols: list[str], info: ValidationInfo) -> list[str]:
        if symbols and info.data.get("symbol") is not None:
            raise ValueError("give symbol (one) or symbols (several), not both")
        repeated = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return symbols

    @field_validator("data_file")
    @classmethod
    def _a_pattern_for_several_symbols(cls, data_file: Path | None, info: ValidationInfo) -> Path | None:
        symbols = info.data.get("symbols") or []
        if data_file is not None and len(symbols) > 1 and not re.search(r"\{(base|quote)\}", str(data_file)):
            raise ValueError(f"names one file for {len(symbols)} symbols: with several symbols, data_file is a "
                             "pattern naming {base} and {quote} (e.g. data/kraken_{base}{quote}_1h.parquet), "
                             "or give data_files")
        return data_file

    @field_validator("data_files")
    @classmethod
    def _a_file_per_symbol(cls, data_files: dict[str, Path] | None, info: ValidationInfo) -> dict[str, Path] | None:
        if data_files is None:
            return None
        if info.data.get("symbol") is not None:
            raise ValueError("goes with symbols (several): with symbol, give data_file")
        if info.data.get("data_file") is not None:
            raise ValueError("give data_file (a pattern) or data_files, not both")
        symbols = info.data.get("symbols") or []
        missing = [symbol for symbol in symbols if symbol not in data_files]
        extra = [symbol for symbol in data_files if symbol not in symbols]
        if missing or extra:
            raise ValueError("must name a file for each of symbols and no other: "
                             + "; ".join(([f"no file for {', '.join(missing)}"] if missing else [])
                                         + ([f"{', '.join(extra)} not in symbols"] if extra else [])))
        return data_files

    @field_validator("detail_data_file")
    @classmethod
    def _detail_of_one_symbol(cls, detail_data_file: Path | None, info: ValidationInfo) -> Path | None:
        if detail_data_file is not None and len(info.data.get("symbols") or []) > 1:
            raise ValueError("is for an environment of one symbol")
        return detail_data_file

    @model_validator(mode="after")
    def _range_is_ordered(self) -> "BacktestEnvironment":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @model_validator(mode="after")
    def _one_form_of_symbols_and_files(self) -> "BacktestEnvironment":
        if self.symbol is None and not self.symbols:
            raise ValueError("give symbol (with data_file) or symbols (with data_files or a data_file pattern)")
        if self.data_file is None and self.data_files is None:
            raise ValueError("give data_file" + (" (a pattern) or data_files" if self.symbol is None else ""))
        if self.symbol is not None:
            object.__setattr__(self, "symbols", [self.symbol])  # frozen: set once, here
        return self

    @property
    def several_symbols(self) -> bool:
        return len(self.symbols) > 1

    def data_file_of(self, symbol: str) -> Path:
        """The candle file of one of `symbols` (the pattern's `{base}` and `{quote}` filled in)."""
        if self.data_files is not None:
            return self.data_files[symbol]
        assert self.data_file is not None  # exactly one of the two: see the validator
        if self.symbol is not None:
            return self.data_file
        base, quote = symbol.lower().split("/")
        return Path(str(self.data_file).replace("{base}", base).replace("{quote}", quote))


class LiveEnvironment(AccountSettings):
    """A live or paper environment: what every exchange's has. The keys of one exchange are its
    venue's settings model (backend/venues/<exchange>/settings.py, a subclass of this one), which
    the loader validates the file with once `exchange:` names a venue of VENUES."""

    type: Literal["live"]
    display_name: str
    exchange: str  # a name in backend.venues.VENUES: the loader checks it (the schema knows no venue)
    symbols: list[Symbol] = Field(min_length=1)
    timeframe: Timeframe
    mode: Literal["paper", "live"] = "paper"
    allow_live_orders: StrictBool = False  # a safety switch: the literal `true` only, never yes, on, True or 1
    # Closed candles replayed at start so indicators are warm; only context workers see them.
    warmup_candles: int = Field(default=0, ge=0, le=700)
    # With several symbols: how long the candles of one open time wait for the other symbols' (which
    # the exchange may publish a poll or a few seconds later), so a strategy sees them in one frame as
    # in a backtest; a candle still missing then goes on by itself when it comes.
    frame_wait_seconds: float = Field(default=30, ge=0)

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


EnvironmentConfig = BacktestEnvironment | LiveEnvironment
ENVIRONMENT_TYPES: dict[str, type[BacktestEnvironment] | type[LiveEnvironment]] = {
    "backtest": BacktestEnvironment,
    "live": LiveEnvironment,
}
