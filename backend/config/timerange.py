"""`--timerange START-END`: a backtest range given on the command line for one invocation.

Invariant: a bound given replaces the backtest environment's bound (START inclusive, END
exclusive, as the environment's own `start`/`end`); an open end keeps the environment's; bounds
without an offset are UTC. Live and paper environments are never changed (their clock is the
exchange's). An environment the range leaves empty is a ConfigError naming `--timerange`.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from backend.errors import ConfigError, DataRangeError

if TYPE_CHECKING:  # the schema imports pydantic: the CLI parses its arguments without it
    from backend.config.schema import BacktestEnvironment

_MOMENT = r"\d{8}|\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?Z?)?"
_RANGE = re.compile(rf"(?P<start>{_MOMENT})?-(?P<end>{_MOMENT})?")


@dataclass(frozen=True)
class Timerange:
    text: str
    start: datetime | None
    end: datetime | None

    @classmethod
    def parse(cls, text: str) -> "Timerange":
        """`YYYYMMDD-YYYYMMDD`, either end open (`20230201-`, `-20230301`), or ISO dates and times
        (`2023-02-01-2023-02-15T12:00`); ValueError saying what is wrong."""
        found = _RANGE.fullmatch(text)
        if found is None or not (found["start"] or found["end"]):
            raise ValueError(f"not START-END (YYYYMMDD or ISO dates, one end may be left open): {text!r}")
        start, end = (parse_moment(found[bound]) if found[bound] else None for bound in ("start", "end"))
        if start is not None and end is not None and end <= start:
            raise ValueError(f"END must be after START: {text!r}")
        return cls(text, start, end)

    @property
    def option(self) -> str:
        return f"--timerange {self.text}"

    def applied_to(self, environment: "BacktestEnvironment", environment_id: str) -> "BacktestEnvironment":
        """The environment replaying this range (an open end keeps the environment's bound)."""
        start, end = self.start or environment.start, self.end or environment.end
        if end <= start:  # only with an open end: parse() orders two given bounds
            reason = (f"starts at {start.isoformat()}, not before environment '{environment_id}' ends "
                      f"({environment.end.isoformat()})" if self.start else
                      f"ends at {end.isoformat()}, not after environment '{environment_id}' starts "
                      f"({environment.start.isoformat()})")
            raise ConfigError(self.option, reason)
        return environment.model_copy(update={"start": start, "end": end})


@contextmanager
def blamed_for_empty_range(timerange: Timerange | None) -> Iterator[None]:
    """A data file with no candle in a range --timerange set is that option's error."""
    try:
        yield
    except DataRangeError as error:
        if timerange is None:
            raise
        raise ConfigError(timerange.option, f"{error.file}: {error.reason}") from None


def parse_moment(text: str) -> datetime:
    """YYYYMMDD or an ISO date (and time), UTC unless it has an offset; ValueError: not a date."""
    try:
        moment = datetime.strptime(text, "%Y%m%d") if text.isdigit() else datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
