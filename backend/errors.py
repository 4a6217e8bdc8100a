"""Errors the daemon reports to the user as one clear line (no traceback)."""

from pathlib import Path


class OpdaemonError(Exception):
    """Base of every error that is reported to the user without a traceback."""


class ConfigError(OpdaemonError):
    """A configuration or data file is wrong: names the file, the key (or line) and the reason."""

    def __init__(self, file: Path | str, reason: str, key: str | None = None) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {reason}")


class DataRangeError(ConfigError):
    """A backtest's range holds no candle of its data file (the file names the data file)."""


class SettingError(OpdaemonError):
    """A setting is wrong, raised where the file it came from is not known (runtime objects carry
    no config file paths): names the key and the reason. Whoever builds the object at load time,
    and so knows the file, turns it into the ConfigError naming that file."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class OperatorOrderError(OpdaemonError):
    """An operator's order (force exit) that cannot be placed as asked: nothing held, no price yet."""


class StateLostError(OpdaemonError):
    """The state database was deleted or replaced while the daemon ran: nothing more can be kept."""


class MissingDTOError(OpdaemonError):
    """A worker asked the tick cache for a DTO that no earlier worker produced this tick."""

    def __init__(self, requester: str, dto_type: type, asset: str) -> None:
        super().__init__(
            f"worker '{requester}' requires {dto_type.__name__} for {asset}, "
            "but no earlier worker produced it this tick"
        )


# --- what venue adapters raise; ccxt's errors never travel further than the adapter ----------


class ExchangeError(OpdaemonError):
    """Something an exchange did or failed to do; the message never contains a credential."""


class TemporaryExchangeError(ExchangeError):
    """Worth retrying later: network trouble, rate limiting, the exchange briefly down."""


class RateLimitedError(TemporaryExchangeError):
    """The exchange refused the request for its rate limit: wait longer before the next one."""


class ExchangeUnavailableError(TemporaryExchangeError):
    """The exchange could not be reached at start (DNS, refused, TLS, timeout); names the cause."""


class OrderRejectedError(ExchangeError):
    """The exchange refused this order (funds, minimum size, invalid arguments): nothing executed."""


class FatalExchangeError(ExchangeError):
    """Needs a person: the key was refused or lacks a permission, the market is unknown."""


class OrderNotPlacedError(FatalExchangeError):
    """The exchange refused an order request itself (e.g. the key) before any order existed: it
    certainly did not execute. Needs a person, like every FatalExchangeError."""
