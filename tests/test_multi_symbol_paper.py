"""A strategy of two symbols books the same fills in a backtest of their two files as in a paper
run on the fake Kraken's candles of them (and, to the cent, as a live run whose orders the fake
rests and matches): the live source hands the candles of one open time on
together (one frame, as the backtest does), though Kraken closes ETH's candle before BTC's each
hour, and around a candle one symbol lacks. When the cash runs short, which symbol of a frame
buys first decides the fills: BTC/USD, the first of the blueprint's symbols, in both.

BTC/USD is 48 hours of the bundled data (2023-01-28 10:00 on); ETH/USD stands in with a scaled
copy of the 48 hours after them (no ETH data is bundled), one hour of which never traded (a hole in
its file, a row Kraken never publishes). A DCA with resting post-only limits buys both from one
account's cash, every three candles, and takes profit on each."""

import time
from pathlib import Path

import pytest

from backend.market_data.market_rules import save_market_rules
from backend.venues.kraken.market_rules import fetch_market_rules
from tests.daemon import Daemon
from tests.fake_kraken import FakeKraken
from tests.live_support import fake, fast_client, live_env  # noqa: F401  (fixture)
from tests.order_e2e import Market, Run, assert_clean, data_slice, operation_tree, report_rows
from tests.test_order_parity import CREDENTIALS, live_environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 40
START_ROW = 1  # the paper run starts with row 0 closed: no history before it, as the backtest has none
ETH_HOLE = 20  # ETH/USD has no candle at this row's hour
SYMBOLS = ["BTC/USD", "ETH/USD"]
BLUEPRINT = {
    "display_name": "DCA on two symbols, one account", "assets": SYMBOLS, "timeframe": "1h",
    "workforce": {
        "context": [
            {"plugin": "ema_detector", "params": {"fast_period": 3, "slow_period": 8}},
            {"plugin": "market_regime_classifier",
             "params": {"trend_threshold_pct": 0.3, "volatility_window": 6, "high_volatility_pct": 5}},
        ],
        "opportunity": [{"plugin": "dca_schedule_opportunity", "params": {"interval_bars": 3}}],
        "planning": [{"plugin": "dca_planner", "params": {"quote_amount": 1500, "dip_multiplier": 1.5,
                                                          "take_profit_pct": 0.5, "entry": "limit",
                                                          "limit_offset_pct": 0.05}}],
        "execution": [{"plugin": "order_executor", "params": {"post_only": True, "cancel_after_candles": 3}}],
    },
}


def markets(fake: FakeKraken) -> tuple[Market, Market]:  # noqa: F811
    btc = Market(fake, data_slice("2023-01-28T10:00:00Z", ROWS))
    # Prices to Kraken's 1 decimal the fake serves them with (Market.kraken_row), as the file holds them.
    eth_rows = [(*(round(price * 0.07, 1) for price in row[:4]), row[4] * 3)
                for row in data_slice("2023-01-30T10:00:00Z", ROWS)]
    eth = Market(fake, eth_rows, pair="XETHZUSD", missing=frozenset({ETH_HOLE}))  # type: ignore[arg-type]
    assert eth.times == btc.times
    return btc, eth


def run_backtest(root: Path, fake: FakeKraken, btc: Market, eth: Market) -> list[dict]:  # noqa: F811
    root.mkdir(parents=True)
    save_market_rules(root / "markets.json", "kraken", fetch_market_rules(fast_client(live_env(fake)), SYMBOLS))
    environment = {
        "type": "backtest", "display_name": "two symbols", "symbols": SYMBOLS,
        "data_files": {"BTC/USD": str(btc.write_csv(root / "btc.csv")),
                       "ETH/USD": str(eth.write_csv(root / "eth.csv"))},
        "timeframe": "1h", "start": btc.moment(0).isoformat(), "end": btc.moment(ROWS - 1).isoformat(),
        "starting_capital": 10_000,
    }
    operation = operation_tree(root, "dca", BLUEPRINT, "file", environment)
    daemon = Daemon([operation, "--data-dir", root / "state", "--report", root / "report"])
    code, _ = daemon.finish(timeout=30)
    assert code == 0, daemon.stderr
    return report_rows(root / "report", "dca@file", "trades.csv")


def run_on_the_fake(root: Path, fake: FakeKraken, btc: Market, eth: Market,  # noqa: F811
                    mode: str) -> tuple[list[dict], Run]:
    environment = {**live_environment(fake, mode), "symbols": SYMBOLS, "warmup_candles": 0,
                   "frame_wait_seconds": 0.3}
    operation = operation_tree(root, "dca", BLUEPRINT, mode, environment)
    btc.show(START_ROW)
    eth.show(START_ROW)  # row START_ROW - 1 closed: the first candle traded
    run = Run(operation, root / "state", f"dca@{mode}", "--report", root / "report", env=CREDENTIALS)
    try:
        run.wait_processed(btc.moment(START_ROW - 1))
        for index in range(START_ROW, ROWS - 1):
            if mode == "live":  # the exchange matches the resting orders on the candle before it closes
                btc.trade(index)
                if index != ETH_HOLE:
                    eth.trade(index)
            eth.show(index + 1)  # Kraken closes ETH's candle a few polls before BTC's: ETH's waits for it
            time.sleep(0.1)
            btc.show(index + 1)
            run.wait_processed(btc.moment(index))
        run.stop()
    finally:
        run.kill_if_running()
    assert_clean(run)
    return report_rows(root / "report", run.link, "trades.csv"), run


def fills(trades: list[dict]) -> list[tuple[str, str, str, float, float, float]]:
    return [(t["time"], t["symbol"], t["side"], round(float(t["quantity"]), 8), float(t["price"]),
             round(float(t["fee"]), 6)) for t in trades]


def test_a_paper_run_of_two_symbols_books_what_their_backtest_books(tmp_path, fake):  # noqa: F811
    btc, eth = markets(fake)
    backtest = fills(run_backtest(tmp_path / "backtest", fake, btc, eth))
    assert {symbol for _, symbol, *_ in backtest} == set(SYMBOLS)
    assert {side for _, _, side, *_ in backtest} == {"buy", "sell"}

    paper, run = run_on_the_fake(tmp_path / "paper", fake, btc, eth, "paper")
    assert fills(paper) == backtest
    # The frame of the hour ETH lacks went on with BTC alone, after waiting frame_wait_seconds for it.
    gaps = [(event["symbol"], event["gap_from"]) for event in run.daemon.events("data_gap")]
    assert gaps == [("ETH/USD", eth.moment(ETH_HOLE).isoformat())]

    # Live: the fake rests and matches the orders. Its fees are rounded to Kraken's 4 decimals of
    # USD, so the cash differs by fractions of a cent, and so do the buys the cash limits.
    live = fills(run_on_the_fake(tmp_path / "live", fake, btc, eth, "live")[0])
    assert [fill[:3] + fill[4:5] for fill in live] == [fill[:3] + fill[4:5] for fill in backtest]
    for (*_, quantity, price, fee), (*_, want_quantity, _, want_fee) in zip(live, backtest, strict=True):
        assert quantity * price == pytest.approx(want_quantity * price, abs=0.01)
        assert fee == pytest.approx(want_fee, abs=0.0001)
