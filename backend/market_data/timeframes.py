"""Timeframes and UTC moments: the leaf every market data module builds on (it imports none of them).

Invariant: a timeframe is `<n><m|h|d>` (the config schema checked its shape) and lasts
`timeframe_seconds` seconds; every moment handed on is an aware UTC date-time.
"""

from datetime import UTC, datetime, timedelta

TIMEFRAME_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def timeframe_seconds(timeframe: str) -> int:
    """'5m' -> 300; the config schema has already checked the shape `<n><m|h|d>`."""
    return int(timeframe[:-1]) * TIMEFRAME_UNIT_SECONDS[timeframe[-1]]


def timeframe_length(timeframe: str) -> timedelta:
    """'1h' -> timedelta(hours=1)."""
    return timedelta(seconds=timeframe_seconds(timeframe))


def as_utc(moment: datetime) -> datetime:
    """Naive date-times are UTC; aware ones are converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utc_from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
