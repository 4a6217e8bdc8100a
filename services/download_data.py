"""`run-operation download-data`: candle files from an exchange's trade history, one per symbol and
timeframe, in --out (backend.market_data.trade_download does the work; the venue pages).

Invariants: no file is written, and nothing is logged but a request retried, before every
argument, every state file beside the data and every symbol (by the exchange's markets) was
checked: a refusal is the command's one line. The exchange's market rules of the symbols are then
saved in --out as markets.json (rules of other symbols already there kept), where a backtest of
the files finds them. `end` (--until, or the exchange's clock when the run starts) is the same
for every symbol of a run. The symbols are downloaded one after another on one client (one
rate-limit budget); a stop ends the one being downloaded after its current page, saved.
"""

import argparse
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog

from backend.errors import ConfigError
from backend.market_data.candle_file import read_candle_file
from backend.market_data.market_rules import MARKETS_FILE_NAME, load_market_rules, save_market_rules
from backend.market_data.timeframes import utc_from_epoch
from backend.market_data.trade_download import DownloadPlan, SymbolDownload, with_retries
from backend.market_data.trade_history import TradeHistory
from backend.venues import VENUES
from services.logging_setup import stderr_lines_to
from services.progress import ProgressBars

log = structlog.get_logger(__name__)


@dataclass
class DataDownload:
    history: TradeHistory
    downloads: list[SymbolDownload]
    stop: threading.Event
    save_every: float

    @classmethod
    def prepare(cls, args: argparse.Namespace, stop: threading.Event) -> "DataDownload | None":
        """Every check made, nothing written; a ConfigError naming what is wrong, an ExchangeError
        when the exchange could not be asked; None when stop was set meanwhile."""
        entry = VENUES[args.exchange]
        assert entry.trade_history is not None  # --exchange offers only venues with one
        history = entry.trade_history(args.api_url, stop)
        plan = DownloadPlan(args.exchange, args.out, int(args.since.timestamp()), tuple(args.timeframes), args.format)
        downloads = [SymbolDownload.resume(plan, symbol, history) for symbol in args.symbols]
        unlisted = with_retries(lambda: history.unlisted(args.symbols), stop)
        if unlisted is None:
            return None
        if unlisted:
            raise ConfigError("--symbols", f"{history.name} lists no {', '.join(unlisted)}")
        rules = with_retries(lambda: history.market_rules(args.symbols), stop)
        if rules is None:
            return None
        markets_file = args.out / MARKETS_FILE_NAME
        if markets_file.exists():  # other symbols' rules, downloaded before, stay
            known = load_market_rules(markets_file)
            if known.exchange == args.exchange:
                rules = {**known.markets, **rules}
        now = with_retries(history.now, stop)
        if now is None:
            return None
        end = now if args.until is None else min(args.until.timestamp(), now)
        if end <= plan.since:  # --until is after --since (the arguments' check): --since is in the future
            raise ConfigError("--since", f"{args.since.isoformat()} is not before {history.name}'s clock "
                                         f"({utc_from_epoch(int(now)).isoformat()})")
        for download in downloads:
            download.end = end
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {args.out}", f"cannot write the files there: {exc.strerror or exc}") from None
        save_market_rules(markets_file, args.exchange, rules)
        log.info("market_rules_saved", path=str(markets_file), symbols=sorted(rules))
        return cls(history, downloads, stop, args.save_every)

    def run(self) -> bool:
        """Every symbol downloaded (True), or stopped on request (False; what was read is saved)."""
        plan = self.downloads[0].plan
        log.info("download_started", exchange=plan.exchange, symbols=[download.symbol for download in self.downloads],
                 timeframes=list(plan.timeframes), since=utc_from_epoch(plan.since).isoformat(),
                 end=utc_from_epoch(int(self.downloads[0].end)).isoformat(), out=str(plan.out),
                 format=plan.file_format, resumed=[download.symbol for download in self.downloads if download.trades])
        with _progress_bars(self.downloads):
            for download in self.downloads:
                if not download.run(self.history, self.stop, self.save_every):
                    log.info("download_stopped", symbol=download.symbol, trades=download.trades)
                    return False
                log.info("download_symbol_finished", symbol=download.symbol, trades=download.trades)
        return True

    def summary(self) -> Iterator[str]:
        """One line per file: its candles (checked again, as a backtest reads it), range and gaps."""
        for download in self.downloads:
            for timeframe in download.plan.timeframes:
                path = download.plan.file_of(download.symbol, timeframe)
                if not path.exists():
                    yield f"{path}: no closed candle yet"
                    continue
                candles = read_candle_file(path, timeframe)
                missing = candles.missing_in(candles.holes_within(range(candles.rows)))
                yield (f"{path}: {candles.rows} candles, {candles.first_open.isoformat()} to "
                       f"{candles.last_open.isoformat()}, {missing} missing (intervals without a trade)")

    def progress_words(self) -> str:
        """Where each symbol got to, for the line saying how to go on."""
        return ", ".join(f"{download.symbol} up to {utc_from_epoch(int(download.last_trade_time)).isoformat()}"
                         for download in self.downloads if download.last_trade_time is not None) or "nothing yet"


@contextmanager
def _progress_bars(downloads: list[SymbolDownload]) -> Iterator[None]:
    """On a terminal, a bar per symbol (seconds of history read, with the time left) in place of
    the `download_progress` lines; elsewhere, the lines."""
    if not ProgressBars.wanted(sys.stderr):
        yield
        return
    bars = ProgressBars(downloads, sys.stderr)
    with stderr_lines_to(bars, hidden_events={"download_progress"}), bars:
        yield
